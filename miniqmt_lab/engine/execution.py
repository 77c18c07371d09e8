"""The ``strategy`` thread's work, and the one path every order takes to the broker.

The monitor hands each rule signal over as a :class:`~miniqmt_lab.engine.context.Task` and waits for
its acknowledgement; a manual order comes from the caller's thread. Both go through
:meth:`Execution.place`: the pre-trade check (trading state, rate limit, order value), trading time,
the reservation in the book, the record, then the broker. A submit that does not answer in time
leaves the order *unknown*: it keeps its reservation, no rule of that stock runs, and the broker's
events or its order list (matched by the signal id the order carries) settle it later; it is never
sent again. An execution that raises ends its signal as ``failed`` with the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
from collections.abc import Callable

from miniqmt_lab.engine.book import PendingOrder
from miniqmt_lab.engine.context import RunContext
from miniqmt_lab.engine.guards import Signal, is_stale
from miniqmt_lab.errors import BrokerTimeout, OrderRejected, OutsideTradingTime
from miniqmt_lab.schema import RULE_NAMES, OrderRequest, OrderStatus, Outcome

log = logging.getLogger(__name__)


class OrderOutcomeUnknown(BrokerTimeout):
    """The broker did not answer a submit in time: the order may be at the broker. It is tracked as
    ``unknown`` (reservation held, never re-sent) until the broker's events or order list settle it."""


class Execution:
    """Carries out the run's signals from its task queue and sends every order to the broker."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def step(self) -> float:
        try:
            task = self.ctx.tasks.get(timeout=self.ctx.settings.engine.strategy_interval)
        except queue.Empty:
            return 0.0
        if task is None:
            return 0.0
        try:
            self.execute(task.signal)
        except Exception as exc:  # a failed execution ends its signal, never the strategy thread
            log.exception("executing signal %s failed", task.signal.id)
            self.ctx.last_error = f"signal {task.signal.id} failed: {exc}"
            try:
                self.ctx.store.update_signal(task.signal.id, Outcome.FAILED, f"{type(exc).__name__}: {exc}")
            except Exception:
                log.exception("could not record the failure of signal %s", task.signal.id)
        finally:
            task.done.set()
        return 0.0

    def execute(self, signal: Signal) -> None:
        """Live guards, then :meth:`place`; waits for the order's fills (or its timeout)."""
        ctx = self.ctx
        store, settings = ctx.store, ctx.settings
        now = ctx.clock.now()
        if not ctx.accepting:
            store.update_signal(signal.id, Outcome.NOT_EXECUTED, "the engine is stopping")
            return
        if is_stale(signal.detected_at, now, settings.engine.signal_stale_seconds):
            age = (now - signal.detected_at).total_seconds()
            log.warning("signal %s is %.0f s old: dropped as stale", signal.id, age)
            store.update_signal(signal.id, Outcome.STALE, f"{age:.0f} s between detection and execution")
            return
        if ctx.repeat.recent(signal.key, now):
            log.warning("signal %s repeats %s within %g s: refused", signal.id, signal.key, ctx.repeat.window)
            store.update_signal(signal.id, Outcome.DUPLICATE, "same stock, rule and holding state ran recently")
            return
        order = PendingOrder(signal.id, signal.code, signal.side, signal.volume, signal.price, signal.rule,
                             progress=(signal.tick_time, signal.code))
        try:
            self.place(order, signal.stamp, on_reserved=lambda: ctx.repeat.remember(signal.key, now))
        except (OrderRejected, BrokerTimeout):
            return
        order.done.wait(settings.engine.call_timeout)

    def place(
        self, order: PendingOrder, stamp: dt.datetime, *, on_reserved: Callable[[], None] | None = None
    ) -> str:
        """The pre-trade check, trading time, reservation and submission of one order whose signal row
        exists. Refusals raise the typed ``OrderRejected`` and are recorded on the signal; a submit that
        times out raises :class:`OrderOutcomeUnknown`. ``on_reserved`` runs once the order is reserved."""
        ctx = self.ctx
        book, store = ctx.book, ctx.store
        now = ctx.clock.now()
        try:
            ctx.risk.check(order.side, order.code, order.volume, order.price, now)
            if not ctx.clock.is_trading_time():
                raise OutsideTradingTime(f"{now:%Y-%m-%d %H:%M:%S} is outside trading time")
            book.reserve(order, ctx.fees_for(now.date()))
        except OrderRejected as exc:
            log.warning("order %s refused: %s", order.client_id, exc)
            store.update_signal(order.client_id, Outcome.REJECTED, f"{exc.reason}: {exc}")
            raise
        if on_reserved is not None:
            on_reserved()
        # marked before the broker sees it: after a crash the signal is never sent a second time
        store.update_signal(order.client_id, Outcome.SUBMITTED, "")
        order.submitted_at = now
        return self.submit(order, stamp)

    def submit(self, order: PendingOrder, stamp: dt.datetime) -> str:
        """Send a reserved order. A refusal releases the reservation, is recorded and raised; a timeout
        leaves the order unknown with its reservation held (:class:`OrderOutcomeUnknown`)."""
        ctx = self.ctx
        book, store = ctx.book, ctx.store
        request = OrderRequest(
            order.code, order.side, order.volume, order.price, RULE_NAMES[order.rule], order.client_id, stamp
        )
        try:
            order_id = ctx.calls.call("broker.submit", ctx.broker.submit, request)
        except BrokerTimeout as exc:
            with book.lock:
                order.unknown = True
                order.status = OrderStatus.UNKNOWN
            message = (f"{exc}: the order may be at the broker; it is kept (reservation held, never re-sent)"
                       " until the broker's events or order list say what became of it")
            store.update_signal(order.client_id, Outcome.UNKNOWN, message)
            ctx.last_error = f"order {order.client_id}: {message}"
            log.error("order %s of %s: %s", order.client_id, order.code, message)
            ctx.on_change()
            raise OrderOutcomeUnknown(f"{order.side.value} {order.volume} {order.code}: {message}") from None
        except OrderRejected as exc:
            book.finish(order)
            store.update_signal(order.client_id, Outcome.REJECTED, f"broker: {exc.reason}: {exc}")
            raise
        except Exception as exc:  # a broker failure refuses this order only
            book.finish(order)
            ctx.last_error = f"broker.submit failed: {exc}"
            log.exception("broker.submit failed for %s", order.client_id)
            store.update_signal(order.client_id, Outcome.REJECTED, f"broker error: {exc}")
            raise OrderRejected(f"broker error: {exc}") from exc
        if not order.order_id:
            order.order_id = order_id
        store.set_order_id(order.client_id, order_id)
        return order_id

    def stop_tasks(self) -> None:
        """Acknowledge every queued signal as not executed (the engine is stopping)."""
        while True:
            try:
                task = self.ctx.tasks.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                self.ctx.store.update_signal(task.signal.id, Outcome.NOT_EXECUTED, "the engine stopped")
                task.done.set()


__all__ = ["Execution", "OrderOutcomeUnknown"]
