"""The ``events`` thread's work: broker events applied to the book and the records.

Events are matched to the pending order they concern by signal id, else by broker order id. A
fill is committed to SQLite (with the book's other changes and the progress it completes), then
shown in the book; a final order status or an order error releases what the order reserved.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
from typing import TYPE_CHECKING

from miniqmt_lab import market
from miniqmt_lab.engine.book import PendingOrder, fill_transition
from miniqmt_lab.engine.store import TradeRow
from miniqmt_lab.schema import (
    RULE_NAMES,
    BrokerError,
    BrokerEvent,
    ConnectionChanged,
    Fill,
    OrderStatus,
    OrderUpdate,
    Outcome,
    Rule,
    Side,
)

if TYPE_CHECKING:
    from miniqmt_lab.engine.trading import Trader

log = logging.getLogger(__name__)

EVENTS_WAIT = 0.5  # seconds the events thread blocks on the broker queue per turn


class BrokerEvents:
    """Applies the events of ``trader``'s broker to its book and records."""

    def __init__(self, trader: Trader) -> None:
        self.trader = trader

    def step(self) -> float:
        try:
            event = self.trader.broker.events.get(timeout=EVENTS_WAIT)
        except queue.Empty:
            return 0.0
        self.apply(event)
        return 0.0

    def drain(self) -> None:
        while True:
            try:
                event = self.trader.broker.events.get_nowait()
            except queue.Empty:
                return
            self.apply(event)

    def _match(self, signal_id_: str, order_id: str) -> PendingOrder | None:
        book = self.trader.book
        with book.lock:
            order = book.pending.get(signal_id_) if signal_id_ else None
            if order is None and order_id:
                order = next((o for o in book.pending.values() if o.order_id == order_id), None)
            return order

    def apply(self, event: BrokerEvent) -> None:
        trader = self.trader
        if isinstance(event, Fill):
            self._apply_fill(event)
        elif isinstance(event, OrderUpdate):
            order = self._match(event.signal_id, event.order_id)
            if order is None:
                return
            order.order_id = order.order_id or event.order_id
            order.status = event.status
            if event.status.final:
                if order.filled == 0 and event.status is not OrderStatus.FILLED:
                    outcome = Outcome.REJECTED if event.status is OrderStatus.REJECTED else Outcome.NOT_EXECUTED
                    trader.store.update_signal(order.client_id, outcome, f"broker: {event.status}: {event.message}")
                elif order.filled < order.volume:
                    rest = f"filled {order.filled} of {order.volume}, the rest {event.status}"
                    message = f"{rest}: {event.message}" if event.message else rest
                    trader.store.update_signal(order.client_id, Outcome.PARTIAL, message)
                trader.book.finish(order)
        elif isinstance(event, BrokerError):
            trader.last_error = f"broker error on order {event.order_id}: {event.message}"
            log.error(trader.last_error)
            order = self._match(event.signal_id, event.order_id)
            if order is not None and event.kind == "order":
                if order.filled == 0:
                    trader.store.update_signal(order.client_id, Outcome.REJECTED, f"broker: {event.message}")
                trader.book.finish(order)
        elif isinstance(event, ConnectionChanged):
            trader.broker_status = dataclasses.replace(
                trader.broker_status, connected=event.connected, message=event.message
            )
            log.warning("broker %s: %s", "connected" if event.connected else "disconnected", event.message)
            trader.on_change()

    def _apply_fill(self, fill: Fill) -> None:
        book = self.trader.book
        order = self._match(fill.signal_id, fill.order_id)
        rule_name = fill.rule or (RULE_NAMES[order.rule] if order is not None else "manual")
        rule = int(Rule.of(rule_name))
        code = fill.code
        with book.lock:
            quote = book.quotes.get(code)
            name = quote.name if quote is not None else ""
            result = fill_transition(
                book.positions.get(code),
                book.cash,
                code=code,
                name=name,
                side=fill.side,
                price=fill.price,
                volume=fill.volume,
                rule=book.fill_rule(order, rule),
                time=market.to_shanghai(fill.time),
                fee=fill.commission,
            )
            # the fill completes its tick: the stored progress moves to it with the stored book
            progress = book.progress
            if order is not None and order.progress is not None and (progress is None or order.progress > progress):
                progress = order.progress
            trade = TradeRow(
                fill.trade_id, fill.order_id, fill.time, code, fill.side.value, fill.price, fill.volume, fill.amount,
                fill.commission, rule_name, fill.signal_id, result.realised, result.cash,
            )
            # the dirty holdings go with the fill, so the stored book always matches the stored progress
            changed, closed = book.take_dirty()
            saved = self.trader.store.save_fill(
                trade,
                result.position,
                [p for p in changed if p.code != code],
                [c for c in closed if c != code],
                book.day,
                progress,
                (fill.signal_id, f"filled {fill.volume} at {fill.price:.2f}") if fill.signal_id else None,
            )
            if not saved:
                book.dirty.update([*(p.code for p in changed), *closed])
                log.warning("fill %s was recorded already: ignored", fill.trade_id)
                return
            book.apply(code, result)
            if progress is not None:
                book.mark_progress(*progress)
            if order is not None:
                order.filled += fill.volume
                if fill.side is Side.SELL:
                    book.release(order, volume=fill.volume)
                else:
                    book.release(order, cash=fill.amount + result.fee)
        if order is None:
            log.warning("fill %s of %s matches no pending order: recorded as %s", fill.trade_id, code, rule_name)
        log.info("%s %s %d at %.2f (%s), cash %.2f", fill.side, code, fill.volume, fill.price, rule_name, result.cash)
