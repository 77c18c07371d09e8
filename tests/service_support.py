"""Helpers of the service tests: a paper engine the test steps round by round, a live engine on the
xtquant double, a served engine on a real socket, and a local receiver of apprise ``json://`` posts."""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine_support import GatedFeed, close_bars, fast_settings

from miniqmt_lab import config
from miniqmt_lab.engine import Engine, ReplayFeed
from miniqmt_lab.factory import build_engine
from miniqmt_lab.service.app import create_app
from miniqmt_lab.service.audit import AUDIT_FILE, AuditLog
from miniqmt_lab.service.server import WebServer
from miniqmt_lab.xtquant_double import FakeQmt

CODE = "600000.SH"
OTHER = "000001.SZ"
NAMES = {CODE: "浦发银行", OTHER: "平安银行"}
ACCOUNT = "8800001234"
TOKEN = "t" * 43


def paper_engine(tmp_path: Path, days: int = 8, config_file: Path | None = None, **values: Any
                 ) -> tuple[Engine, GatedFeed]:
    """A paper engine on flat prices (600000.SH at 10.0, 000001.SZ at 5.0) whose rounds the test lets
    through; with ``config_file`` its rules come from that file, as ``serve --config`` would have them."""
    bars = close_bars({CODE: [10.0] * days, OTHER: [5.0] * days}, names=NAMES)
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    settings = fast_settings(tmp_path, auto_trading=False, simulation_balance=1_000_000.0,
                             max_order_value=10_000_000.0, **values)
    if config_file is not None:
        rules = config.load(config_file, environ={}).rules
        settings = dataclasses.replace(settings, rules=rules, config_file=str(config_file.resolve()))
    return Engine(settings, feed=feed), feed


def live_engine(tmp_path: Path, userdata: Path, **values: Any) -> tuple[Engine, FakeQmt]:
    """A live engine (simulation = false) on the xtquant double: orders reach the double's account."""
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata)
    settings = fast_settings(tmp_path, simulation=False, account_id=ACCOUNT, qmt_userdata_path=str(userdata),
                             auto_trading=False, **values)
    return build_engine(settings, modules=qmt), qmt


def app_of(engine: Engine, data_dir: Path) -> Any:
    return create_app(engine, token=TOKEN, audit=AuditLog(data_dir / AUDIT_FILE))


@contextmanager
def serving(engine: Engine, data_dir: Path, host: str = "127.0.0.1") -> Iterator[WebServer]:
    """``engine``'s app on a real socket (a free port) for the duration."""
    web = WebServer(app_of(engine, data_dir), host, 0)
    web.start()
    try:
        yield web
    finally:
        web.stop()


class Receiver:
    """A local HTTP server keeping every JSON body posted to it (what apprise's ``json://`` sends)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver.lock:
                    receiver.posts.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/alerts"

    def titles(self) -> list[str]:
        with self.lock:
            return [str(p.get("title", "")) for p in self.posts]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
