"""``QmtBroker``: the Broker protocol over xtquant's ``XtQuantTrader`` (live trading on miniQMT).

Threads and their jobs:

* xtquant's callback thread runs our callback object, which only puts ``(name, data)`` on a raw
  queue: a callback that called the trader back would deadlock it (shared/spec/xtquant.md).
* ``qmt-events`` (the pump) turns raw callbacks into ``OrderUpdate``/``Fill``/``BrokerError``/
  ``ConnectionChanged`` on :attr:`QmtBroker.events`, in arrival order. A translation that raises
  is logged and skipped; the pump goes on.
* ``qmt-reconnect`` runs after ``on_disconnected``: connect() and subscribe() again with
  exponential backoff, replay the orders and trades missed meanwhile, then report the connection.
* every blocking trader call (queries, connect, stop) runs on a short-lived ``qmt-call`` thread
  and is abandoned after ``engine.call_timeout`` with :class:`BrokerTimeout`, so a hung client
  never blocks the engine longer than that.

Rejected orders are recorded in :attr:`QmtBroker.rejected` and never sent again.

``close`` stops the trader, the pump and any reconnect; ``connect`` after it creates, starts and
subscribes a new trader (an engine stopped and started again). What the adapter knows of its orders
is kept, so pushes for an order sent before the close are still reported with its signal; fills
made while closed are not replayed: the engine's broker sync adopts the positions and cash.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from miniqmt_lab import market as mkt
from miniqmt_lab.config import Settings
from miniqmt_lab.engine.interfaces import (
    BrokerAsset,
    BrokerError,
    BrokerEvent,
    BrokerPosition,
    BrokerStatus,
    ConnectionChanged,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Side,
    mask_account,
)
from miniqmt_lab.errors import BrokerTimeout, InvalidVolume, OrderRejected, QmtUnavailable
from miniqmt_lab.qmt.loader import XtModules, derive_session_id, open_trader, resolve

log = logging.getLogger(__name__)

STRATEGY_NAME = "miniqmt_lab"
REMARK_LIMIT = 24  # some counters cut order remarks at 24 characters
MAX_HUNG_CALLS = 4  # beyond this many abandoned calls the client is treated as hung, not asked again

STATUS_BY_CODE: dict[int, OrderStatus] = {
    48: OrderStatus.SUBMITTED,  # unreported
    49: OrderStatus.SUBMITTED,  # waiting to report
    50: OrderStatus.REPORTED,
    51: OrderStatus.REPORTED,  # cancel requested, nothing filled
    # 52 is "part filled, cancel pending": more fills may still come, so it is not final
    52: OrderStatus.PARTIAL,
    53: OrderStatus.PARTIAL_CANCELLED,
    54: OrderStatus.CANCELLED,
    55: OrderStatus.PARTIAL,
    56: OrderStatus.FILLED,
    57: OrderStatus.REJECTED,
    255: OrderStatus.UNKNOWN,
}

RULE_TAGS = {
    "stop_loss": "SL",
    "take_profit_initial": "TP1",
    "take_profit_dynamic": "TPD",
    "grid_buy": "GRID",
    "entry": "ENTRY",
    "manual": "MANUAL",
}
RULES_BY_TAG = {tag: rule for rule, tag in RULE_TAGS.items()}

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
_RECONNECTED = "reconnected"  # raw-queue marker put after the replay of missed events


# -- pure translation -------------------------------------------------------------------------------


def order_status(code: int) -> OrderStatus:
    return STATUS_BY_CODE.get(int(code), OrderStatus.UNKNOWN)


def order_remark(rule: str, signal_id: str) -> str:
    """What the client's order list shows: the rule's short tag and the signal id."""
    tag = RULE_TAGS.get(rule, rule)
    return f"{tag}:{signal_id}"[:REMARK_LIMIT] if signal_id else tag[:REMARK_LIMIT]


def parse_remark(remark: str) -> tuple[str, str]:
    """(rule, signal_id) from :func:`order_remark` (the signal id may have been cut)."""
    tag, _, signal_id = str(remark or "").partition(":")
    return RULES_BY_TAG.get(tag, ""), signal_id


def side_of(order_type: int, buy_code: int) -> Side:
    return Side.BUY if int(order_type) == buy_code else Side.SELL


def shanghai_time(epoch_seconds: float) -> dt.datetime:
    if epoch_seconds and math.isfinite(epoch_seconds):
        return dt.datetime.fromtimestamp(epoch_seconds, mkt.SHANGHAI)
    return dt.datetime.now(mkt.SHANGHAI)


def trade_key(traded_at: dt.datetime, code: str, traded_id: object) -> str:
    """A trade id unique across days and exchanges: exchange trade numbers restart every day."""
    return f"{traded_at:%Y%m%d}-{code}-{traded_id}"


@dataclass
class _Tracked:
    """What the adapter knows of one of its orders."""

    code: str
    side: Side
    volume: int
    price: float
    rule: str
    signal_id: str
    stamp: dt.datetime | None = None
    status: int | None = None
    traded: int = -1
    amount: float = 0.0
    fee_paid: float = 0.0
    trades: set[str] = field(default_factory=set)


def fill_commission(tracked: _Tracked, amount: float, reported: float, fees: Any) -> float:
    """Fees of one fill: the broker's figure when it gives one, else the order's fees on its traded
    amount so far minus what earlier fills of the order already carried (minimum commission once)."""
    if reported and reported > 0:
        return round(float(reported), 2)
    due = mkt.order_fees(tracked.amount + amount, tracked.side.value, fees).total
    return round(max(due - tracked.fee_paid, 0.0), 2)


def make_callback(base: type, sink: Callable[[tuple[str, Any]], None]) -> Any:
    """An ``XtQuantTraderCallback`` whose every method only hands its argument to ``sink``."""

    def forward(name: str) -> Callable[..., None]:
        def method(self: Any, data: Any = None) -> None:
            sink((name, data))

        method.__name__ = name
        return method

    return type("MiniQmtCallback", (base,), {name: forward(name) for name in CALLBACK_NAMES})()


# -- the broker -------------------------------------------------------------------------------------


class _Pump:
    """The ``qmt-events`` thread: raw callbacks in, interface events out, one at a time."""

    def __init__(self, raw: queue.Queue[tuple[str, Any]], handle: Callable[[str, Any], None]) -> None:
        self._raw = raw
        self._handle = handle
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


class QmtBroker:
    """The Broker protocol on a miniQMT account through ``xtquant.xttrader``.

    ``modules`` supplies xtquant (default: the installed package, imported on :meth:`connect`);
    tests and demos pass a :class:`miniqmt_lab.qmt.fake.FakeQmt`. ``reconnect_delay`` and
    ``reconnect_max_delay`` bound the backoff between reconnect attempts (seconds).
    """

    name = "qmt"

    def __init__(
        self,
        settings: Settings,
        *,
        modules: XtModules | None = None,
        reconnect_delay: float = 1.0,
        reconnect_max_delay: float = 60.0,
    ) -> None:
        self.settings = settings
        self.events: queue.Queue[BrokerEvent] = queue.Queue()
        self.rejected: dict[str, str] = {}
        self.session_id = settings.qmt.session_id or derive_session_id()
        self._modules = modules
        self._timeout = settings.engine.call_timeout
        self._connect_timeout = max(10.0, self._timeout)
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay

        self._raw: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._pump = _Pump(self._raw, self._handle)
        self._lock = threading.RLock()
        self._answered = threading.Condition(self._lock)
        self._xt: XtModules | None = None
        self._trader: Any = None
        self._account: Any = None
        self._connected = False
        self._closing = threading.Event()  # one per connection: a reconnect of a closed one sees it set
        self._reconnector: threading.Thread | None = None
        self._outages = 0
        self._message = "not connected"

        self._orders: dict[int, _Tracked] = {}
        self._pending: dict[int, _Tracked] = {}  # seq -> order sent, answer not processed yet
        self._waiting: set[int] = set()  # seqs a submit() is waiting on
        self._answers: dict[int, Any] = {}
        self._refused_seqs: set[int] = set()  # refusals submit() raised: their on_order_error is not repeated
        self._cancel_errors: set[int] = set()  # order ids whose failed cancel was already reported
        self._hung: set[threading.Thread] = set()
        self._hung_lock = threading.Lock()
        self._handlers: dict[str, Callable[[Any], None]] = {
            "on_order_stock_async_response": self._on_order_stock_async_response,
            "on_stock_order": self._on_stock_order,
            "on_stock_trade": self._on_stock_trade,
            "on_order_error": self._on_order_error,
            "on_cancel_order_stock_async_response": self._on_cancel_order_stock_async_response,
            "on_cancel_error": self._on_cancel_error,
            "on_account_status": self._on_account_status,
            "on_disconnected": self._on_disconnected,
            _RECONNECTED: self._on_reconnected,
        }

    # -- life cycle --------------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect to the client and subscribe the account, or raise QmtUnavailable saying what to fix."""
        with self._lock:
            if self._trader is not None:
                return
            self._closing = threading.Event()
            xt = resolve(self._modules)
            callback = make_callback(xt.xttrader.XtQuantTraderCallback, self._raw.put)
            qmt = self.settings.qmt
            trader, account = self._call(
                open_trader, xt, what="connect", timeout=self._connect_timeout,
                userdata_path=qmt.qmt_userdata_path, session_id=self.session_id,
                account_id=qmt.account_id, account_type=qmt.account_type, callback=callback,
            )
            self._xt, self._trader, self._account = xt, trader, account
            self._connected = True
            self._message = f"connected (session {self.session_id})"
        self._pump.start()
        self._emit(ConnectionChanged(True, self._message))
        log.info("QMT broker connected to account %s, session %s", mask_account(qmt.account_id), self.session_id)

    def close(self) -> None:
        self._closing.set()
        reconnector = self._reconnector
        if reconnector is not None and reconnector is not threading.current_thread():
            reconnector.join(self._connect_timeout)
        self._pump.stop()
        with self._lock:
            trader, self._trader = self._trader, None
            self._connected = False
            self._message = "closed"
        if trader is not None:
            try:
                self._call(trader.stop, what="stop")
            except BrokerTimeout:
                log.warning("QMT trader did not stop within %.1fs; abandoning it", self._timeout)

    # -- orders ------------------------------------------------------------------------------------
    def submit(self, order: OrderRequest) -> str:
        trader, account, xtc = self._live()
        code = mkt.normalize_code(order.code)
        volume = order.volume
        if isinstance(volume, bool) or not isinstance(volume, int) or volume <= 0:
            raise InvalidVolume(f"order volume must be a positive whole number of shares, got {volume!r}")
        if order.price is None:
            price_type, price = xtc.LATEST_PRICE, 0.0
        else:
            price_type, price = xtc.FIX_PRICE, mkt.check_price(order.price, what="limit price")
        order_type = xtc.STOCK_BUY if order.side is Side.BUY else xtc.STOCK_SELL
        what = f"{order.side.value} {volume} {code}"
        tracked = _Tracked(code, order.side, volume, price, order.rule, order.signal_id, order.stamp)
        with self._lock:
            # held while sending, so the pump cannot take the answer before the seq is registered
            seq = self._call(
                trader.order_stock_async, account, code, order_type, volume, price_type, price,
                STRATEGY_NAME, order_remark(order.rule, order.signal_id), what="order_stock_async",
            )
            if not isinstance(seq, int) or seq < 0:
                raise OrderRejected(f"QMT did not take {what} (order_stock_async returned {seq})")
            self._pending[seq] = tracked
            self._waiting.add(seq)
            try:
                answered = self._answered.wait_for(lambda: seq in self._answers, timeout=self._timeout)
            finally:
                self._waiting.discard(seq)
            if not answered:
                raise BrokerTimeout(
                    f"no answer to {what} (seq {seq}) within {self._timeout:g}s; it may still be working:"
                    " check the client's order list before sending it again"
                )
            answer = self._answers.pop(seq)
        order_id = int(answer.order_id)
        if order_id <= 0:
            raise OrderRejected(f"QMT refused {what}: {answer.error_msg or 'no reason given'}")
        return str(order_id)

    def cancel(self, order_id: str) -> None:
        trader, account, _ = self._live()
        number = int(order_id)
        seq = self._call(trader.cancel_order_stock_async, account, number, what="cancel_order_stock_async")
        if not isinstance(seq, int) or seq < 0:
            with self._lock:
                tracked = self._orders.get(number)
            self._emit(BrokerError(str(order_id), f"cancel of order {order_id} was not sent (returned {seq})",
                                   kind="cancel", signal_id=tracked.signal_id if tracked else ""))

    # -- queries -----------------------------------------------------------------------------------
    def positions(self) -> list[BrokerPosition]:
        trader, account, _ = self._live()
        rows = self._call(trader.query_stock_positions, account, what="query_stock_positions")
        if rows is None:
            raise QmtUnavailable("query_stock_positions returned nothing: the QMT client may have disconnected")
        return [
            BrokerPosition(
                code=p.stock_code, volume=int(p.volume), available=int(p.can_use_volume), cost=float(p.avg_price),
                last_price=float(p.last_price), market_value=float(p.market_value), name=p.instrument_name or "",
            )
            for p in rows
            if int(p.volume) > 0  # the client lists stocks sold out today with volume 0
        ]

    def asset(self) -> BrokerAsset:
        trader, account, _ = self._live()
        a = self._call(trader.query_stock_asset, account, what="query_stock_asset")
        if a is None:
            raise QmtUnavailable("query_stock_asset returned nothing: the QMT client may have disconnected")
        return BrokerAsset(float(a.cash), float(a.frozen_cash), float(a.market_value), float(a.total_asset))

    def status(self) -> BrokerStatus:
        with self._lock:
            open_orders = sum(1 for t in self._orders.values() if t.status is None or not order_status(t.status).final)
            reconnecting = self._reconnector is not None and self._reconnector.is_alive()
            return BrokerStatus(
                connected=self._connected,
                name=self.name,
                message=self._message,
                account=mask_account(self.settings.qmt.account_id),
                outages=self._outages,
                details={
                    "session_id": self.session_id,
                    "open_orders": open_orders,
                    "rejected": len(self.rejected),
                    "hung_calls": self._hung_count(),
                    "reconnecting": reconnecting,
                    "pump": self._pump.state,
                    "pump_alive": self._pump.alive,
                    "pump_failures": self._pump.failures,
                },
            )

    # -- calls under the timeout ---------------------------------------------------------------------
    def _live(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if self._trader is None or self._xt is None:
                raise QmtUnavailable("QMT broker is not connected: call connect() first")
            if not self._connected:
                raise QmtUnavailable(f"QMT client connection is down ({self._message}); reconnecting")
            return self._trader, self._account, self._xt.xtconstant

    def _hung_count(self) -> int:
        with self._hung_lock:
            self._hung = {t for t in self._hung if t.is_alive()}
            return len(self._hung)

    def _call(self, fn: Callable[..., Any], *args: Any, what: str, timeout: float | None = None, **kwargs: Any) -> Any:
        """``fn(*args)`` on its own thread; BrokerTimeout if it has not returned within the timeout."""
        limit = self._timeout if timeout is None else timeout
        hung = self._hung_count()
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

    def _emit(self, event: BrokerEvent) -> None:
        self.events.put(event)

    # -- the pump's work -----------------------------------------------------------------------------
    def _handle(self, name: str, data: Any) -> None:
        handler = self._handlers.get(name)
        if handler is None:
            log.debug("QMT callback %s ignored", name)
            return
        handler(data)

    def _on_order_stock_async_response(self, r: Any) -> None:
        seq, order_id = int(r.seq), int(r.order_id)
        with self._lock:
            if order_id > 0:
                tracked = self._pending.pop(seq, None)
                early = self._orders.get(order_id)
                if tracked is not None and early is not None:
                    # pushes overtook this answer: keep what they taught, take the full request data
                    tracked.status, tracked.traded, tracked.amount = early.status, early.traded, early.amount
                    tracked.fee_paid, tracked.trades = early.fee_paid, early.trades
                if tracked is not None:
                    self._orders[order_id] = tracked
            else:
                # the refusal's on_order_error follows and still needs the order's signal id
                log.warning("QMT refused order seq %s: %s", seq, r.error_msg)
                if seq in self._waiting:
                    self._refused_seqs.add(seq)
            if seq in self._waiting:
                self._answers[seq] = r
                self._answered.notify_all()

    def _tracked(self, order_id: int, xt: Any) -> _Tracked | None:
        """The adapter's record of an order; orders of other programs (other strategy names) are None."""
        with self._lock:
            tracked = self._orders.get(order_id)
            if tracked is None and getattr(xt, "strategy_name", "") == STRATEGY_NAME:
                # a push that overtook its async answer: rebuild what the remark carries
                rule, signal_id = parse_remark(xt.order_remark)
                assert self._xt is not None
                tracked = _Tracked(
                    code=xt.stock_code, side=side_of(xt.order_type, self._xt.xtconstant.STOCK_BUY),
                    volume=int(getattr(xt, "order_volume", 0) or 0), price=float(getattr(xt, "price", 0.0) or 0.0),
                    rule=rule, signal_id=signal_id,
                )
                self._orders[order_id] = tracked
            return tracked

    def _on_stock_order(self, o: Any) -> None:
        order_id, code, traded = int(o.order_id), int(o.order_status), int(o.traded_volume)
        tracked = self._tracked(order_id, o)
        if tracked is None:
            log.debug("order %s of another program ignored", order_id)
            return
        with self._lock:
            if (tracked.status, tracked.traded) == (code, traded):
                return  # the client repeats pushes; a replay after reconnect repeats them too
            tracked.status, tracked.traded = code, traded
            status = order_status(code)
            if status is OrderStatus.REJECTED:
                self.rejected[str(order_id)] = o.status_msg or "rejected"
        price = float(o.price) if float(o.price) > 0 else float(o.traded_price)
        self._emit(OrderUpdate(
            order_id=str(order_id), code=o.stock_code, side=tracked.side, status=status,
            volume=int(o.order_volume), filled_volume=traded, price=price, message=o.status_msg or "",
            signal_id=tracked.signal_id, rule=tracked.rule,
        ))

    def _on_stock_trade(self, t: Any) -> None:
        order_id = int(t.order_id)
        tracked = self._tracked(order_id, t)
        if tracked is None:
            log.debug("trade of order %s of another program ignored", order_id)
            return
        price, volume = float(t.traded_price), int(t.traded_volume)
        amount = float(t.traded_amount) or round(price * volume, 2)
        with self._lock:
            if t.traded_id in tracked.trades:
                return
            commission = fill_commission(tracked, amount, float(t.commission or 0.0), self.settings.fees)
            tracked.trades.add(t.traded_id)
            tracked.amount += amount
            tracked.fee_paid += commission
        traded_at = shanghai_time(t.traded_time)
        self._emit(Fill(
            order_id=str(order_id), trade_id=trade_key(traded_at, t.stock_code, t.traded_id), code=t.stock_code,
            side=tracked.side, price=price,
            volume=volume, amount=amount, commission=commission,
            time=tracked.stamp if tracked.stamp is not None else traded_at,
            signal_id=tracked.signal_id, rule=tracked.rule,
        ))

    def _on_order_error(self, e: Any) -> None:
        order_id, seq = int(e.order_id), int(getattr(e, "seq", 0) or 0)
        message = f"{e.error_msg} (error {e.error_id})"
        with self._lock:
            pending = self._pending.pop(seq, None) if order_id <= 0 else None
            if seq in self._refused_seqs:  # submit() already raised it
                self._refused_seqs.discard(seq)
                return
            tracked = self._orders.get(order_id) or pending
            if order_id > 0:
                self.rejected[str(order_id)] = message
        log.warning("QMT order %s error: %s", order_id, message)
        self._emit(BrokerError(str(order_id) if order_id > 0 else "", message, kind="order",
                               signal_id=tracked.signal_id if tracked else ""))

    def _on_cancel_order_stock_async_response(self, r: Any) -> None:
        if int(r.cancel_result) == 0:
            return
        order_id = int(r.order_id)
        with self._lock:
            self._cancel_errors.add(order_id)
            tracked = self._orders.get(order_id)
        self._emit(BrokerError(str(order_id), r.error_msg or f"cancel refused ({r.cancel_result})", kind="cancel",
                               signal_id=tracked.signal_id if tracked else ""))

    def _on_cancel_error(self, e: Any) -> None:
        order_id = int(e.order_id)
        with self._lock:
            if order_id in self._cancel_errors:  # already reported from the cancel's answer
                self._cancel_errors.discard(order_id)
                return
            tracked = self._orders.get(order_id)
        self._emit(BrokerError(str(order_id), f"{e.error_msg} (error {e.error_id})", kind="cancel",
                               signal_id=tracked.signal_id if tracked else ""))

    def _on_account_status(self, s: Any) -> None:
        log.info("QMT account %s status %s", mask_account(str(s.account_id)), s.status)

    def _on_disconnected(self, _: Any) -> None:
        with self._lock:
            if self._closing.is_set() or not self._connected:
                return
            self._connected = False
            self._outages += 1
            self._message = "disconnected from the QMT client; reconnecting"
            self._reconnector = threading.Thread(
                target=self._reconnect, args=(self._closing,), name="qmt-reconnect", daemon=True
            )
            self._reconnector.start()
        log.warning("QMT client disconnected (outage %d); reconnecting", self._outages)
        self._emit(ConnectionChanged(False, self._message))

    def _on_reconnected(self, message: str) -> None:
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
            self._connected = True
            self._message = f"reconnected after {attempt} attempt(s)"
        self._replay_missed(trader, account)
        self._raw.put((_RECONNECTED, self._message))
        log.info("QMT client %s", self._message)

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
