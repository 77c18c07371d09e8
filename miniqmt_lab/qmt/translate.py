"""From xtquant's order objects to the engine's broker events.

Pure translation (status codes, order remarks, trade keys, the fees of a fill) and
:class:`OrderTracker`: what :class:`~miniqmt_lab.qmt.broker.QmtBroker` knows of its orders, and the
pump's handlers that turn order answers, order and trade pushes and errors into ``OrderUpdate``,
``Fill`` and ``BrokerError`` events. Orders of other programs (other strategy names) are ignored;
repeated pushes (the client repeats them, a replay after a reconnect too) are reported once.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from miniqmt_lab import market as mkt
from miniqmt_lab.config import FeeSettings
from miniqmt_lab.errors import BrokerTimeout
from miniqmt_lab.schema import BrokerError, BrokerEvent, Fill, OrderStatus, OrderUpdate, Side

log = logging.getLogger(__name__)

STRATEGY_NAME = "miniqmt_lab"
REMARK_LIMIT = 24  # some counters cut order remarks at 24 characters

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
class TrackedOrder:
    """What the adapter knows of one of its orders."""

    code: str
    side: Side
    volume: int
    price: float
    rule: str
    signal_id: str
    stamp: dt.datetime | None = None
    sent_on: dt.date = field(default_factory=lambda: dt.datetime.now(mkt.SHANGHAI).date())
    status: int | None = None
    traded: int = -1
    amount: float = 0.0
    fee_paid: float = 0.0
    trades: set[str] = field(default_factory=set)


def fill_commission(tracked: TrackedOrder, amount: float, reported: float, fees: Any) -> float:
    """Fees of one fill: the broker's figure when it gives one, else the order's fees on its traded
    amount so far minus what earlier fills of the order already carried (minimum commission once)."""
    if reported and reported > 0:
        return round(float(reported), 2)
    due = mkt.order_fees(tracked.amount + amount, tracked.side.value, fees).total
    return round(max(due - tracked.fee_paid, 0.0), 2)


# -- the adapter's orders ---------------------------------------------------------------------------


class OrderTracker:
    """The adapter's orders by broker order id, the answers :meth:`send` waits for, and the handlers
    of order callbacks, which put their events through ``emit``.

    ``lock`` is the broker's: one lock over its orders and its connection. ``constants`` gives the
    connected client's ``xtconstant``.
    """

    def __init__(
        self, fees: FeeSettings, *, lock: threading.RLock, emit: Callable[[BrokerEvent], None],
        constants: Callable[[], Any],
    ) -> None:
        self.rejected: dict[str, str] = {}
        self._fees = fees
        self._lock = lock
        self._answered = threading.Condition(lock)
        self._emit = emit
        self._constants = constants
        self._orders: dict[int, TrackedOrder] = {}
        self._pending: dict[int, TrackedOrder] = {}  # seq -> order sent, answer not processed yet
        self._waiting: set[int] = set()  # seqs a send() is waiting on
        self._answers: dict[int, Any] = {}
        self._refused_seqs: set[int] = set()  # refusals send() raised: their on_order_error is not repeated
        self._cancel_errors: set[int] = set()  # order ids whose failed cancel was already reported

    def send(self, tracked: TrackedOrder, what: str, place: Callable[[], Any], timeout: float) -> Any:
        """The async answer to the order ``place()`` sends (it returns the order's seq, always a new
        positive number: a refusal comes as the answer and an ``on_order_error`` carrying it);
        BrokerTimeout when no answer comes within ``timeout``."""
        with self._lock:
            # held while sending, so the pump cannot take the answer before the seq is registered
            seq = int(place())
            self._pending[seq] = tracked
            self._waiting.add(seq)
            try:
                answered = self._answered.wait_for(lambda: seq in self._answers, timeout=timeout)
            finally:
                self._waiting.discard(seq)
            if not answered:
                raise BrokerTimeout(
                    f"no answer to {what} (seq {seq}) within {timeout:g}s; it may still be working:"
                    " check the client's order list before sending it again"
                )
            return self._answers.pop(seq)

    def signal_of(self, order_id: int) -> str:
        with self._lock:
            tracked = self._orders.get(order_id)
        return tracked.signal_id if tracked else ""

    def sent_today(self) -> bool:
        """True when an order this adapter sent or tracks dates from today (Shanghai)."""
        today = dt.datetime.now(mkt.SHANGHAI).date()
        with self._lock:
            tracked = [*self._orders.values(), *self._pending.values()]
        return any(t.sent_on == today for t in tracked)

    def open_orders(self) -> int:
        with self._lock:
            return sum(1 for t in self._orders.values() if t.status is None or not order_status(t.status).final)

    # -- the pump's handlers ---------------------------------------------------------------------------
    def on_order_stock_async_response(self, r: Any) -> None:
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

    def _tracked(self, order_id: int, xt: Any) -> TrackedOrder | None:
        """The adapter's record of an order; orders of other programs (other strategy names) are None."""
        with self._lock:
            tracked = self._orders.get(order_id)
            if tracked is None and getattr(xt, "strategy_name", "") == STRATEGY_NAME:
                # a push that overtook its async answer: rebuild what the remark carries
                rule, signal_id = parse_remark(xt.order_remark)
                tracked = TrackedOrder(
                    code=xt.stock_code, side=side_of(xt.order_type, self._constants().STOCK_BUY),
                    volume=int(getattr(xt, "order_volume", 0) or 0), price=float(getattr(xt, "price", 0.0) or 0.0),
                    rule=rule, signal_id=signal_id,
                )
                self._orders[order_id] = tracked
            return tracked

    def on_stock_order(self, o: Any) -> None:
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

    def on_stock_trade(self, t: Any) -> None:
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
            commission = fill_commission(tracked, amount, float(t.commission or 0.0), self._fees)
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

    def on_order_error(self, e: Any) -> None:
        order_id, seq = int(e.order_id), int(getattr(e, "seq", 0) or 0)
        message = f"{e.error_msg} (error {e.error_id})"
        with self._lock:
            pending = self._pending.pop(seq, None) if order_id <= 0 else None
            if seq in self._refused_seqs:  # send() already raised it
                self._refused_seqs.discard(seq)
                return
            tracked = self._orders.get(order_id) or pending
            if order_id > 0:
                self.rejected[str(order_id)] = message
        log.warning("QMT order %s error: %s", order_id, message)
        self._emit(BrokerError(str(order_id) if order_id > 0 else "", message, kind="order",
                               signal_id=tracked.signal_id if tracked else ""))

    def on_cancel_order_stock_async_response(self, r: Any) -> None:
        if int(r.cancel_result) == 0:
            return
        order_id = int(r.order_id)
        with self._lock:
            self._cancel_errors.add(order_id)
            tracked = self._orders.get(order_id)
        self._emit(BrokerError(str(order_id), r.error_msg or f"cancel refused ({r.cancel_result})", kind="cancel",
                               signal_id=tracked.signal_id if tracked else ""))

    def on_cancel_error(self, e: Any) -> None:
        order_id = int(e.order_id)
        with self._lock:
            if order_id in self._cancel_errors:  # already reported from the cancel's answer
                self._cancel_errors.discard(order_id)
                return
            tracked = self._orders.get(order_id)
        self._emit(BrokerError(str(order_id), f"{e.error_msg} (error {e.error_id})", kind="cancel",
                               signal_id=tracked.signal_id if tracked else ""))
