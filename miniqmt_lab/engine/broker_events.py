"""The ``events`` thread's work: broker events applied to the book and the records.

Events are matched to the pending order they concern by signal id, else by broker order id (an
order whose submit timed out is found this way and stops being unknown). A fill is committed to
SQLite (with the book's other changes and the progress it completes), then shown in the book; when
the database will not take it even after retries, the fill is kept (memory and a side file, see
:mod:`miniqmt_lab.engine.fill_keeper`), shown in the book all the same, and trading halts until it
is written. A final order status or an order error releases what the order reserved.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import queue
import time

from miniqmt_lab import market
from miniqmt_lab.engine.book import FillResult, PendingOrder, Position, fill_transition
from miniqmt_lab.engine.context import RunContext
from miniqmt_lab.engine.store import StorageError, TradeRow
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

log = logging.getLogger(__name__)

EVENTS_WAIT = 0.5  # seconds the events thread blocks on the broker queue per turn
FILL_WRITE_ATTEMPTS = 3  # each waits up to the database's busy timeout


class BrokerEvents:
    """Applies the events of the run's broker to its book and records."""

    def __init__(self, ctx: RunContext, *, retry_pause: float = 0.5) -> None:
        self.ctx = ctx
        self.retry_pause = retry_pause

    def step(self) -> float:
        self.store_kept_fills()
        try:
            event = self.ctx.broker.events.get(timeout=EVENTS_WAIT)
        except queue.Empty:
            return 0.0
        self.apply(event)
        return 0.0

    def drain(self) -> None:
        while True:
            try:
                event = self.ctx.broker.events.get_nowait()
            except queue.Empty:
                return
            self.apply(event)

    def _match(self, signal_id_: str, order_id: str) -> PendingOrder | None:
        book = self.ctx.book
        with book.lock:
            order = book.pending.get(signal_id_) if signal_id_ else None
            if order is None and order_id:
                order = next((o for o in book.pending.values() if o.order_id == order_id), None)
            if order is not None and order.unknown:
                order.unknown = False  # the broker has it: events settle it from here
                log.warning("order %s of unknown outcome is at the broker as %s", order.client_id, order_id)
            return order

    def apply(self, event: BrokerEvent) -> None:
        ctx = self.ctx
        if isinstance(event, Fill):
            self.apply_fill(event)
        elif isinstance(event, OrderUpdate):
            order = self._match(event.signal_id, event.order_id)
            if order is None:
                return
            order.order_id = order.order_id or event.order_id
            order.status = event.status
            if event.status.final:
                self.finish(order, event.status, event.message)
        elif isinstance(event, BrokerError):
            ctx.last_error = f"broker error on order {event.order_id}: {event.message}"
            log.error(ctx.last_error)
            order = self._match(event.signal_id, event.order_id)
            if order is not None and event.kind == "order":
                if order.filled == 0:
                    ctx.store.update_signal(order.client_id, Outcome.REJECTED, f"broker: {event.message}")
                ctx.book.finish(order)
        elif isinstance(event, ConnectionChanged):
            ctx.broker_status = dataclasses.replace(
                ctx.broker_status, connected=event.connected, message=event.message
            )
            log.warning("broker %s: %s", "connected" if event.connected else "disconnected", event.message)
            ctx.on_change()

    def finish(self, order: PendingOrder, status: OrderStatus, message: str) -> None:
        """An order reached a final status: record how it ended and release what it still reserves."""
        store = self.ctx.store
        if order.filled == 0 and status is not OrderStatus.FILLED:
            outcome = Outcome.REJECTED if status is OrderStatus.REJECTED else Outcome.NOT_EXECUTED
            store.update_signal(order.client_id, outcome, f"broker: {status}: {message}" if message else
                                f"broker: {status}")
        elif 0 < order.filled < order.volume:
            rest = f"filled {order.filled} of {order.volume}, the rest {status}"
            store.update_signal(order.client_id, Outcome.PARTIAL, f"{rest}: {message}" if message else rest)
        self.ctx.book.finish(order)

    def apply_fill(self, fill: Fill) -> None:
        ctx = self.ctx
        book = ctx.book
        if ctx.fills:
            self.store_kept_fills()  # fills reach the database in the order they came, or not at all
        order = self._match(fill.signal_id, fill.order_id)
        rule_name = fill.rule or (RULE_NAMES[order.rule] if order is not None else "manual")
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
                rule=book.fill_rule(order, int(Rule.of(rule_name))),
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
            if ctx.fills:
                # earlier fills still wait for the database: this one waits behind them, so the stored book
                # always matches the stored trades (a restart then applies the kept ones in order)
                saved = not ctx.store_knows(fill.trade_id)
                if saved:
                    book.dirty.add(code)
                    ctx.fills.keep(trade)
            else:
                # the dirty holdings go with the fill, so the stored book always matches the stored progress
                changed, closed = book.take_dirty()
                try:
                    saved = self._save_fill(trade, result, changed, closed, progress, book.day)
                except StorageError as exc:
                    saved = True  # the fill happened: the book shows it, the keeper holds it for the database
                    book.dirty.update([*(p.code for p in changed), *closed, code])
                    ctx.fills.keep(trade)
                    ctx.halt(f"fill {fill.trade_id} of {code} could not be stored ({exc}); it is kept in"
                             f" {ctx.fills.path} and written when the database takes writes again")
                if not saved:
                    book.dirty.update([*(p.code for p in changed), *closed])
            if not saved:
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

    def _save_fill(
        self,
        trade: TradeRow,
        result: FillResult,
        changed: list[Position],
        closed: list[str],
        progress: tuple[dt.datetime, str] | None,
        day: dt.date | None,
    ) -> bool:
        """Write the fill, retrying a locked or failing database a few times before giving up."""
        store = self.ctx.store
        others = [p for p in changed if p.code != trade.code]
        others_closed = [c for c in closed if c != trade.code]
        for attempt in range(1, FILL_WRITE_ATTEMPTS + 1):
            try:
                return store.save_fill(trade, result.position, others, others_closed, day, progress)
            except StorageError:
                if attempt == FILL_WRITE_ATTEMPTS:
                    raise
                log.warning("storing fill %s failed (attempt %d of %d); retrying", trade.trade_id, attempt,
                            FILL_WRITE_ATTEMPTS)
                time.sleep(self.retry_pause * attempt)
        return False  # pragma: no cover - the loop returns or raises

    def store_kept_fills(self) -> None:
        """Write fills the database refused earlier, once it takes writes again (the book has them)."""
        ctx = self.ctx
        kept = ctx.fills.pending()
        if not kept:
            return
        book = ctx.book
        try:
            with book.lock:
                changed, closed = book.take_dirty()
                ctx.store.save_kept(kept, changed, closed, book.cash, book.day, book.progress)
            for trade in kept:
                ctx.fills.stored(trade.trade_id)
        except StorageError as exc:
            log.warning("%d kept fill(s) still wait for the database: %s", len(ctx.fills), exc)
            return
        log.warning("%d kept fill(s) written to %s; trading stays halted until switched back", len(kept),
                    ctx.store.path)
        ctx.on_change()
