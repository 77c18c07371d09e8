"""From xtquant's callback thread to ours: a callback object that only queues, and the pump.

xtquant's callback thread runs the object :func:`make_callback` builds, which only puts
``(name, data)`` on a raw queue: a callback that called the trader back would deadlock it
(shared/spec/xtquant.md). The ``qmt-events`` thread (:class:`Pump`) hands each queued callback to
its handler, in arrival order; a handler that raises is logged and skipped, and the pump goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CALLBACK_NAMES = (
    "on_connected",
    "on_disconnected",
    "on_account_status",
    "on_stock_asset",
    "on_stock_order",
    "on_stock_trade",
    "on_stock_position",
    "on_order_error",
    "on_cancel_error",
    "on_order_stock_async_response",
    "on_cancel_order_stock_async_response",
)


def make_callback(base: type, sink: Callable[[tuple[str, Any]], None]) -> Any:
    """An ``XtQuantTraderCallback`` whose every method only hands its argument to ``sink``."""

    def forward(name: str) -> Callable[..., None]:
        def method(self: Any, data: Any = None) -> None:
            sink((name, data))

        method.__name__ = name
        return method

    return type("MiniQmtCallback", (base,), {name: forward(name) for name in CALLBACK_NAMES})()


class Pump:
    """The ``qmt-events`` thread: raw callbacks in, to their ``handlers`` by name, one at a time."""

    def __init__(self, raw: queue.Queue[tuple[str, Any]], handlers: dict[str, Callable[[Any], None]]) -> None:
        self._raw = raw
        self._handlers = handlers
        self._stop = threading.Event()
        self._stop.set()  # set while no loop runs
        self._thread: threading.Thread | None = None
        self.state = "new"
        self.heartbeat = 0.0
        self.handled = 0
        self.failures = 0

    def start(self) -> None:
        if not self._stop.is_set() and self.alive:
            return
        # each run has its own stop Event: starting again cannot revive a loop whose stop() timed out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="qmt-events", daemon=True)
        self.state = "running"
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is None:
            return
        self.state = "stopping"
        self._stop.set()
        self._raw.put(("", None))  # wakes the loop at once; it ends once what came before is handled
        if thread is not threading.current_thread():
            thread.join(timeout)
        self.state = "stopped"

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, stop: threading.Event) -> None:
        # pushes queued before stop()'s wake-up are handled first, so a fill that arrived while
        # closing is reported (the engine reads it after a restart), not dropped
        while True:
            self.heartbeat = time.monotonic()
            try:
                name, data = self._raw.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if not name:
                if stop.is_set():
                    return
                continue  # the wake-up of an earlier stop()
            try:
                self._handle(name, data)
                self.handled += 1
            except Exception:  # one malformed push must not stop the others
                self.failures += 1
                log.exception("QMT callback %s could not be handled: %r", name, data)

    def _handle(self, name: str, data: Any) -> None:
        handler = self._handlers.get(name)
        if handler is None:
            log.debug("QMT callback %s ignored", name)
            return
        handler(data)
