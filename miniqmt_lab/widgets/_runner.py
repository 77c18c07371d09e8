"""One worker thread for the commands a click issues (start, stop, orders, backtests).

Button callbacks run on the kernel's UI thread; anything that can block (a broker call, an engine
start, a backtest) is handed to this worker so the notebook stays responsive. Commands run one
after another in click order. Each outcome is reported through ``report(level, text)``; errors the
product raises on purpose (``MiniQmtError``) are shown as their one-line message, never a traceback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from miniqmt_lab.errors import MiniQmtError

log = logging.getLogger(__name__)

Report = Callable[[str, str], None]  # (level: "info" | "ok" | "error", text)


def describe_error(exc: BaseException) -> str:
    """The text a panel shows for a failed command."""
    if isinstance(exc, MiniQmtError):
        reason = getattr(exc, "reason", "")
        prefix = f"{type(exc).__name__} ({reason})" if reason else type(exc).__name__
        return f"{prefix}: {exc}"
    return f"unexpected {type(exc).__name__}: {exc} (details in the log)"


class CommandRunner:
    def __init__(self, *, name: str = "miniqmt-widget-cmd") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def submit(
        self,
        label: str,
        fn: Callable[[], Any],
        report: Report,
        *,
        done: Callable[[Any], str | None] | None = None,
    ) -> Future[Any]:
        """Run ``fn`` on the worker; ``report`` ``done(result)`` (or ``label: done``) or the error."""
        report("info", f"{label}…")

        def run() -> Any:
            try:
                result = fn()
            except Exception as exc:
                if not isinstance(exc, MiniQmtError):
                    log.exception("%s failed", label)
                report("error", f"{label} failed: {describe_error(exc)}")
                raise
            text = done(result) if done is not None else f"{label}: done"
            if text:
                report("ok", text)
            return result

        future = self._executor.submit(run)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted command has finished; False on timeout. For tests and scripts."""
        with self._lock:
            pending = list(self._pending)
        _, not_done = futures.wait(pending, timeout)
        return not not_done

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
