"""The link to the miniQMT client: calls under a timeout, connect, close and reconnect.

* every blocking trader call (queries, connect, stop) runs on a short-lived ``qmt-call`` thread
  and is abandoned after ``engine.call_timeout`` with :class:`BrokerTimeout` (:class:`TimedCalls`),
  so a hung client never blocks the engine longer than that.
* ``qmt-reconnect`` runs after ``on_disconnected``: connect() and subscribe() again with
  exponential backoff, replay the orders and trades missed meanwhile, then report the connection
  (:class:`Connection`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from miniqmt_lab.config import Settings
from miniqmt_lab.errors import BrokerTimeout, QmtUnavailable
from miniqmt_lab.qmt.callbacks import make_callback
from miniqmt_lab.qmt.loader import XtModules, open_trader, resolve
from miniqmt_lab.schema import BrokerEvent, ConnectionChanged

log = logging.getLogger(__name__)

MAX_HUNG_CALLS = 4  # beyond this many abandoned calls the client is treated as hung, not asked again
RECONNECTED = "reconnected"  # raw-queue marker put after the replay of missed events


class TimedCalls:
    """Blocking client calls, each on its own thread, abandoned after ``timeout`` seconds."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._hung: set[threading.Thread] = set()
        self._hung_lock = threading.Lock()

    def hung_count(self) -> int:
        with self._hung_lock:
            self._hung = {t for t in self._hung if t.is_alive()}
            return len(self._hung)

    def __call__(self, fn: Callable[..., Any], *args: Any, what: str, timeout: float | None = None,
                 **kwargs: Any) -> Any:
        """``fn(*args)`` on its own thread; BrokerTimeout if it has not returned within the timeout."""
        limit = self.timeout if timeout is None else timeout
        hung = self.hung_count()
        if hung >= MAX_HUNG_CALLS:
            raise BrokerTimeout(f"{what} not sent: {hung} earlier calls to the QMT client are still hung")
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=run, name=f"qmt-call-{what}", daemon=True)
        thread.start()
        if not done.wait(limit):
            with self._hung_lock:
                self._hung.add(thread)
            raise BrokerTimeout(f"{what} did not return within {limit:g}s: the QMT client is busy or hung")
        if "error" in box:
            raise box["error"]
        return box.get("value")


class Connection:
    """One trader at a time with the account subscribed; after ``on_disconnected``, reconnects.

    Callbacks go to ``raw`` (the pump's queue), connection changes to ``emit``. ``lock`` is the
    broker's: one lock over its connection and its orders.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        modules: XtModules | None,
        session_id: int,
        lock: threading.RLock,
        call: TimedCalls,
        raw: queue.Queue[tuple[str, Any]],
        emit: Callable[[BrokerEvent], None],
        reconnect_delay: float,
        reconnect_max_delay: float,
    ) -> None:
        self.settings = settings
        self.session_id = session_id
        self.xt: XtModules | None = None
        self.connected = False
        self.message = "not connected"
        self.outages = 0
        self._modules = modules
        self._lock = lock
        self._call = call
        self._raw = raw
        self._emit = emit
        self._connect_timeout = max(10.0, call.timeout)
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._trader: Any = None
        self._account: Any = None
        self._closing = threading.Event()  # one per connection: a reconnect of a closed one sees it set
        self._reconnector: threading.Thread | None = None

    def open(self) -> bool:
        """Create, start and subscribe a trader, or raise QmtUnavailable; False when one is open already."""
        with self._lock:
            if self._trader is not None:
                return False
            self._closing = threading.Event()
            xt = resolve(self._modules)
            callback = make_callback(xt.xttrader.XtQuantTraderCallback, self._raw.put)
            qmt = self.settings.qmt
            trader, account = self._call(
                open_trader, xt, what="connect", timeout=self._connect_timeout,
                userdata_path=qmt.qmt_userdata_path, session_id=self.session_id,
                account_id=qmt.account_id, account_type=qmt.account_type, callback=callback,
            )
            self.xt, self._trader, self._account = xt, trader, account
            self.connected = True
            self.message = f"connected (session {self.session_id})"
            return True

    def end_reconnects(self) -> None:
        """Mark the connection closing and wait for a reconnect in progress to give up."""
        self._closing.set()
        reconnector = self._reconnector
        if reconnector is not None and reconnector is not threading.current_thread():
            reconnector.join(self._connect_timeout)

    def close(self) -> None:
        """Stop the trader (after :meth:`end_reconnects`); a trader that does not stop is abandoned."""
        with self._lock:
            trader, self._trader = self._trader, None
            self.connected = False
            self.message = "closed"
        if trader is not None:
            try:
                self._call(trader.stop, what="stop")
            except BrokerTimeout:
                log.warning("QMT trader did not stop within %.1fs; abandoning it", self._call.timeout)

    def live(self) -> tuple[Any, Any, Any]:
        """(trader, account, xtconstant) of the open connection, or QmtUnavailable saying why not."""
        with self._lock:
            if self._trader is None or self.xt is None:
                raise QmtUnavailable("QMT broker is not connected: call connect() first")
            if not self.connected:
                raise QmtUnavailable(f"QMT client connection is down ({self.message}); reconnecting")
            return self._trader, self._account, self.xt.xtconstant

    def constants(self) -> Any:
        """The connected client's ``xtconstant``."""
        assert self.xt is not None
        return self.xt.xtconstant

    @property
    def reconnecting(self) -> bool:
        return self._reconnector is not None and self._reconnector.is_alive()

    # -- the pump's handlers -------------------------------------------------------------------------
    def on_disconnected(self, _: Any) -> None:
        with self._lock:
            if self._closing.is_set() or not self.connected:
                return
            self.connected = False
            self.outages += 1
            self.message = "disconnected from the QMT client; reconnecting"
            self._reconnector = threading.Thread(
                target=self._reconnect, args=(self._closing,), name="qmt-reconnect", daemon=True
            )
            self._reconnector.start()
        log.warning("QMT client disconnected (outage %d); reconnecting", self.outages)
        self._emit(ConnectionChanged(False, self.message))

    def on_reconnected(self, message: str) -> None:
        self._emit(ConnectionChanged(True, message))

    # -- reconnecting ------------------------------------------------------------------------------
    def _reconnect(self, closing: threading.Event) -> None:
        """Connect and subscribe again with exponential backoff, then replay what was missed; ends
        without effect once ``closing`` (its connection's) is set."""
        trader, account = self._trader, self._account
        delay, attempt = self._reconnect_delay, 0
        while not closing.wait(delay):
            attempt += 1
            delay = min(delay * 2, self._reconnect_max_delay)
            try:
                if self._call(trader.connect, what="connect", timeout=self._connect_timeout) == 0 and (
                    self._call(trader.subscribe, account, what="subscribe") == 0
                ):
                    break
                log.info("QMT reconnect attempt %d failed; next in %.1fs", attempt, delay)
            except Exception:  # keep trying: the client may come back
                log.exception("QMT reconnect attempt %d raised", attempt)
        else:
            return
        with self._lock:
            if closing.is_set():  # closed while the last attempt ran
                return
            self.connected = True
            self.message = f"reconnected after {attempt} attempt(s)"
        self._replay_missed(trader, account)
        self._raw.put((RECONNECTED, self.message))
        log.info("QMT client %s", self.message)

    def _replay_missed(self, trader: Any, account: Any) -> None:
        """Fills and status changes pushed while disconnected were lost: query them and feed them
        to the pump, which skips what it has already seen."""
        for query, name in ((trader.query_stock_trades, "on_stock_trade"),
                            (trader.query_stock_orders, "on_stock_order")):
            try:
                rows = self._call(query, account, what=name)
            except Exception:
                log.exception("QMT %s after reconnect failed; missed events may be lost", name)
                continue
            for row in rows or ():
                self._raw.put((name, row))
