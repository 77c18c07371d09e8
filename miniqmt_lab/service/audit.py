"""The audit log: every control call (a POST, PUT or DELETE under ``/api/``), who made it, what it
asked and what came of it, one JSON line each in an owner-only file of the data folder.

The middleware sits outside everything else, so refused calls (no token, a bad body, no
confirmation) are written too.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from miniqmt_lab.fsutil import owner_only
from miniqmt_lab.market import SHANGHAI

AUDIT_FILE = "server-audit.jsonl"
CONTROL_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_KEEP = 4000  # bytes of a request or reply body kept in a line

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AuditLog:
    """Appends JSON lines to ``path`` (owner-only); safe from any thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, *, client: str, call: str, request: Any, status: int, outcome: str, message: str = "",
               result: Any = None) -> None:
        line = {
            "time": dt.datetime.now(SHANGHAI).isoformat(timespec="milliseconds"),
            "client": client,
            "call": call,
            "request": request,
            "status": status,
            "outcome": outcome,
            "message": message,
            "result": result,
        }
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(text)
            if new:
                owner_only(self.path)

    def lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self._lock:
            text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _parse(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body[:_KEEP])
    except ValueError:
        return body[:_KEEP].decode("utf-8", "replace")


class AuditMiddleware:
    """ASGI middleware writing one audit line per control call once its reply has been sent."""

    def __init__(self, app: ASGIApp, log: AuditLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CONTROL_METHODS or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        asked = bytearray()
        reply = bytearray()
        status = 0

        async def receive_kept() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(asked) < _KEEP:
                asked.extend(message.get("body", b""))
            return message

        async def send_kept(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and len(reply) < _KEEP:
                reply.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_kept, send_kept)
        finally:
            host, port = scope.get("client") or ("?", 0)
            answer = _parse(bytes(reply))
            failed = status >= 400 or status == 0
            detail = answer if isinstance(answer, dict) else {}
            self.log.record(
                client=f"{host}:{port}",
                call=f"{scope['method']} {scope['path']}",
                request=_parse(bytes(asked)),
                status=status,
                outcome=str(detail.get("error", "failed")) if failed else "ok",
                message=str(detail.get("message", "")) if failed else "",
                result=None if failed else answer,
            )


__all__ = ["AUDIT_FILE", "AuditLog", "AuditMiddleware"]
