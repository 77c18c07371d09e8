"""The HTTP app of a served engine (FastAPI): the API under ``/api``, the page at ``/``, OpenAPI at ``/docs``.

Every path but ``GET /api/ping`` and the page's static files needs ``Authorization: Bearer <token>``
(``/docs`` and ``/openapi.json`` also take ``?token=``, so a browser can open them). On a LIVE engine
every call that can trade (start, auto trading on, a trading state other than halted, an order, a
rules change) needs ``"confirm": true``. Refusals are ``{"error", "message"}`` with a 4xx status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from miniqmt_lab import config
from miniqmt_lab.config import RuleSettings
from miniqmt_lab.engine import Engine
from miniqmt_lab.errors import MiniQmtError
from miniqmt_lab.records import read_only_query
from miniqmt_lab.schema import Side, TradingState
from miniqmt_lab.service import history
from miniqmt_lab.service.audit import AuditLog, AuditMiddleware
from miniqmt_lab.service.auth import bearer, token_matches
from miniqmt_lab.service.errors import ConfirmationRequired, NothingToSave, describe
from miniqmt_lab.service.models import (
    AutoTrading,
    Confirmable,
    Done,
    ErrorReply,
    OrderPlaced,
    OrderPlacement,
    RecordsReply,
    RulesChange,
    RulesReply,
    TradingStateChange,
    VersionReply,
)
from miniqmt_lab.service.wire import to_json

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PUBLIC_PATHS = frozenset({"/", "/api/ping", "/favicon.ico"})
DOCS_PATHS = frozenset({"/docs", "/openapi.json"})
STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
SNAPSHOT_MAX_AGE = 0.25  # seconds a status reply is reused while the version stands still (heartbeats age)
SNAPSHOT_MIN_AGE = 0.1  # seconds a status reply is reused even when the version moved: a busy engine moves it
# on every tick, and rebuilding per request would queue twenty pollers behind one another (a control call
# drops the reply at once, so its caller never reads a state from before it)
EVENT_TICK = 0.1  # seconds between two looks at the version in an event stream
KEEP_ALIVE = 15.0  # seconds of quiet before an event stream sends a comment line
Since = Annotated[int, Query(ge=0, description="the cursor of the last reply (next or last); 0: from the start")]
Limit = Annotated[int, Query(ge=1, le=history.MAX_LIMIT)]
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


class EngineService:
    """What the app serves: one engine, its snapshot reused while nothing moved, rules waiting for the
    next start, and a flag that ends event streams when the server shuts down."""

    def __init__(self, engine: Engine, *, epoch: str | None = None) -> None:
        self.engine = engine
        self.epoch = epoch or secrets.token_hex(6)  # a new server: a client's cursors start over
        self.query = read_only_query(engine.database_path)
        self.pending_rules: RuleSettings | None = None
        self.closing = threading.Event()
        self._control = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cached: tuple[int, float, dict[str, Any], bytes] | None = None

    # -- what is shown --------------------------------------------------------------------------------

    def status(self) -> tuple[dict[str, Any], bytes]:
        """The snapshot as JSON data and bytes: rebuilt at most every SNAPSHOT_MIN_AGE while the version
        moves, and every SNAPSHOT_MAX_AGE while it stands still."""
        with self._cache_lock:
            now = time.monotonic()
            cached = self._cached
            if cached is not None:
                age = now - cached[1]
                if age < SNAPSHOT_MIN_AGE or (cached[0] == self.engine.version and age < SNAPSHOT_MAX_AGE):
                    return cached[2], cached[3]
            snap = self.engine.snapshot()
            data = to_json(snap)
            data["epoch"] = self.epoch
            data["rules_pending"] = self.pending_rules is not None
            body = _dumps(data)
            self._cached = (snap.version, now, data, body)
            return data, body

    def done(self, **extra: Any) -> dict[str, Any]:
        """The reply of a control call; the next status is read afresh."""
        with self._cache_lock:
            self._cached = None
        return {"ok": True, "version": self.engine.version, "running": self.engine.running, **extra}

    def records(self, read: Any, since: int, limit: int) -> dict[str, Any]:
        version = self.engine.version  # before the read: what a client saw at this version is all in it
        page: history.Page = read(self.query, since, limit)
        return {"version": version, "epoch": self.epoch, **dataclasses.asdict(page)}

    # -- control ---------------------------------------------------------------------------------------

    def confirm_live(self, body: Confirmable | None, what: str) -> None:
        if self.engine.mode == "live" and not (body is not None and body.confirm):
            raise ConfirmationRequired(f"{what} on a LIVE account: send \"confirm\": true to go ahead")

    def start(self) -> None:
        with self._control:
            if self.pending_rules is not None and not self.engine.running:
                self.engine.replace_rules(self.pending_rules)
                self.pending_rules = None
                log.warning("rules changed from the web page are in force from this start")
            self.engine.start()

    def stop(self) -> None:
        with self._control:
            self.engine.stop()

    def change_rules(self, changes: dict[str, Any]) -> RuleSettings:
        """Validate ``changes`` over the rules in force (or waiting), save them into the config file
        (comments kept) and keep them for the next start."""
        if not changes:
            raise NothingToSave("no rule given: send one or more [rules] fields")
        with self._control:
            base = dataclasses.replace(self.engine.settings, rules=self.pending_rules or self.engine.settings.rules)
            rules = base.with_values(**changes).rules
            if self.engine.settings.config_file:
                config.update_file(self.engine.settings.config_file, **changes)
            self.pending_rules = rules
        return rules

    def rules_reply(self) -> dict[str, Any]:
        return {
            "rules": to_json(self.engine.settings.rules),
            "pending": to_json(self.pending_rules) if self.pending_rules is not None else None,
            "config_file": self.engine.settings.config_file or None,
        }


class TokenMiddleware:
    """Refuses every request without the token, before any body is read (so a bad body without a
    token is a 401, never a 422)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        reply = JSONResponse({"error": "unauthorized", "message": "missing or wrong token: send Authorization:"
                              " Bearer <token> (the token is in server.token of the data folder)"},
                             status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await reply(scope, receive, send)

    def _allowed(self, scope: Any) -> bool:
        path = scope["path"]
        if path in PUBLIC_PATHS or path.startswith("/static/"):
            return True
        headers = dict(scope.get("headers") or ())
        if token_matches(bearer(headers.get(b"authorization", b"").decode("latin-1")), self.token):
            return True
        if path in DOCS_PATHS:
            query = Request(scope).query_params.get("token")
            return token_matches(query, self.token)
        return False


class HeadersMiddleware:
    """No referrer (a URL with ``?token=`` never leaks), no sniffing, no framing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def _error(status: int, tag: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": tag, "message": message, **extra}, status_code=status, headers=headers)


def _problem(error: Any) -> tuple[str, str]:
    """The field a validation error is about and what is wrong with it. A check across fields names
    its field at the start of its message ("volume: give a volume...")."""
    parts = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
    text = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not parts:
        field, sep, rest = text.partition(": ")
        if sep and field.isidentifier():
            return field, rest
    return ".".join(parts) or "body", text


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        message = "; ".join(f"{field}: {text}" for field, text in problems)
        return _error(422, "invalid_body", message, fields=sorted({field for field, _ in problems}))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        tag = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, tag, str(exc.detail))

    @app.exception_handler(MiniQmtError)
    async def refused(request: Request, exc: MiniQmtError) -> JSONResponse:
        status, tag = describe(exc)
        return _error(status, tag, str(exc))

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        status, tag = describe(exc)
        return _error(status, tag, str(exc))

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "internal_error", f"{type(exc).__name__}: {exc} (the server log has the details)")


def create_app(engine: Engine, *, token: str, audit: AuditLog, epoch: str | None = None) -> FastAPI:
    """The app serving ``engine``; ``token`` guards it, ``audit`` records every control call."""
    service = EngineService(engine, epoch=epoch)
    app = FastAPI(title="miniqmt-lab", summary="A served miniqmt-lab engine", docs_url=None, redoc_url=None,
                  openapi_url=None, responses={401: {"model": ErrorReply}})
    app.state.service = service
    _install_error_handlers(app)

    public = APIRouter(prefix="/api")
    # the token is checked by TokenMiddleware before anything else; this scheme only shows it in /docs
    api = APIRouter(prefix="/api", dependencies=[Depends(HTTPBearer(auto_error=False))])

    @public.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "pong"}

    # reads of what the engine holds in memory run on the event loop: a hop through the thread pool costs
    # a wait for the GIL at each hand-over under a busy engine (bench/server.py: twice the latency)
    @api.get("/version", response_model=VersionReply)
    async def version() -> dict[str, Any]:
        return {"version": engine.version, "running": engine.running, "mode": engine.mode, "epoch": service.epoch}

    @api.get("/status")
    async def status() -> Response:
        """The engine's snapshot: version, time, mode, auto_trading, running, cash, total_asset, positions,
        threads, broker (masked account), last_error, trading_state, state_reason, database."""
        return Response(service.status()[1], media_type="application/json")

    @api.get("/positions")
    async def positions() -> dict[str, Any]:
        data = service.status()[0]
        return {"version": data["version"], "positions": data["positions"]}

    @api.get("/trades", response_model=RecordsReply)
    def trades(since: Since = 0, limit: Limit = 1000) -> dict[str, Any]:
        """Fills after ``since`` (a ``seq``), oldest first."""
        return service.records(history.trades_after, since, limit)

    @api.get("/signals", response_model=RecordsReply)
    def signals(since: Since = 0, limit: Limit = 1000) -> dict[str, Any]:
        """Signals after ``since``; a signal whose outcome may still change comes again until it is final."""
        return service.records(history.signals_after, since, limit)

    @api.get("/events")
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: ``version`` with ``{"version", "running"}`` whenever either moves."""

        async def stream() -> Any:
            yield "retry: 1000\n\n"
            last: tuple[int, bool] | None = None
            quiet = 0.0
            while not service.closing.is_set() and not await request.is_disconnected():
                now = (engine.version, engine.running)
                if now != last:
                    last, quiet = now, 0.0
                    yield f"event: version\ndata: {json.dumps({'version': now[0], 'running': now[1]})}\n\n"
                elif quiet >= KEEP_ALIVE:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(EVENT_TICK)
                quiet += EVENT_TICK

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.post("/engine/start", response_model=Done)
    def start(body: Annotated[Confirmable | None, Body()] = None) -> dict[str, Any]:
        service.confirm_live(body, "starting the engine")
        service.start()
        return service.done()

    @api.post("/engine/stop", response_model=Done)
    def stop() -> dict[str, Any]:
        service.stop()
        return service.done()

    @api.post("/auto_trading", response_model=Done)
    def auto_trading(body: AutoTrading) -> dict[str, Any]:
        if body.on:
            service.confirm_live(body, "auto trading")
        engine.set_auto_trading(body.on)
        return service.done()

    @api.post("/trading_state", response_model=Done)
    def trading_state(body: TradingStateChange) -> dict[str, Any]:
        # a tighter state acts at once (a kill switch that waits is no kill switch); loosening one asks
        if STRICTNESS[body.state] < STRICTNESS[TradingState(engine.snapshot().trading_state)]:
            service.confirm_live(body, f"trading state {body.state.value}")
        engine.set_trading_state(body.state, body.reason, by="web")
        return service.done()

    @api.post("/orders", response_model=OrderPlaced, responses={409: {"model": ErrorReply}})
    def place_order(body: OrderPlacement) -> dict[str, Any]:
        """A manual order; a refusal is 409 with the reason as ``error`` (e.g. ``trading_halted``)."""
        service.confirm_live(body, f"a {body.side.value} order")
        if body.side is Side.BUY:
            order_id = engine.buy(body.stock_code, body.volume, amount=body.amount, price=body.price)
        else:
            assert body.volume is not None  # the model requires a volume for a sell
            order_id = engine.sell(body.stock_code, body.volume, price=body.price)
        return service.done(order_id=order_id)

    @api.delete("/orders/{order_id}", response_model=Done)
    def cancel_order(order_id: str) -> dict[str, Any]:
        engine.cancel(order_id)
        return service.done()

    @api.get("/config/rules", response_model=RulesReply)
    def get_rules() -> dict[str, Any]:
        return service.rules_reply()

    @api.put("/config/rules", response_model=RulesReply)
    def put_rules(body: RulesChange) -> dict[str, Any]:  # type: ignore[valid-type]  # made by create_model
        """Validated, saved into the config file with its comments kept, in force from the next start."""
        service.confirm_live(body, "changing the rules")
        service.change_rules(body.model_dump(exclude={"confirm"}, exclude_none=True))  # type: ignore[attr-defined]
        return service.rules_reply()

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        # the caller showed the token (header or ?token=): the page fetches the schema with it
        return get_swagger_ui_html(openapi_url=f"/openapi.json?token={token}", title="miniqmt-lab API")

    app.include_router(public)
    app.include_router(api)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(TokenMiddleware, token=token)
    app.add_middleware(HeadersMiddleware)
    app.add_middleware(AuditMiddleware, log=audit)
    return app


__all__ = ["EngineService", "create_app"]
