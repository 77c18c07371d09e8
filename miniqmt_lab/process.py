"""What a headless process (``miniqmt-lab run`` and ``serve``) needs of the operating system: stop signals."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name))
"""Ctrl-C, SIGTERM, and Ctrl-Break on Windows."""


@contextlib.contextmanager
def stop_signals(stop: threading.Event) -> Iterator[None]:
    """While inside, the stop signals set ``stop`` (the process then shuts down in order); the old
    handlers come back after. Off the main thread (where Python takes no signal handler) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: object) -> None:
        log.warning("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


__all__ = ["STOP_SIGNALS", "stop_signals"]
