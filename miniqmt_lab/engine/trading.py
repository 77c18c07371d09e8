"""The engine's business logic, one method per thread role; :class:`~miniqmt_lab.engine.Engine` runs them.

* monitor: a round of ticks, stocks in ascending code order, each completely before the next
  (docs/contracts.md, parity steps 1-8). A signal with an order is handed to the strategy thread
  with an acknowledgement, and the monitor waits until the order's fills are in the book.
* strategy: guards and validation, reservation, submission.
* events: broker events; a fill is committed to SQLite, then shown in the book.
* manual orders, on the caller's thread, through the same validation and broker path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable

from miniqmt_lab import market
from miniqmt_lab.config import Settings
from miniqmt_lab.engine.book import PendingOrder, PositionBook, fill_transition
from miniqmt_lab.engine.clock import EngineClock
from miniqmt_lab.engine.entries import EntrySource
from miniqmt_lab.engine.guards import (
    FINAL_FOR_EXECUTION,
    Outcome,
    RepeatGuard,
    Signal,
    is_stale,
    repeat_key,
    signal_id,
    tick_problem,
)
from miniqmt_lab.engine.interfaces import (
    Broker,
    BrokerError,
    BrokerEvent,
    BrokerStatus,
    ConnectionChanged,
    Feed,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Side,
    Tick,
    TickRound,
)
from miniqmt_lab.engine.store import Journal, SignalRow, Store, TradeRow, local_text
from miniqmt_lab.engine.threads import CallRunner
from miniqmt_lab.errors import (
    BrokerTimeout,
    EngineNotRunning,
    InsufficientPosition,
    InvalidPrice,
    InvalidVolume,
    OrderRejected,
    OutsideTradingTime,
    PriceLimitBreached,
)
from miniqmt_lab.rules import (
    LOT,
    OUT_MAX_POSITION,
    OUT_NO_CASH,
    OUT_NOTHING_AVAILABLE,
    OUT_PRICE_LIMIT,
    OUT_ZERO_LOT,
    OUTCOME_NAMES,
    RULE_CODES,
    RULE_MANUAL,
    RULE_NAMES,
    RULE_NONE,
    decide_entry_nb,
    decide_nb,
    fee_params,
    rule_params,
)

log = logging.getLogger(__name__)

END_OF_ROUND = "\uffff"  # progress code meaning "every tick of the round is done"
EVENTS_WAIT = 0.5  # seconds the events thread blocks on the broker queue per turn


@dataclasses.dataclass(eq=False)
class Task:
    signal: Signal
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass
class MonitorStats:
    rounds: int = 0
    ticks: int = 0
    busy_seconds: float = 0.0  # time spent processing rounds, waits for fills included
    signals: int = 0
    bad_ticks: int = 0
    skipped_ticks: int = 0  # already handled before a restart


class Trader:
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
        self._on_change = on_change
        self.params = rule_params(settings.rules)
        self.fees = fee_params(settings.fees)
        e = settings.engine
        self.book = PositionBook(e.simulation_balance, on_change=on_change)
        self.initial_cash = e.simulation_balance
        self.repeat = RepeatGuard(e.signal_repeat_seconds)
        self._quiet = RepeatGuard(e.signal_repeat_seconds)  # spaces out repeated records of no-action and bad data
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
        self._ack_timeout = 2 * e.call_timeout + 1.0

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

    # -- problems ----------------------------------------------------------------------------------

    def issue(self, kind: str, code: str, message: str) -> None:
        """Log and record bad input; the same problem is recorded at most once per repeat window."""
        self.last_error = message
        now = self.clock.now()
        if self._quiet.recent(f"issue|{kind}|{code}", now):
            return
        self._quiet.remember(f"issue|{kind}|{code}", now)
        log.warning("%s: %s", kind, message)
        self.store.record_issue(now, kind, code, message)
        self._on_change()

    # -- monitor -----------------------------------------------------------------------------------

    def monitor_step(self) -> float:
        interval = self.settings.engine.monitor_interval
        self.sync_broker_if_due()
        wait = self.clock.seconds_to_next_session()
        if wait > 0:
            return min(wait, self.settings.engine.idle_sleep)
        rnd = self.runner.call(
            "feed.next_round", self.feed.next_round, interval, timeout=interval + self.settings.engine.call_timeout
        )
        if rnd is None:
            if self.feed.finished():
                self.drained.set()
            return interval
        self.drained.clear()
        processed = self.process_round(rnd)
        if self.feed.finished():
            self.drained.set()
        return interval if processed else 0.0  # rounds handled before a restart are skipped without a pause

    def process_round(self, rnd: TickRound) -> bool:
        """Parity steps 2-8 on one round; False when the round was handled before a restart.

        A tick is marked handled (``book.progress``) once its decision is carried out. When the engine
        stops mid-round, the round ends at the tick in hand, unmarked: its order may have been refused
        as the engine was stopping, so a restart evaluates it and the rest of the round again.
        """
        started = time.perf_counter()
        with self.book.lock:
            progress = self.book.progress
        if progress is not None and (rnd.time, END_OF_ROUND) <= progress:
            # the round in progress at the last stop comes again when a replay resumes: expected
            if rnd.time < progress[0] and not self.stats.skipped_ticks:
                log.warning(
                    "rounds up to %s were handled before (database %s): skipping them; use another database"
                    " to replay an earlier period", progress[0], self.store.path,
                )
            self.stats.skipped_ticks += len(rnd.ticks)
            return False
        self.book.roll_day(market.to_shanghai(rnd.time).date())
        journal_rows = []
        texts: dict[dt.datetime, str] = {}  # the ticks of a round share one or two times
        for tick in sorted(rnd.ticks, key=lambda t: t.code):
            if progress is not None and (rnd.time, tick.code) <= progress:
                self.stats.skipped_ticks += 1
            else:
                self.process_tick(tick, rnd.time)
                if not self.accepting:
                    break
                self.book.mark_progress(rnd.time, tick.code)
            journal_rows.append(_journal_row(tick, texts))
        else:
            self.book.mark_progress(rnd.time, END_OF_ROUND)
            self.stats.rounds += 1
        if self.journal is not None:
            self.journal.append(journal_rows)
        self.stats.ticks += len(journal_rows)
        self.stats.busy_seconds += time.perf_counter() - started
        return True

    def process_tick(self, tick: Tick, round_time: dt.datetime) -> None:
        problem = tick_problem(tick)
        if problem is not None:
            self.stats.bad_ticks += 1
            self.issue("bad_tick", str(tick.code), f"tick ignored at {tick.time}: {problem}")
            return
        signal, outcome = self.decide(tick, round_time)
        if signal is None:
            return
        self.stats.signals += 1
        if signal.volume == 0:
            self._record_no_action(signal, outcome)
        elif not self.auto_trading:
            self._record(signal, Outcome.NOT_EXECUTED, "auto trading is off")
        else:
            self._hand_over(signal)

    def decide(self, tick: Tick, round_time: dt.datetime) -> tuple[Signal | None, int]:
        """The kernel's decision on one tick (parity step 3), or (None, 0) when no rule fires."""
        code, p = tick.code, float(tick.price)
        up, down = self._limits(code, tick.prev_close, tick.name)
        min_buy = _min_buy_volume(code)
        with self.book.lock:
            state = self.book.observe(code, p, tick.prev_close, tick.name, tick.time)
            # reserved cash and shares belong to orders in flight: the rules see only what is free
            cash = self.book.free_cash()
            if state.volume > 0:
                reserved = self.book.reserved_volume.get(code, 0)
                free = state._replace(available=max(0, state.available - reserved)) if reserved else state
                rule, volume, outcome = decide_nb(free, p, cash, min_buy, up, down, self.params, self.fees)
                opened = self.book.positions[code].opened_at
            elif tick.bar_close and self.entries is not None and self.entries.is_entry(code, tick.trade_time, p):
                rule, volume, outcome = decide_entry_nb(state, p, cash, min_buy, up, self.params, self.fees)
                opened = ""
            else:
                return None, 0
        if rule == RULE_NONE:
            return None, 0
        signal = Signal(
            id=signal_id(round_time, code, rule),
            code=code,
            rule=int(rule),
            price=p,
            volume=int(volume),
            detected_at=self.clock.now(),
            stamp=tick.trade_time,
            tick_time=round_time,
            key=repeat_key(code, int(rule), state, opened),
        )
        return signal, int(outcome)

    def _limits(self, code: str, prev_close: float, name: str) -> tuple[float, float]:
        if not self.settings.rules.price_limits:
            return math.nan, math.nan
        return _limit_prices(code, prev_close, name)

    def _record(self, signal: Signal, outcome: Outcome, message: str) -> None:
        self.store.insert_signal(
            SignalRow(
                signal.id, signal.detected_at, signal.stamp, signal.code, signal.rule_name, signal.side.value,
                signal.price, signal.volume, outcome.value, message, signal.key,
            )
        )
        self._on_change()

    def _record_no_action(self, signal: Signal, outcome: int) -> None:
        # a blocked rule fires again on every tick live; one record per holding state and window is enough
        quiet_key = f"{signal.key}|{outcome}"
        if self._quiet.recent(quiet_key, signal.detected_at):
            return
        self._quiet.remember(quiet_key, signal.detected_at)
        self._record(signal, Outcome(OUTCOME_NAMES[outcome]), _NO_ACTION_MESSAGES[outcome])

    def _hand_over(self, signal: Signal) -> None:
        previous = self.store.signal_outcome(signal.id)
        if previous in FINAL_FOR_EXECUTION:
            log.info("signal %s was %s before a restart: not executed again", signal.id, previous)
            return
        if not self.accepting:
            self._record(signal, Outcome.NOT_EXECUTED, "the engine is stopping")
            return
        if previous is None:
            self._record(signal, Outcome.PENDING, "")
        task = Task(signal)
        self.tasks.put(task)
        if not task.done.wait(self._ack_timeout):
            log.error("signal %s: no acknowledgement within %.1f s; going on", signal.id, self._ack_timeout)

    # -- strategy ----------------------------------------------------------------------------------

    def strategy_step(self) -> float:
        try:
            task = self.tasks.get(timeout=self.settings.engine.strategy_interval)
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
        now = self.clock.now()
        if not self.accepting:
            self.store.update_signal(signal.id, Outcome.NOT_EXECUTED, "the engine is stopping")
            return
        if is_stale(signal.detected_at, now, self.settings.engine.signal_stale_seconds):
            age = (now - signal.detected_at).total_seconds()
            log.warning("signal %s is %.0f s old: dropped as stale", signal.id, age)
            self.store.update_signal(signal.id, Outcome.STALE, f"{age:.0f} s between detection and execution")
            return
        if self.repeat.recent(signal.key, now):
            log.warning("signal %s repeats %s within %g s: refused", signal.id, signal.key, self.repeat.window)
            self.store.update_signal(signal.id, Outcome.DUPLICATE, "same stock, rule and holding state ran recently")
            return
        order = PendingOrder(signal.id, signal.code, signal.side, signal.volume, signal.price, signal.rule,
                             progress=(signal.tick_time, signal.code))
        try:
            if not self.clock.is_trading_time():
                raise OutsideTradingTime(f"{now:%Y-%m-%d %H:%M:%S} is outside trading time")
            self.book.reserve(order, self.fees)
        except OrderRejected as exc:
            log.warning("signal %s refused: %s", signal.id, exc)
            self.store.update_signal(signal.id, Outcome.REJECTED, f"{exc.reason}: {exc}")
            return
        self.repeat.remember(signal.key, now)
        # marked before the broker sees it: after a crash the signal is never sent a second time
        self.store.update_signal(signal.id, Outcome.SUBMITTED, "")
        try:
            self._submit(order, signal.stamp)
        except (OrderRejected, BrokerTimeout):
            return
        order.done.wait(self.settings.engine.call_timeout)

    def _submit(self, order: PendingOrder, stamp: dt.datetime) -> str:
        """Send a reserved order; on refusal or timeout release it, record why and raise
        (``OrderRejected`` or ``BrokerTimeout``)."""
        request = OrderRequest(
            order.code, order.side, order.volume, order.price, RULE_NAMES[order.rule], order.client_id, stamp
        )
        try:
            order_id = self.runner.call("broker.submit", self.broker.submit, request)
        except BrokerTimeout as exc:
            # the order may still reach the broker: its fill is then recorded when it arrives
            self.book.finish(order)
            self.store.update_signal(order.client_id, Outcome.TIMEOUT, str(exc))
            self.last_error = str(exc)
            raise
        except OrderRejected as exc:
            self.book.finish(order)
            self.store.update_signal(order.client_id, Outcome.REJECTED, f"broker: {exc.reason}: {exc}")
            raise
        except Exception as exc:  # a broker failure refuses this order only
            self.book.finish(order)
            self.last_error = f"broker.submit failed: {exc}"
            log.exception("broker.submit failed for %s", order.client_id)
            self.store.update_signal(order.client_id, Outcome.REJECTED, f"broker error: {exc}")
            raise OrderRejected(f"broker error: {exc}") from exc
        order.order_id = order_id
        self.store.set_order_id(order.client_id, order_id)
        return order_id

    # -- broker events -----------------------------------------------------------------------------

    def events_step(self) -> float:
        try:
            event = self.broker.events.get(timeout=EVENTS_WAIT)
        except queue.Empty:
            return 0.0
        self.apply_event(event)
        return 0.0

    def drain_events(self) -> None:
        while True:
            try:
                event = self.broker.events.get_nowait()
            except queue.Empty:
                return
            self.apply_event(event)

    def _match(self, signal_id_: str, order_id: str) -> PendingOrder | None:
        with self.book.lock:
            order = self.book.pending.get(signal_id_) if signal_id_ else None
            if order is None and order_id:
                order = next((o for o in self.book.pending.values() if o.order_id == order_id), None)
            return order

    def apply_event(self, event: BrokerEvent) -> None:
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
                    self.store.update_signal(order.client_id, outcome, f"broker: {event.status}: {event.message}")
                self.book.finish(order)
        elif isinstance(event, BrokerError):
            self.last_error = f"broker error on order {event.order_id}: {event.message}"
            log.error(self.last_error)
            order = self._match(event.signal_id, event.order_id)
            if order is not None and event.kind == "order":
                if order.filled == 0:
                    self.store.update_signal(order.client_id, Outcome.REJECTED, f"broker: {event.message}")
                self.book.finish(order)
        elif isinstance(event, ConnectionChanged):
            self.broker_status = dataclasses.replace(
                self.broker_status, connected=event.connected, message=event.message
            )
            log.warning("broker %s: %s", "connected" if event.connected else "disconnected", event.message)
            self._on_change()

    def _apply_fill(self, fill: Fill) -> None:
        order = self._match(fill.signal_id, fill.order_id)
        rule_name = fill.rule or (RULE_NAMES[order.rule] if order is not None else "manual")
        rule = RULE_CODES.get(rule_name, RULE_MANUAL)
        code = fill.code
        with self.book.lock:
            quote = self.book.quotes.get(code)
            name = quote.name if quote is not None else ""
            result = fill_transition(
                self.book.positions.get(code),
                self.book.cash,
                code=code,
                name=name,
                side=fill.side,
                price=fill.price,
                volume=fill.volume,
                rule=self.book.fill_rule(order, rule),
                time=market.to_shanghai(fill.time),
                fees=self.fees,
            )
            # the fill completes its tick: the stored progress moves to it with the stored book
            progress = self.book.progress
            if order is not None and order.progress is not None and (progress is None or order.progress > progress):
                progress = order.progress
            trade = TradeRow(
                fill.trade_id, fill.order_id, fill.time, code, fill.side.value, fill.price, fill.volume, fill.amount,
                fill.commission, rule_name, fill.signal_id, result.realised, result.cash,
            )
            # the dirty holdings go with the fill, so the stored book always matches the stored progress
            changed, closed = self.book.take_dirty()
            saved = self.store.save_fill(
                trade,
                result.position,
                [p for p in changed if p.code != code],
                [c for c in closed if c != code],
                self.book.day,
                progress,
                (fill.signal_id, f"filled {fill.volume} at {fill.price:.2f}") if fill.signal_id else None,
            )
            if not saved:
                self.book.dirty.update([*(p.code for p in changed), *closed])
                log.warning("fill %s was recorded already: ignored", fill.trade_id)
                return
            self.book.apply(code, result)
            if progress is not None:
                self.book.mark_progress(*progress)
            if order is not None:
                order.filled += fill.volume
                if fill.side is Side.SELL:
                    self.book.release(order, volume=fill.volume)
                else:
                    self.book.release(order, cash=fill.amount + result.fee)
        if order is None:
            log.warning("fill %s of %s matches no pending order: recorded as %s", fill.trade_id, code, rule_name)
        log.info("%s %s %d at %.2f (%s), cash %.2f", fill.side, code, fill.volume, fill.price, rule_name, result.cash)

    # -- broker sync -------------------------------------------------------------------------------

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
            self._on_change()
            return
        self.broker_status = status
        changes = self.book.adopt_broker(positions, asset.cash, since=activity)
        if changes:
            for change in changes:
                self.issue("broker_sync", change.split(":", 1)[0], f"book adopted the broker's figures: {change}")
            self.flush()

    # -- manual orders -----------------------------------------------------------------------------

    def manual_order(
        self, side: Side, code: object, volume: object, amount: object, price: object
    ) -> str:
        if not self.accepting:
            raise EngineNotRunning("the engine is not running: start it before placing orders")
        norm = market.normalize_code(code)
        with self.book.lock:
            quote = self.book.quotes.get(norm)
            state = self.book.state(norm)
        if price is not None:
            px = market.check_price(price)
        elif quote is not None:
            px = quote.price
        else:
            raise InvalidPrice(f"no price of {norm} is known yet (the feed has not sent one): pass price=")
        if side is Side.BUY:
            shares = _buy_volume(norm, volume, amount, px)
        else:
            if state.volume <= 0:
                raise InsufficientPosition(f"no holding of {norm} to sell")
            shares = market.check_sell_volume(volume, state.volume, state.available)
        now = self.clock.now()
        if not self.clock.is_trading_time():
            raise OutsideTradingTime(f"{now:%Y-%m-%d %H:%M} is outside trading time (09:30-11:30, 13:00-15:00)")
        if quote is not None:
            up, down = self._limits(norm, quote.prev_close, quote.name)
            if side is Side.BUY and px >= up - 1e-9:
                raise PriceLimitBreached(f"buy {norm} at {px:.2f}: at or above the up-limit {up:.2f}")
            if side is Side.SELL and px <= down + 1e-9:
                raise PriceLimitBreached(f"sell {norm} at {px:.2f}: at or below the down-limit {down:.2f}")
        client_id = f"manual-{uuid.uuid4().hex[:12]}"
        order = PendingOrder(client_id, norm, side, shares, px, RULE_MANUAL)
        self.book.reserve(order, self.fees)
        self.store.insert_signal(
            SignalRow(client_id, now, now, norm, "manual", side.value, px, shares, Outcome.SUBMITTED.value,
                      "manual order", f"{norm}|manual|{client_id}")
        )
        self._on_change()
        order_id = self._submit(order, now)
        order.done.wait(self.settings.engine.call_timeout)
        return order_id

    def stop_tasks(self) -> None:
        """Acknowledge every queued signal as not executed (the engine is stopping)."""
        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                self.store.update_signal(task.signal.id, Outcome.NOT_EXECUTED, "the engine stopped")
                task.done.set()


_min_buy_volume = functools.lru_cache(maxsize=65536)(market.min_buy_volume)


@functools.lru_cache(maxsize=65536)
def _limit_prices(code: str, prev_close: float, name: str) -> tuple[float, float]:
    # one stock's limits change once a day, but are asked on every tick
    return market.limit_prices(code, prev_close, name)


def _buy_volume(code: str, volume: object, amount: object, price: float) -> int:
    if volume is None:
        if amount is None:
            raise InvalidVolume(f"buy {code}: give a volume (shares) or an amount (yuan)")
        money = market.check_price(amount, what="amount")
        volume = int(math.floor(money / price / LOT)) * LOT
        if volume <= 0:
            raise InvalidVolume(f"buy {code}: {money:,.2f} yuan does not buy one lot at {price:.2f}")
    return market.check_buy_volume(code, volume)


def _journal_price(value: float) -> float | None:
    return float(value) if isinstance(value, float | int) and math.isfinite(value) else None


def _journal_row(tick: Tick, texts: dict[dt.datetime, str]) -> tuple[str, str, str, float | None, int, float | None]:
    """The journal's record of ``tick``; ``texts`` caches the stored text of the round's times."""
    for moment in (tick.time, tick.trade_time):
        if moment not in texts:
            texts[moment] = local_text(moment)
    return (texts[tick.time], texts[tick.trade_time], str(tick.code), _journal_price(tick.price),
            int(tick.bar_close), _journal_price(tick.prev_close))


_NO_ACTION_MESSAGES = {
    OUT_NOTHING_AVAILABLE: "no share may be sold now (T+1 or reserved by an order)",
    OUT_PRICE_LIMIT: "blocked by the day's price limit",
    OUT_ZERO_LOT: "position_unit buys less than one lot at this price",
    OUT_MAX_POSITION: "max_position_value leaves no room for one lot",
    OUT_NO_CASH: "cash does not cover one lot with fees",
}
