"""The trading core of one engine run: what its thread roles share, and the broker sync.

:class:`~miniqmt_lab.engine.Engine` builds one :class:`Trader` per run and runs its roles, each in
its own module:

* monitor (:class:`~miniqmt_lab.engine.monitor.Monitor`): a round of ticks, stocks in ascending
  code order, each completely before the next (docs/contracts.md, parity steps 1-8). A signal
  with an order is handed to the strategy thread with an acknowledgement, and the monitor waits
  until the order's fills are in the book.
* strategy (:class:`~miniqmt_lab.engine.execution.Execution`): guards and validation, reservation,
  submission.
* events (:class:`~miniqmt_lab.engine.broker_events.BrokerEvents`): broker events; a fill is
  committed to SQLite, then shown in the book.
* manual orders (:func:`~miniqmt_lab.engine.manual.manual_order`), on the caller's thread, through
  the same validation and broker path.

The trader holds what they share (book, store, flags, counters, the last error, the broker's
status) and does what belongs to none of them alone: restoring and saving the book, recording bad
input, price limits, and aligning the book with the broker's positions and cash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import math
import queue
import threading
from collections.abc import Callable

from miniqmt_lab import market
from miniqmt_lab.config import Settings
from miniqmt_lab.engine.book import PositionBook
from miniqmt_lab.engine.broker_events import EVENTS_WAIT, BrokerEvents
from miniqmt_lab.engine.entries import EntrySource
from miniqmt_lab.engine.execution import Execution, Task
from miniqmt_lab.engine.guards import RepeatGuard
from miniqmt_lab.engine.monitor import Monitor, MonitorStats
from miniqmt_lab.engine.store import Journal, Store
from miniqmt_lab.engine.threads import CallRunner
from miniqmt_lab.market import fee_params
from miniqmt_lab.protocols import Broker, EngineClock, Feed
from miniqmt_lab.rules.params import rule_params
from miniqmt_lab.schema import BrokerStatus

log = logging.getLogger(__name__)


class Trader:
    """One run's shared state and its roles: ``monitor``, ``execution``, ``broker_events``."""

    def __init__(
        self,
        settings: Settings,
        *,
        broker: Broker,
        feed: Feed,
        clock: EngineClock,
        store: Store,
        entries: EntrySource | None,
        runner: CallRunner,
        on_change: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.feed = feed
        self.clock = clock
        self.store = store
        self.entries = entries
        self.runner = runner
        self.on_change = on_change
        self.params = rule_params(settings.rules)
        self.fees = fee_params(settings.fees)
        e = settings.engine
        self.book = PositionBook(e.simulation_balance, on_change=on_change)
        self.initial_cash = e.simulation_balance
        self.repeat = RepeatGuard(e.signal_repeat_seconds)
        self.quiet = RepeatGuard(e.signal_repeat_seconds)  # spaces out repeated records of no-action and bad data
        self.auto_trading = e.auto_trading
        self.accepting = False
        self.tasks: queue.Queue[Task | None] = queue.Queue()
        self.journal: Journal | None = None
        self.stats = MonitorStats()
        self.last_error = ""
        self.broker_status = BrokerStatus(connected=False, name=getattr(broker, "name", type(broker).__name__))
        self.drained = threading.Event()  # the feed is finished and every round is processed
        self._next_sync: dt.datetime | None = None
        self._saved: tuple[float, dt.date | None, tuple[dt.datetime, str] | None] | None = None
        self.monitor = Monitor(self)
        self.execution = Execution(self)
        self.broker_events = BrokerEvents(self)

    # -- restore and persist -----------------------------------------------------------------------

    def restore(self) -> int:
        """Load the book from SQLite; returns how many signals a previous run left unconfirmed."""
        stored = self.store.load(self.initial_cash)
        self.initial_cash = stored.initial_cash
        with self.book.lock:
            self.book.cash = stored.cash
            self.book.load(stored.positions, stored.day, stored.progress)
        interrupted = self.store.interrupt_unfinished()
        if interrupted:
            log.warning("%d signal(s) were at the broker when the engine last stopped: marked interrupted", interrupted)
        for key, detected in self.store.executed_keys():
            self.repeat.remember(key, detected)
        return interrupted

    def flush(self) -> None:
        """Save what changed in the book (the sync thread's backstop; fills are saved as they come)."""
        with self.book.lock:
            saved = (self.book.cash, self.book.day, self.book.progress)
            if not self.book.dirty and saved == self._saved:
                return
            changed, closed = self.book.take_dirty()
            self.store.save_book(changed, closed, *saved)
            self._saved = saved

    # -- problems and limits -----------------------------------------------------------------------

    def issue(self, kind: str, code: str, message: str) -> None:
        """Log and record bad input; the same problem is recorded at most once per repeat window."""
        self.last_error = message
        now = self.clock.now()
        if self.quiet.recent(f"issue|{kind}|{code}", now):
            return
        self.quiet.remember(f"issue|{kind}|{code}", now)
        log.warning("%s: %s", kind, message)
        self.store.record_issue(now, kind, code, message)
        self.on_change()

    def limits(self, code: str, prev_close: float, name: str) -> tuple[float, float]:
        """The day's (up, down) price limits of ``code``; NaN when ``rules.price_limits`` is off."""
        if not self.settings.rules.price_limits:
            return math.nan, math.nan
        return _limit_prices(code, prev_close, name)

    # -- broker sync (monitor thread) --------------------------------------------------------------

    def sync_broker_if_due(self) -> None:
        now = self.clock.now()
        if self._next_sync is not None and now < self._next_sync:
            return
        self._next_sync = now + dt.timedelta(seconds=self.settings.engine.position_query_interval)
        self.sync_broker()

    def sync_broker(self) -> None:
        """Align the book with the broker's positions and cash; a failing call is logged, not raised."""
        with self.book.lock:
            activity = self.book.activity
        try:
            positions = self.runner.call("broker.positions", self.broker.positions)
            asset = self.runner.call("broker.asset", self.broker.asset)
            status = self.runner.call("broker.status", self.broker.status)
        except Exception as exc:  # the broker being away must not stop monitoring
            self.last_error = f"broker sync failed: {exc}"
            log.warning(self.last_error)
            self.broker_status = dataclasses.replace(self.broker_status, connected=False, message=str(exc))
            self.on_change()
            return
        self.broker_status = status
        changes = self.book.adopt_broker(positions, asset.cash, since=activity)
        if changes:
            for change in changes:
                self.issue("broker_sync", change.split(":", 1)[0], f"book adopted the broker's figures: {change}")
            self.flush()


@functools.lru_cache(maxsize=65536)
def _limit_prices(code: str, prev_close: float, name: str) -> tuple[float, float]:
    # one stock's limits change once a day, but are asked on every tick
    return market.limit_prices(code, prev_close, name)


__all__ = ["EVENTS_WAIT", "Trader"]
