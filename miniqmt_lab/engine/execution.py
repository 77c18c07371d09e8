"""The ``strategy`` thread's work: guards, validation, reservation and submission of rule signals.

The monitor hands each signal over as a :class:`Task` and waits for its acknowledgement. Every
order, the manual ones too, reaches the broker through :meth:`Execution.submit`, which releases
the reservation and records why when the broker refuses it or does not answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import queue
import threading
from typing import TYPE_CHECKING

from miniqmt_lab.engine.book import PendingOrder
from miniqmt_lab.engine.guards import Signal, is_stale
from miniqmt_lab.errors import BrokerTimeout, OrderRejected, OutsideTradingTime
from miniqmt_lab.schema import RULE_NAMES, OrderRequest, Outcome

if TYPE_CHECKING:
    from miniqmt_lab.engine.trading import Trader

log = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class Task:
    signal: Signal
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


class Execution:
    """Carries out ``trader``'s signals from its task queue and sends its orders to the broker."""

    def __init__(self, trader: Trader) -> None:
        self.trader = trader

    def step(self) -> float:
        try:
            task = self.trader.tasks.get(timeout=self.trader.settings.engine.strategy_interval)
        except queue.Empty:
            return 0.0
        if task is None:
            return 0.0
        try:
            self.execute(task.signal)
        finally:
            task.done.set()
        return 0.0

    def execute(self, signal: Signal) -> None:
        """Guards, validation, reservation and submission of one rule signal; waits for its fills."""
        trader = self.trader
        store, settings = trader.store, trader.settings
        now = trader.clock.now()
        if not trader.accepting:
            store.update_signal(signal.id, Outcome.NOT_EXECUTED, "the engine is stopping")
            return
        if is_stale(signal.detected_at, now, settings.engine.signal_stale_seconds):
            age = (now - signal.detected_at).total_seconds()
            log.warning("signal %s is %.0f s old: dropped as stale", signal.id, age)
            store.update_signal(signal.id, Outcome.STALE, f"{age:.0f} s between detection and execution")
            return
        if trader.repeat.recent(signal.key, now):
            log.warning("signal %s repeats %s within %g s: refused", signal.id, signal.key, trader.repeat.window)
            store.update_signal(signal.id, Outcome.DUPLICATE, "same stock, rule and holding state ran recently")
            return
        order = PendingOrder(signal.id, signal.code, signal.side, signal.volume, signal.price, signal.rule,
                             progress=(signal.tick_time, signal.code))
        try:
            if not trader.clock.is_trading_time():
                raise OutsideTradingTime(f"{now:%Y-%m-%d %H:%M:%S} is outside trading time")
            trader.book.reserve(order, trader.fees)
        except OrderRejected as exc:
            log.warning("signal %s refused: %s", signal.id, exc)
            store.update_signal(signal.id, Outcome.REJECTED, f"{exc.reason}: {exc}")
            return
        trader.repeat.remember(signal.key, now)
        # marked before the broker sees it: after a crash the signal is never sent a second time
        store.update_signal(signal.id, Outcome.SUBMITTED, "")
        try:
            self.submit(order, signal.stamp)
        except (OrderRejected, BrokerTimeout):
            return
        order.done.wait(settings.engine.call_timeout)

    def submit(self, order: PendingOrder, stamp: dt.datetime) -> str:
        """Send a reserved order; on refusal or timeout release it, record why and raise
        (``OrderRejected`` or ``BrokerTimeout``)."""
        trader = self.trader
        book, store = trader.book, trader.store
        request = OrderRequest(
            order.code, order.side, order.volume, order.price, RULE_NAMES[order.rule], order.client_id, stamp
        )
        try:
            order_id = trader.runner.call("broker.submit", trader.broker.submit, request)
        except BrokerTimeout as exc:
            # the order may still reach the broker: its fill is then recorded when it arrives
            book.finish(order)
            store.update_signal(order.client_id, Outcome.UNKNOWN, str(exc))
            trader.last_error = str(exc)
            raise
        except OrderRejected as exc:
            book.finish(order)
            store.update_signal(order.client_id, Outcome.REJECTED, f"broker: {exc.reason}: {exc}")
            raise
        except Exception as exc:  # a broker failure refuses this order only
            book.finish(order)
            trader.last_error = f"broker.submit failed: {exc}"
            log.exception("broker.submit failed for %s", order.client_id)
            store.update_signal(order.client_id, Outcome.REJECTED, f"broker error: {exc}")
            raise OrderRejected(f"broker error: {exc}") from exc
        order.order_id = order_id
        store.set_order_id(order.client_id, order_id)
        return order_id

    def stop_tasks(self) -> None:
        """Acknowledge every queued signal as not executed (the engine is stopping)."""
        while True:
            try:
                task = self.trader.tasks.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                self.trader.store.update_signal(task.signal.id, Outcome.NOT_EXECUTED, "the engine stopped")
                task.done.set()
