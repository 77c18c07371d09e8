"""One ``XtQuantTrader`` on the thread that owns it, from birth to drop.

The real ``XtQuantTrader`` sets the asyncio loop of the thread that builds it, and its ``__del__``
fails ("Exception ignored ... 'oldloop'") when it runs on the main thread for a trader built on
another one (``shared/spec/xtquant.md``). So each trader gets a ``qmt-trader-<session>`` thread
(:class:`TraderHost`) that builds, connects and subscribes it, and at the end stops it, drops the
last reference and collects it, so its ``__del__`` runs there too. Calls into the host are bounded
by a timeout; a call that does not return in time keeps the host busy and is abandoned, and a
:meth:`TraderHost.close` queued behind it still stops and drops the trader once it returns.

Only the life-cycle calls (build, connect, subscribe, stop) run on the host; queries and orders
run on the broker's timed call threads (:class:`~miniqmt_lab.qmt.connection.TimedCalls`).
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from miniqmt_lab.errors import BrokerTimeout, QmtUnavailable
from miniqmt_lab.qmt.loader import XtModules, check_userdata_path
from miniqmt_lab.schema import mask_account

log = logging.getLogger(__name__)

NATIVE_TIMEOUT_FACTOR = 2
"""The client's own call timeout, in ``engine.call_timeout``s (see :meth:`TraderHost.limit_calls`)."""


class TraderHost:
    """A thread owning at most one trader; :meth:`call` runs a job on it within a timeout."""

    def __init__(self, session_id: int) -> None:
        self.session_id = session_id
        self.trader: Any = None
        self.busy = False  # a job is running (an abandoned one, if nobody waits for it)
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"qmt-trader-{session_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self.busy = True
            job()
            self.busy = False
            del job  # nothing of a finished job stays referenced from this frame

    def call(self, fn: Callable[[], Any], *, what: str, timeout: float, cancel: threading.Event | None = None) -> Any:
        """``fn()`` on the host thread; BrokerTimeout when it has not returned within ``timeout``, or
        once ``cancel`` is set (the job still runs; its result is dropped)."""
        box: dict[str, Any] = {}
        done = threading.Event()

        def job() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller below, without this thread's frames
                box["error"] = exc.with_traceback(None)
            finally:
                done.set()

        self._jobs.put(job)
        deadline = time.monotonic() + timeout
        while not done.wait(min(0.05, max(deadline - time.monotonic(), 0.0))):
            if cancel is not None and cancel.is_set():
                raise BrokerTimeout(f"{what} abandoned: the connection is closing")
            if time.monotonic() >= deadline:
                raise BrokerTimeout(f"{what} did not return within {timeout:g}s: the QMT client is busy or hung")
        if "error" in box:
            raise box.pop("error")
        return box.pop("value", None)

    def open(self, xt: XtModules, *, userdata_path: str, account_id: str, account_type: str, callback: Any,
             call_timeout: float) -> Any:
        """Build, start, connect and subscribe the trader (on the host thread); returns the account.
        QmtUnavailable says what to fix; the trader is kept so :meth:`close` stops it either way."""
        folder = check_userdata_path(userdata_path)
        self.trader = xt.xttrader.XtQuantTrader(str(folder), self.session_id)
        self.trader.register_callback(callback)
        self.trader.start()
        result = self.trader.connect()
        if result != 0:
            raise QmtUnavailable(
                f"connect() to the QMT client returned {result}: start miniQMT (极简模式) and log in, check that"
                f" {folder} is that client's userdata_mini, and that no other program uses session id"
                f" {self.session_id}"
            )
        account = xt.xttype.StockAccount(account_id, account_type)
        result = self.trader.subscribe(account)
        if result != 0:
            raise QmtUnavailable(
                f"subscribe() to account {mask_account(account_id)} returned {result}: check qmt.account_id and"
                f" qmt.account_type ({account_type}) match the account logged in to the client"
            )
        self.limit_calls(call_timeout)
        return account

    def limit_calls(self, call_timeout: float) -> None:
        """Have the client give up a blocking call after :data:`NATIVE_TIMEOUT_FACTOR` times the
        broker's ``call_timeout`` (``set_timeout``, undocumented, in ms), where this xtquant has it.

        The broker abandons a call after ``call_timeout`` itself; the client's timeout only frees the
        thread (and its hung-call slot) afterwards. It is longer because what a timed-out call
        returns (None, like a failed or an empty query) must never be read as an answer.
        """
        set_timeout = getattr(self.trader, "set_timeout", None)
        if callable(set_timeout):
            set_timeout(max(1, int(call_timeout * NATIVE_TIMEOUT_FACTOR * 1000)))

    def reconnect(self, account: Any) -> bool:
        """connect() and subscribe() again on the same trader (on the host thread)."""
        return bool(self.trader.connect() == 0 and self.trader.subscribe(account) == 0)

    def close(self, timeout: float) -> bool:
        """Stop and drop the trader on the host thread, then end it; False when that did not finish
        within ``timeout`` (the host does it once the call it is stuck in returns)."""
        done = threading.Event()

        def stop() -> None:
            trader, self.trader = self.trader, None
            try:
                if trader is not None:
                    trader.stop()
            except Exception:  # a trader that cannot stop is dropped all the same
                log.exception("QMT trader of session %s did not stop cleanly", self.session_id)
            finally:
                del trader
                gc.collect()  # a trader caught in a reference cycle is collected here, not on the main thread
                done.set()

        self._jobs.put(stop)
        self._jobs.put(None)
        return done.wait(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
