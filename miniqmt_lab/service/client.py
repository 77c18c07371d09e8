"""EngineClient: a served engine with the face of an engine (``protocols.EngineFace``), so the panels
control it from any notebook: ``EngineControlPanel(EngineClient(url, token))``.

Calls go over HTTP (standard library only) with ``Authorization: Bearer <token>``. Refusals come
back as the typed errors of :mod:`miniqmt_lab.errors` (an order refused by the kill switch is a
``TradingHalted`` with its ``reason``); ``snapshot()`` is a real :class:`~miniqmt_lab.schema.EngineSnapshot`.
Trades and signals are read incrementally (``?since=``) and kept, so polling them stays cheap.
On a LIVE engine the server wants ``"confirm": true`` on every call that can trade: a client sends it
only when built with ``confirm_live=True`` (a deliberate choice, like the panel's own confirmations).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pandas as pd

from miniqmt_lab.engine.views import positions_frame
from miniqmt_lab.records import records_frame
from miniqmt_lab.schema import SIGNAL_COLUMNS, TRADE_COLUMNS, EngineSnapshot, Side
from miniqmt_lab.service.errors import ServiceError, rebuild
from miniqmt_lab.service.wire import from_json

_PAGE = 5000


class _Records:
    """Rows of one record kind read so far, by ``seq`` (a signal read again replaces its row); a new
    server (another epoch) starts them over."""

    def __init__(self) -> None:
        self.reset("")

    def reset(self, epoch: str) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.cursor = 0
        self.epoch = epoch


class EngineClient:
    """``EngineClient("http://127.0.0.1:8765", token)``: the served engine's face. Thread-safe."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0, confirm_live: bool = False) -> None:
        parsed = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        self.url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, "", "", "")).rstrip("/")
        self.token = token or query.get("token", "")
        self.timeout = timeout
        self.confirm_live = confirm_live
        self._mode: str | None = None
        self._lock = threading.Lock()
        self._trades = _Records()
        self._signals = _Records()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> EngineClient:
        """A client from the URL the server printed (``http://127.0.0.1:8765/?token=...``)."""
        return cls(url, "", **options)

    def __repr__(self) -> str:
        return f"EngineClient({self.url!r})"

    # -- HTTP -------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float | None = None
              ) -> Any:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = json.loads(raw)
                tag, message = str(problem["error"]), str(problem["message"])
            except (ValueError, KeyError, TypeError):
                tag, message = "http_error", raw.decode("utf-8", "replace")[:500] or exc.reason
            raise rebuild(exc.code, tag, message) from None
        except urllib.error.URLError as exc:
            raise ServiceError(f"cannot reach the served engine at {self.url}: {exc.reason}", status=0,
                               tag="unreachable") from None

    def _confirmed(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "confirm": True} if self.confirm_live else body

    # -- the face of an engine -------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return int(self._version()["version"])

    @property
    def running(self) -> bool:
        return bool(self._version()["running"])

    @property
    def mode(self) -> str:
        if self._mode is None:
            self._mode = str(self._version()["mode"])
        return self._mode

    def _version(self) -> dict[str, Any]:
        reply = self._call("GET", "/api/version")
        self._mode = reply["mode"]
        return reply

    def status(self) -> dict[str, Any]:
        """The snapshot as plain data (what ``GET /api/status`` sends)."""
        return self._call("GET", "/api/status")

    def snapshot(self) -> EngineSnapshot:
        return from_json(EngineSnapshot, self.status())

    def start(self) -> None:
        self._call("POST", "/api/engine/start", self._confirmed({}))

    def stop(self, timeout: float = 10.0) -> None:
        self._call("POST", "/api/engine/stop", {}, timeout=max(self.timeout, timeout + 5.0))

    def set_auto_trading(self, on: bool) -> None:
        self._call("POST", "/api/auto_trading", self._confirmed({"on": bool(on)}))

    def set_trading_state(self, state: str, reason: str = "") -> None:
        self._call("POST", "/api/trading_state", self._confirmed({"state": str(state), "reason": reason}))

    def buy(self, code: str, volume: int | None = None, *, amount: float | None = None,
            price: float | None = None) -> str:
        return self._order(Side.BUY, code, volume, amount, price)

    def sell(self, code: str, volume: int, *, price: float | None = None) -> str:
        return self._order(Side.SELL, code, volume, None, price)

    def _order(self, side: Side, code: str, volume: int | None, amount: float | None, price: float | None) -> str:
        body: dict[str, Any] = {"side": side.value, "stock_code": str(code)}
        for key, value in (("volume", volume), ("amount", amount), ("price", price)):
            if value is not None:
                body[key] = value
        return str(self._call("POST", "/api/orders", self._confirmed(body))["order_id"])

    def cancel(self, order_id: str) -> None:
        self._call("DELETE", f"/api/orders/{urllib.parse.quote(str(order_id), safe='')}")

    def positions(self) -> pd.DataFrame:
        return positions_frame(self.snapshot().positions)

    def trades(self) -> pd.DataFrame:
        """Every fill, columns ``TRADE_COLUMNS``, by time then processing order (as ``Engine.trades``)."""
        rows = self._read("/api/trades", self._trades)
        rows.sort(key=lambda r: (r["time"], r["seq"]))
        return records_frame([tuple(r[c] for c in TRADE_COLUMNS) for r in rows], TRADE_COLUMNS, times=("time",),
                             ints=("volume",), floats=("price", "amount", "commission"))

    def signals(self) -> pd.DataFrame:
        """Every signal with its outcome, columns ``SIGNAL_COLUMNS`` (as ``Engine.signals``)."""
        rows = self._read("/api/signals", self._signals)
        return records_frame([tuple(r[c] for c in SIGNAL_COLUMNS) for r in rows], SIGNAL_COLUMNS, times=("time",),
                             ints=("volume",), floats=("price",))

    def _read(self, path: str, kept: _Records) -> list[dict[str, Any]]:
        with self._lock:
            since, cursor = kept.cursor, None
            while True:
                page = self._call("GET", f"{path}?since={since}&limit={_PAGE}")
                if page["epoch"] != kept.epoch:  # another server (or a restarted one): read everything anew
                    kept.reset(page["epoch"])
                    if since:
                        since, cursor = 0, None
                        continue
                for row in page["rows"]:
                    kept.rows[row["seq"]] = row
                if cursor is None and page["next"] < page["last"]:
                    cursor = page["next"]
                since = page["last"]
                if not page["more"]:
                    break
            kept.cursor = cursor if cursor is not None else since
            return [kept.rows[seq] for seq in sorted(kept.rows)]

    # -- rules -------------------------------------------------------------------------------------------

    def rules(self) -> dict[str, Any]:
        """``{"rules", "pending", "config_file"}``: the rules in force and those waiting for the next start."""
        return self._call("GET", "/api/config/rules")

    def set_rules(self, **fields: Any) -> dict[str, Any]:
        """Change ``[rules]`` fields: validated, saved into the server's config file, in force from the next start."""
        return self._call("PUT", "/api/config/rules", self._confirmed(fields))


__all__ = ["EngineClient"]
