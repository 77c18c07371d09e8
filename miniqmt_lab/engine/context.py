"""What the roles of one engine run share, and nothing of the roles themselves.

The monitor, the execution (strategy thread), the broker events and the manual orders each take a
:class:`RunContext`; none of them imports another role or the :class:`~miniqmt_lab.engine.trading.Trader`
that composes them, so the import graph has no circle. The context holds the book, the store, the
pre-trade check, the flags and counters, and answers the small questions every role asks (price
limits and the bad-tick band of a stock, the fees of a day) the same way for all of them.
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
from miniqmt_lab.engine.entries import EntrySource
from miniqmt_lab.engine.fill_keeper import FillKeeper
from miniqmt_lab.engine.guards import RepeatGuard, Signal
from miniqmt_lab.engine.journal import Journal
from miniqmt_lab.engine.risk import PreTradeCheck, StateChange
from miniqmt_lab.engine.store import Store
from miniqmt_lab.engine.threads import CallRunner
from miniqmt_lab.protocols import Broker, EngineClock, Feed
from miniqmt_lab.rules import FeeParams
from miniqmt_lab.rules.params import rule_params
from miniqmt_lab.schema import BrokerStatus, TradingState

log = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class Task:
    """A signal handed from the monitor to the strategy thread, acknowledged when carried out."""

    signal: Signal
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass
class MonitorStats:
    rounds: int = 0
    ticks: int = 0
    busy_seconds: float = 0.0  # time spent processing rounds, waits for fills included
    signals: int = 0
    bad_ticks: int = 0
    tick_errors: int = 0  # ticks whose processing raised; the round went on with the next stock
    skipped_ticks: int = 0  # already handled before a restart
    unresolved_skips: int = 0  # ticks of a stock with an order of unknown outcome: no rule ran


class RunContext:
    """One engine run's shared state. Broker calls go through ``calls``, feed calls through ``feed_calls``
    (their own workers: a hung quote poll never holds up an order)."""

    def __init__(
        self,
        settings: Settings,
        *,
        broker: Broker,
        feed: Feed,
        clock: EngineClock,
        store: Store,
        entries: EntrySource | None,
        calls: CallRunner,
        feed_calls: CallRunner,
        on_change: Callable[[], None],
    ) -> None:
        e = settings.engine
        self.settings = settings
        self.broker = broker
        self.feed = feed
        self.clock = clock
        self.store = store
        self.entries = entries
        self.calls = calls
        self.feed_calls = feed_calls
        self.on_change = on_change
        self.params = rule_params(settings.rules)
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
        self.fills = FillKeeper(store.path.with_name(store.path.name + ".unsaved-fills.jsonl"))
        self.risk = PreTradeCheck(
            max_orders_per_minute=e.max_orders_per_minute,
            max_order_value=e.max_order_value,
            on_change=self._state_changed,
        )
        self._fees: dict[dt.date | None, FeeParams] = {}

    # -- the small shared questions ----------------------------------------------------------------

    def fees_for(self, day: dt.date | None) -> FeeParams:
        """The kernel's fees of trading day ``day``: stamp duty and transfer fee are dated rates."""
        fees = self._fees.get(day)
        if fees is None:
            fees = self._fees[day] = market.fee_params(self.settings.fees, day)
        return fees

    def today_fees(self) -> FeeParams:
        return self.fees_for(self.clock.now().date())

    def band(self, code: str, base: float, name: str, limits: bool = True) -> tuple[float, float]:
        """The day's limit band (up, down) from its base price: what a tick must stay within to be data.
        NaN when the base is unknown or the stock has no limits today (a new listing)."""
        if not limits:
            return math.nan, math.nan
        return _limit_prices(code, base, name)

    def limits(self, code: str, base: float, name: str, limits: bool = True) -> tuple[float, float]:
        """The band as the rules see it: NaN when ``rules.price_limits`` (realism) is off."""
        return self.as_rules_see(self.band(code, base, name, limits))

    def as_rules_see(self, band: tuple[float, float]) -> tuple[float, float]:
        """``band`` as the rules see it: NaN when ``rules.price_limits`` (realism) is off."""
        return band if self.settings.rules.price_limits else (math.nan, math.nan)

    def store_knows(self, trade_id: str) -> bool:
        """The trade is in the database or already kept for it (a broker repeating a fill)."""
        if any(t.trade_id == trade_id for t in self.fills.pending()):
            return True
        try:
            return self.store.trade_known(trade_id)
        except Exception:  # the database is the problem: the keeper's own ids decide
            return False

    # -- problems -----------------------------------------------------------------------------------

    def issue(self, kind: str, code: str, message: str) -> None:
        """Log and record bad input; the same problem is recorded at most once per repeat window."""
        self.last_error = message
        now = self.clock.now()
        if self.quiet.recent(f"issue|{kind}|{code}", now):
            return
        self.quiet.remember(f"issue|{kind}|{code}", now)
        log.warning("%s: %s", kind, message)
        try:
            self.store.record_issue(now, kind, code, message)
        except Exception as exc:  # recording a problem must not become a second problem
            log.error("could not record %s of %s in the database: %s", kind, code, exc)
        self.on_change()

    def halt(self, reason: str) -> None:
        """The engine stops trading by itself (a lost fill, storage, a broker that stays away)."""
        if self.risk.halt(reason, self.clock.now()):
            self.last_error = f"trading halted: {reason}"

    def _state_changed(self, change: StateChange) -> None:
        try:
            self.store.save_trading_state(change.state.value, change.reason, change.time, change.by)
        except Exception as exc:  # the halt itself holds in memory; the database may be the problem
            log.error("could not store the trading state %s: %s", change.state, exc)
        self.on_change()

    @property
    def trading_state(self) -> TradingState:
        return self.risk.state


@functools.lru_cache(maxsize=65536)
def _limit_prices(code: str, base: float, name: str) -> tuple[float, float]:
    # one stock's limits change once a day, but are asked on every tick
    return market.limit_prices(code, base, name)


__all__ = ["MonitorStats", "RunContext", "Task"]
