"""The web server in a thread of the engine's process (uvicorn), and the order things start and stop in.

The socket is bound here, before the server thread starts, so a port in use is a clear error at once
and port 0 gives a free port. The server thread installs no signal handlers: the main thread owns
SIGINT/SIGTERM (and SIGBREAK, Ctrl-Break on Windows) and stops everything in the original's order:
the web server stops taking requests, then the alerts, then the engine (watchdog, threads, stores).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from miniqmt_lab.errors import MiniQmtError
from miniqmt_lab.service.auth import is_loopback, load_or_create_token, page_url

if TYPE_CHECKING:
    from miniqmt_lab.engine import Engine
    from miniqmt_lab.service.alerts import Alerts

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 2  # seconds open requests get to finish once the server stops taking new ones


class ServerError(MiniQmtError, RuntimeError):
    """The web server cannot listen (port in use, unknown host) or did not come up."""


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (port 0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ServerError(f"cannot listen on {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    if sys.platform != "win32":  # on Windows SO_REUSEADDR would let a second server take the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror} (another server on that port?"
                          " choose another with --port)") from None
    sock.set_inheritable(True)
    return sock


class WebServer:
    """uvicorn serving ``app`` on a socket bound at construction; ``start`` and ``stop`` from any thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.app = app
        self.host = host
        self._sock = bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        cfg = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                             timeout_graceful_shutdown=SHUTDOWN_GRACE, server_header=False)
        self._server = uvicorn.Server(cfg)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return host, port

    def start(self, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="web-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            raise ServerError(f"the web server did not come up on {self.host}:{self.port} (see the log)")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking requests, end event streams, let open requests finish (``SHUTDOWN_GRACE``)."""
        service = getattr(getattr(self.app, "state", None), "service", None)
        if service is not None:
            service.closing.set()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        self._sock.close()


@dataclass
class Served:
    """An engine with its web server (and alerts): ``open`` starts them, ``close`` stops them in order."""

    engine: Engine
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    alerts: Alerts | None = None
    out: TextIO | None = None
    web: WebServer | None = field(default=None, init=False)
    token: str = field(default="", init=False)

    def say(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def open(self) -> str:
        """Start the engine, the alerts and the web server; returns the page's URL with the token."""
        from miniqmt_lab.service.app import create_app
        from miniqmt_lab.service.audit import AUDIT_FILE, AuditLog

        self.token = load_or_create_token(self.data_dir)
        app = create_app(self.engine, token=self.token, audit=AuditLog(self.data_dir / AUDIT_FILE))
        web = WebServer(app, self.host, self.port)  # bound before anything starts: a busy port fails here
        try:
            self.engine.start()
            if self.alerts is not None:
                self.alerts.start()
            web.start()
        except BaseException:
            web.stop()
            self._close_rest()
            raise
        self.web = web
        if not is_loopback(self.host):
            self.say(f"WARNING: listening on {self.host}: anyone who can reach this machine and has the token"
                     " can watch and control the engine. Use a firewall; prefer 127.0.0.1 and an SSH tunnel.")
        return page_url(self.host, web.port, self.token)

    def close(self) -> None:
        """The web server stops taking requests, then the alerts, then the engine (watchdog, threads, stores)."""
        if self.web is not None:
            self.web.stop()
            self.web = None
        self._close_rest()

    def _close_rest(self) -> None:
        if self.alerts is not None:
            self.alerts.stop()
        self.engine.stop()

    def run_until(self, stop: threading.Event, on_ready: Callable[[str], None] | None = None) -> None:
        """Open, wait for ``stop`` (set by a signal or by the caller), close."""
        url = self.open()
        try:
            self.say(f"engine {'running' if self.engine.running else 'stopped'} ({self.engine.mode});"
                     f" database {self.engine.database_path}")
            self.say(f"Watch and control it in a browser:\n    {url}\nCtrl-C (or Ctrl-Break) stops the server"
                     " and the engine.")
            if on_ready is not None:
                on_ready(url)
            while not stop.wait(0.5):
                pass
        finally:
            self.say("stopping: web server, alerts, engine...")
            self.close()
            self.say("stopped")


__all__ = ["Served", "ServerError", "WebServer", "bind"]
