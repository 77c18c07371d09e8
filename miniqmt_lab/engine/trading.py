"""The trading core of one engine run: its shared context, its roles, and the broker sync.

:class:`~miniqmt_lab.engine.Engine` builds one :class:`Trader` per run and runs its roles, each in
its own module and each taking only the run's :class:`~miniqmt_lab.engine.context.RunContext`:

* monitor (:class:`~miniqmt_lab.engine.monitor.Monitor`): a round of ticks, stocks in ascending
  code order, each completely before the next (docs/contracts.md, parity steps 1-8);
* strategy (:class:`~miniqmt_lab.engine.execution.Execution`): guards, the pre-trade check,
  reservation, submission; every order's one path to the broker;
* events (:class:`~miniqmt_lab.engine.broker_events.BrokerEvents`): broker events; a fill is
  committed to SQLite, then shown in the book;
* manual orders (:func:`~miniqmt_lab.engine.manual.manual_order`), on the caller's thread.

The trader does what belongs to none of them alone: restoring and saving the book, aligning it with
the broker's positions and cash, settling orders of unknown outcome from the broker's order list,
and halting trading when the broker stays away.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time

from miniqmt_lab import market
from miniqmt_lab.engine.book import PendingOrder, PositionBook
from miniqmt_lab.engine.broker_events import EVENTS_WAIT, BrokerEvents
from miniqmt_lab.engine.context import MonitorStats, RunContext
from miniqmt_lab.engine.execution import Execution
from miniqmt_lab.engine.fill_keeper import as_fill
from miniqmt_lab.engine.monitor import Monitor
from miniqmt_lab.schema import BrokerOrder, OrderStatus, Outcome, TradingState

log = logging.getLogger(__name__)

UNKNOWN_LOOKUPS = 3  # order lists without an unknown order before it counts as never received


class Trader:
    """One run's context and roles: ``ctx``, ``monitor``, ``execution``, ``broker_events``."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        ctx.store.on_failure = self._storage_failed
        self.monitor = Monitor(self.ctx, before_round=self.sync_broker_if_due)
        self.execution = Execution(self.ctx)
        self.broker_events = BrokerEvents(self.ctx)
        self._next_sync: float | None = None
        self._away_since: float | None = None
        self._saved: tuple[float, dt.date | None, tuple[dt.datetime, str] | None] | None = None

    # the shared state, under the names the engine and the tests know
    @property
    def book(self) -> PositionBook:
        return self.ctx.book

    @property
    def stats(self) -> MonitorStats:
        return self.ctx.stats

    @property
    def initial_cash(self) -> float:
        return self.ctx.initial_cash

    @property
    def accepting(self) -> bool:
        return self.ctx.accepting

    # -- restore and persist -----------------------------------------------------------------------

    def restore(self) -> None:
        """Load the book, last prices and trading state from SQLite (reads only: safe on a database
        another engine runs on; :meth:`settle_previous_run` does the writes once the lock is held)."""
        ctx = self.ctx
        stored = ctx.store.load(ctx.initial_cash)
        ctx.initial_cash = stored.initial_cash
        with ctx.book.lock:
            ctx.book.cash = stored.cash
            ctx.book.load(stored.positions, stored.day, stored.progress, stored.quotes)
        ctx.risk.restore(stored.trading_state, stored.state_reason)
        for key, detected in ctx.store.executed_keys():
            ctx.repeat.remember(key, detected)

    def settle_previous_run(self) -> int:
        """At start, under the database lock: write fills a previous run kept in its side file, and
        settle the signals it left open; returns how many were at the broker (now ``interrupted``)."""
        ctx = self.ctx
        for trade in ctx.fills.load():
            if ctx.store.trade_known(trade.trade_id):
                ctx.fills.stored(trade.trade_id)
                continue
            log.warning("fill %s was kept in %s by an earlier run: writing it now", trade.trade_id, ctx.fills.path)
            ctx.fills.stored(trade.trade_id)
            self.broker_events.apply_fill(as_fill(trade))
        interrupted = ctx.store.interrupt_unfinished()
        if interrupted:
            log.warning("%d signal(s) were at the broker when the engine last stopped: marked interrupted", interrupted)
        return interrupted

    def flush(self) -> None:
        """Save what changed in the book and the last prices (the sync thread's backstop; fills are
        saved as they come)."""
        ctx = self.ctx
        book = ctx.book
        with book.lock:
            # asked under the book's lock, where a fill is kept: a book that shows fills the database has
            # not is saved only with them (store_kept_fills)
            if ctx.fills:
                return
            quotes = book.take_dirty_quotes()
            saved = (book.cash, book.day, book.progress)
            if book.dirty or saved != self._saved:
                changed, closed = book.take_dirty()
                try:
                    ctx.store.save_book(changed, closed, *saved)
                except Exception:
                    book.dirty.update([*(p.code for p in changed), *closed])
                    book.dirty_quotes.update(code for code, _ in quotes)
                    raise
                self._saved = saved
        try:
            ctx.store.save_quotes(quotes)
        except Exception:
            with book.lock:
                book.dirty_quotes.update(code for code, _ in quotes)
            raise

    # -- broker sync (monitor thread) --------------------------------------------------------------

    def sync_broker_if_due(self) -> None:
        # real seconds: the broker is asked every ``position_query_interval``, whether a replay clock runs
        # ahead or stands still
        now = time.monotonic()
        if self._next_sync is not None and now < self._next_sync:
            return
        self._next_sync = now + self.ctx.settings.engine.position_query_interval
        self.sync_broker()

    def sync_broker(self) -> None:
        """Align the book with the broker's positions and cash, settle unknown orders, and halt when the
        broker stays away; a failing call is logged, not raised."""
        ctx = self.ctx
        today = ctx.clock.now().date()
        if ctx.book.day is not None and market.CALENDAR.is_trading_day(today):
            ctx.book.roll_day(today)  # T+1 as the broker counts it, before the first tick of the day
        with ctx.book.lock:
            activity = ctx.book.activity
        unknown = self._unknown_orders()
        try:
            positions = ctx.calls.call("broker.positions", ctx.broker.positions)
            asset = ctx.calls.call("broker.asset", ctx.broker.asset)
            status = ctx.calls.call("broker.status", ctx.broker.status)
            orders = ctx.calls.call("broker.orders", ctx.broker.orders) if unknown else []
        except Exception as exc:  # the broker being away must not stop monitoring
            ctx.last_error = f"broker sync failed: {exc}"
            log.warning(ctx.last_error)
            ctx.broker_status = dataclasses.replace(ctx.broker_status, connected=False, message=str(exc))
            self._broker_away(str(exc))
            ctx.on_change()
            return
        ctx.broker_status = status
        if status.connected:
            self._away_since = None
        else:
            self._broker_away(status.message or "disconnected")
        if unknown:
            self._settle_unknown(unknown, orders)
        if ctx.fills:
            return  # the book holds fills the database has not: the broker's figures must not overwrite it
        changes = ctx.book.adopt_broker(positions, asset.cash, since=activity)
        if changes:
            for change in changes:
                ctx.issue("broker_sync", change.split(":", 1)[0], f"book adopted the broker's figures: {change}")
            self.flush()

    def _broker_away(self, why: str) -> None:
        ctx = self.ctx
        now = time.monotonic()  # real seconds: a replay clock stands still while the broker is away
        if self._away_since is None:
            self._away_since = now
            return
        away = now - self._away_since
        limit = ctx.settings.engine.broker_away_halt_seconds
        if away >= limit and ctx.risk.state is not TradingState.HALTED:
            ctx.halt(f"the broker has been away for {away:.0f} s (broker_away_halt_seconds {limit:g}): {why}")

    def _unknown_orders(self) -> list[PendingOrder]:
        book = self.ctx.book
        with book.lock:
            return [o for o in book.pending.values() if o.unknown]

    def _settle_unknown(self, unknown: list[PendingOrder], orders: list[BrokerOrder]) -> None:
        """Find orders whose submit timed out in the broker's order list, by the signal id they carry."""
        ctx = self.ctx
        by_signal = {o.signal_id: o for o in orders if o.signal_id}
        for order in unknown:
            found = by_signal.get(order.client_id) or _prefix_match(by_signal, order.client_id)
            if found is not None:
                with ctx.book.lock:
                    order.unknown = False
                    order.order_id = order.order_id or found.order_id
                    order.status = found.status
                ctx.store.set_order_id(order.client_id, found.order_id)
                ctx.store.update_signal(order.client_id, Outcome.SUBMITTED,
                                        f"found at the broker as order {found.order_id} ({found.status})")
                log.warning("order %s of unknown outcome found at the broker: %s, %s", order.client_id,
                            found.order_id, found.status)
                if found.status.final and found.filled_volume == 0:
                    self.broker_events.finish(order, found.status, "found in the broker's order list")
                continue
            order.lookups += 1
            if order.lookups >= UNKNOWN_LOOKUPS:
                log.warning("order %s is in none of %d broker order lists: the broker never received it",
                            order.client_id, order.lookups)
                self.broker_events.finish(order, OrderStatus.CANCELLED,
                                          f"the broker never received it ({order.lookups} order lists checked)")
        ctx.on_change()

    # -- storage ------------------------------------------------------------------------------------

    def _storage_failed(self, why: str) -> None:
        self.ctx.halt(f"storage failure: {why}")


def _prefix_match(by_signal: dict[str, BrokerOrder], client_id: str) -> BrokerOrder | None:
    # a broker may cut the remark that carries the signal id (QMT keeps 24 characters)
    matches = [o for sid, o in by_signal.items() if len(sid) >= 8 and client_id.startswith(sid)]
    return matches[0] if len(matches) == 1 else None


__all__ = ["EVENTS_WAIT", "Trader"]
