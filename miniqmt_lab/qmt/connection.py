"""The link to the miniQMT client: calls under a timeout, connect, close and reconnect.

* every blocking query or order call runs on a short-lived ``qmt-call`` thread and is abandoned
  after ``engine.call_timeout`` with :class:`BrokerTimeout` (:class:`TimedCalls`), so a hung client
  never blocks the engine longer than that; the call's slot comes back when its late reply does.
* the trader itself lives on its own thread (:class:`~miniqmt_lab.qmt.host.TraderHost`): connecting
  has its own budget, ``engine.connect_timeout``, and while it runs the status says "connecting to
  QMT...".
* ``qmt-reconnect`` runs after ``on_disconnected``: connect() and subscribe() again with exponential
  backoff; after :data:`RENEW_AFTER` failures on the same trader it builds a fresh one with a new
  session id. Then it replays the orders and trades missed meanwhile and reports the connection
  (:class:`Connection`). Hung call slots never hold a reconnect back.
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
from miniqmt_lab.qmt.host import TraderHost
from miniqmt_lab.qmt.loader import XtModules, derive_session_id
from miniqmt_lab.schema import BrokerEvent, ConnectionChanged

log = logging.getLogger(__name__)

MAX_HUNG_CALLS = 4  # beyond this many abandoned calls the client is treated as hung, not asked again
RENEW_AFTER = 3  # failed reconnects on one trader before a fresh trader with a new session id is built
RECONNECTED = "reconnected"  # raw-queue marker put after the replay of missed events
CONNECTING = "connecting to QMT..."
CLOSED_WHILE_CONNECTING = "QMT broker was closed while connecting"


class TimedCalls:
    """Blocking client calls, each on its own thread, abandoned after ``timeout`` seconds."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._hung: set[threading.Thread] = set()
        self._hung_lock = threading.Lock()

    def hung_count(self) -> int:
        with self._hung_lock:
            return len(self._hung)

    def __call__(self, fn: Callable[..., Any], *args: Any, what: str, limited: bool = True, **kwargs: Any) -> Any:
        """``fn(*args)`` on its own thread; BrokerTimeout if it has not returned within the timeout.

        ``limited`` calls are refused at once while :data:`MAX_HUNG_CALLS` earlier calls are hung.
        """
        hung = self.hung_count()
        if limited and hung >= MAX_HUNG_CALLS:
            raise BrokerTimeout(f"{what} not sent: {hung} earlier calls to the QMT client are still hung")
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc
            finally:
                with self._hung_lock:
                    done.set()
                    self._hung.discard(threading.current_thread())  # a late reply gives its slot back

        thread = threading.Thread(target=run, name=f"qmt-call-{what}", daemon=True)
        thread.start()
        if not done.wait(self.timeout):
            with self._hung_lock:  # ``done`` is set under this lock: a reply now is not counted as hung
                late = not done.is_set()
                if late:
                    self._hung.add(thread)
            if late:
                raise BrokerTimeout(f"{what} did not return within {self.timeout:g}s: the QMT client is busy or hung")
        if "error" in box:
            raise box["error"]
        return box.get("value")


class Connection:
    """One trader at a time with the account subscribed; after ``on_disconnected``, reconnects.

    Callbacks go to ``raw`` (the pump's queue), connection changes to ``emit``. ``lock`` is the
    broker's: one lock over its connection and its orders; it is never held while the client is
    waited for, so the status answers while a connect runs.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        xt: XtModules,
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
        self.xt = xt
        self.connected = False
        self.connecting = False
        self.message = "not connected"
        self.outages = 0
        self.renewals = 0
        self._lock = lock
        self._opening = threading.Lock()
        self._call = call
        self._raw = raw
        self._emit = emit
        self._connect_timeout = settings.engine.connect_timeout
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._host: TraderHost | None = None
        self._account: Any = None
        self._closing = threading.Event()  # one per connection: a reconnect of a closed one sees it set
        self._reconnector: threading.Thread | None = None

    def open(self) -> bool:
        """Build, connect and subscribe a trader within ``engine.connect_timeout``, or raise
        QmtUnavailable / BrokerTimeout saying why; False when one is open already."""
        with self._opening:
            with self._lock:
                if self._host is not None:
                    return False
                closing = self._closing = threading.Event()
                self.connecting, self.message = True, CONNECTING
            try:
                host, account = self._open_host(self.session_id, closing)
            except BaseException as exc:
                with self._lock:
                    self.connecting = False
                    self.message = "closed" if closing.is_set() else f"not connected: {exc}"
                if closing.is_set():
                    raise QmtUnavailable(CLOSED_WHILE_CONNECTING) from None
                raise
            with self._lock:
                self.connecting = False
                if not closing.is_set():
                    self._host, self._account, self.connected = host, account, True
                    self.message = f"connected (session {self.session_id})"
                    return True
                self.message = "closed"
            host.close(self._call.timeout)  # the broker was closed while this connect ran
            raise QmtUnavailable(CLOSED_WHILE_CONNECTING)

    def _open_host(self, session_id: int, closing: threading.Event | None = None) -> tuple[TraderHost, Any]:
        """A new trader on its own host thread, connected and subscribed, within the connect budget
        (given up at once when ``closing`` is set)."""
        qmt = self.settings.qmt
        host = TraderHost(session_id)

        def build() -> Any:
            callback = make_callback(self.xt.xttrader.XtQuantTraderCallback, self._raw.put)
            return host.open(self.xt, userdata_path=qmt.qmt_userdata_path, account_id=qmt.account_id,
                             account_type=qmt.account_type, callback=callback, call_timeout=self._call.timeout)

        try:
            account = host.call(build, what="connect", timeout=self._connect_timeout, cancel=closing)
        except BrokerTimeout:
            host.close(0.0)  # stopped and dropped once the connect returns
            if closing is not None and closing.is_set():
                raise
            raise BrokerTimeout(
                f"connecting to the QMT client did not finish within {self._connect_timeout:g}s"
                " (engine.connect_timeout): is miniQMT running and logged in?"
            ) from None
        except BaseException:
            host.close(self._call.timeout)
            raise
        return host, account

    def end_reconnects(self) -> None:
        """Mark the connection closing and wait for a reconnect in progress to give up."""
        self._closing.set()
        reconnector = self._reconnector
        if reconnector is not None and reconnector is not threading.current_thread():
            reconnector.join(self._connect_timeout)

    def close(self) -> None:
        """Stop and drop the trader on its host thread (after :meth:`end_reconnects`); a trader that
        does not stop within ``call_timeout`` is left to its host."""
        with self._lock:
            host, self._host = self._host, None
            self.connected = False
            self.message = "closed"
        if host is None:
            return
        if host.busy:  # stuck in a call the client never answered: it stops the trader when it returns
            host.close(0.0)
            log.warning("QMT trader is in a call the client has not answered; it is stopped when it returns")
        elif not host.close(self._call.timeout):
            log.warning("QMT trader did not stop within %.1fs; its thread drops it when the client answers",
                        self._call.timeout)

    def live(self) -> tuple[Any, Any, Any]:
        """(trader, account, xtconstant) of the open connection, or QmtUnavailable saying why not."""
        with self._lock:
            if self._host is None or self._host.trader is None:
                if self.connecting:
                    raise QmtUnavailable(f"QMT broker is {CONNECTING}")
                raise QmtUnavailable("QMT broker is not connected: call connect() first")
            if not self.connected:
                raise QmtUnavailable(f"QMT client connection is down ({self.message}); reconnecting")
            return self._host.trader, self._account, self.xt.xtconstant

    def constants(self) -> Any:
        """The client's ``xtconstant``."""
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
        """Connect and subscribe again with exponential backoff (a fresh trader after
        :data:`RENEW_AFTER` failures), then replay what was missed; ends without effect once
        ``closing`` (its connection's) is set."""
        delay, attempt, failures = self._reconnect_delay, 0, 0
        while not closing.wait(delay):
            attempt += 1
            delay = min(delay * 2, self._reconnect_max_delay)
            try:
                if failures >= RENEW_AFTER:
                    if self._renew(closing):
                        break
                elif self._again(closing):
                    break
                log.info("QMT reconnect attempt %d failed; next in %.1fs", attempt, delay)
            except Exception as exc:  # keep trying: the client may come back
                log.warning("QMT reconnect attempt %d failed: %s; next in %.1fs", attempt, exc, delay)
            failures += 1
        else:
            return
        with self._lock:
            if closing.is_set():  # closed while the last attempt ran
                return
            self.connected = True
            new = f" with a new session {self.session_id}" if failures >= RENEW_AFTER else ""
            self.message = f"reconnected{new} after {attempt} attempt(s)"
            trader, account = self._host.trader if self._host else None, self._account
        if trader is not None:
            self._replay_missed(trader, account)
        self._raw.put((RECONNECTED, self.message))
        log.info("QMT client %s", self.message)

    def _again(self, closing: threading.Event) -> bool:
        """connect() and subscribe() again on the trader there is."""
        with self._lock:
            host, account = self._host, self._account
        if host is None:
            return False
        return bool(host.call(lambda: host.reconnect(account), what="connect", timeout=self._connect_timeout,
                              cancel=closing))

    def _renew(self, closing: threading.Event) -> bool:
        """Replace the trader that cannot reconnect with a fresh one under a new session id."""
        session_id = derive_session_id(avoid=self.session_id)
        log.warning("QMT: reconnecting on session %s keeps failing; trying a new trader with session %s",
                    self.session_id, session_id)
        host, account = self._open_host(session_id, closing)
        with self._lock:
            if closing.is_set():
                keep = False
            else:
                keep = True
                old, self._host, self._account = self._host, host, account
                self.session_id = session_id
                self.renewals += 1
        if not keep:
            host.close(self._call.timeout)
            return False
        if old is not None:
            old.close(0.0)
        return True

    def _replay_missed(self, trader: Any, account: Any) -> None:
        """Fills and status changes pushed while disconnected were lost: query them and feed them
        to the pump, which skips what it has already seen."""
        for query, name in ((trader.query_stock_trades, "on_stock_trade"),
                            (trader.query_stock_orders, "on_stock_order")):
            try:
                rows = self._call(query, account, what=name, limited=False)
            except Exception:
                log.exception("QMT %s after reconnect failed; missed events may be lost", name)
                continue
            for row in rows or ():  # None: nothing today (or a failed query: the broker sync catches up)
                self._raw.put((name, row))
