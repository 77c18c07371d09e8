"""The ``monitor`` thread's work: tick rounds through the bad-tick test and the rule kernel.

A round of ticks, stocks in ascending code order, each completely before the next
(docs/contracts.md, parity steps 1-8). Per tick: the code and price must be usable; the price must
lie within the day's limit band (rules.md, "Bad ticks": a tick outside it changes nothing, here and
in the backtest); a paper venue sees the tick; then the kernel decides. A signal with an order is
handed to the strategy thread (:mod:`miniqmt_lab.engine.execution`) with an acknowledgement, and the
monitor waits until the order's fills are in the book. An exception on one tick is logged and
recorded, and the round goes on with the next stock. Before each round ``before_round`` runs (the
broker sync when it is due).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from typing import cast

from miniqmt_lab import market
from miniqmt_lab.engine.actions import apply_day_actions
from miniqmt_lab.engine.context import RunContext, Task
from miniqmt_lab.engine.guards import FINAL_FOR_EXECUTION, Signal, repeat_key, signal_id, tick_problem
from miniqmt_lab.engine.journal import JournalRow
from miniqmt_lab.engine.store import SignalRow
from miniqmt_lab.records import local_text
from miniqmt_lab.rules import (
    RULE_NONE,
    FeeParams,
    HoldingState,
    decide_entry_nb,
    empty_holding_nb,
    observe_decide_plain_nb,
    outside_band_nb,
)
from miniqmt_lab.rules.nb import FeeTuple, HoldingTuple
from miniqmt_lab.schema import Blocked, Outcome, Tick, TickRound

log = logging.getLogger(__name__)

END_OF_ROUND = "\uffff"  # progress code meaning "every tick of the round is done"


class Monitor:
    """Tick rounds of the run's feed, decided on its book and handed to its strategy thread."""

    def __init__(self, ctx: RunContext, before_round: Callable[[], None]) -> None:
        self.ctx = ctx
        self.before_round = before_round
        self._ack_timeout = 2 * ctx.settings.engine.call_timeout + 1.0
        self._observe = getattr(ctx.broker, "observe_tick", None)  # a paper venue follows the market
        self._plain_params = tuple(ctx.params)  # the kernel's fast entry takes plain tuples
        self._actions_day: dt.date | None = None

    def step(self) -> float:
        ctx = self.ctx
        interval = ctx.settings.engine.monitor_interval
        self.before_round()
        wait = ctx.clock.seconds_to_next_session()
        if wait > 0:
            return min(wait, ctx.settings.engine.idle_sleep)
        if not ctx.accepting:
            # stopping: a round taken now would be left unprocessed, and a resumed replay starts after it
            return interval
        rnd = ctx.feed_calls.call(
            "feed.next_round", ctx.feed.next_round, interval, timeout=interval + ctx.settings.engine.call_timeout
        )
        if rnd is None:
            if ctx.feed.finished():
                ctx.drained.set()
            return interval
        ctx.drained.clear()
        processed = self.process_round(rnd)
        if ctx.feed.finished():
            ctx.drained.set()
        return interval if processed else 0.0  # rounds handled before a restart are skipped without a pause

    def process_round(self, rnd: TickRound) -> bool:
        """Parity steps 2-8 on one round; False when the round was handled before a restart.

        A tick is marked handled (``book.progress``) once its decision is carried out. When the engine
        stops mid-round, the round ends at the tick in hand, unmarked: its order may have been refused
        as the engine was stopping, so a restart evaluates it and the rest of the round again.
        """
        ctx = self.ctx
        book, stats = ctx.book, ctx.stats
        started = time.perf_counter()
        with book.lock:
            progress = book.progress
        if progress is not None and (rnd.time, END_OF_ROUND) <= progress:
            # the round in progress at the last stop comes again when a replay resumes: expected
            if rnd.time < progress[0] and not stats.skipped_ticks:
                log.warning(
                    "rounds up to %s were handled before (database %s): skipping them; use another database"
                    " to replay an earlier period", progress[0], ctx.store.path,
                )
            stats.skipped_ticks += len(rnd.ticks)
            return False
        day = market.to_shanghai(rnd.time).date()
        book.roll_day(day)
        # ex-dates before the day's first tick, after the T+1 roll; an action stored before a restart is not
        # applied again, and a day whose actions could not be read is asked again with the next round
        if day != self._actions_day and apply_day_actions(ctx, day) is not None:
            self._actions_day = day
        journal_rows = []
        texts: dict[dt.datetime, str] = {}  # the ticks of a round share one or two times
        fees = ctx.fees_for(day)
        for tick in sorted(rnd.ticks, key=_code_of):
            note, base = "", tick.prev_close
            if progress is not None and (rnd.time, tick.code) <= progress:
                stats.skipped_ticks += 1
            else:
                try:
                    note, base = self.process_tick(tick, rnd.time, day, fees)
                except Exception as exc:  # one stock's failure must not take the round's other stocks down
                    stats.tick_errors += 1
                    note = f"error: {type(exc).__name__}: {exc}"
                    log.exception("tick of %s at %s failed; the round goes on", tick.code, rnd.time)
                    ctx.issue("tick_error", str(tick.code), f"tick at {tick.time} not processed: {note}")
                if not ctx.accepting:
                    break
                book.mark_progress(rnd.time, tick.code)
            journal_rows.append(_journal_row(tick, base, note, texts))
        else:
            book.mark_progress(rnd.time, END_OF_ROUND)
            stats.rounds += 1
        if ctx.journal is not None:
            try:
                ctx.journal.append(journal_rows)
            except Exception as exc:  # the journal is a record of the ticks; losing it must not stop trading
                ctx.issue("journal", "", f"journal {ctx.journal.path}: {exc}")
        stats.ticks += len(journal_rows)
        stats.busy_seconds += time.perf_counter() - started
        return True

    def process_tick(self, tick: Tick, round_time: dt.datetime, day: dt.date, fees: FeeParams) -> tuple[str, float]:
        """One tick, completely (``fees``: the day's); returns (the journal's note, the day's base price used)."""
        ctx = self.ctx
        base = tick.prev_close if tick.prev_close > 0 else ctx.book.base_price(str(tick.code), day)
        problem = tick_problem(tick)
        band = (math.nan, math.nan)
        if problem is None:
            band = ctx.band(tick.code, base, tick.name, tick.limits)
            if outside_band_nb(float(tick.price), band[0], band[1]):
                problem = f"price {tick.price} outside the day's band {band[1]:.2f}-{band[0]:.2f} (base {base:.2f})"
        if problem is not None:
            ctx.stats.bad_ticks += 1
            ctx.issue("bad_tick", str(tick.code), f"tick ignored at {tick.time}: {problem}")
            return f"bad tick: {problem}", base
        if self._observe is not None:
            self._observe(tick, base, band)
        if ctx.book.unresolved(tick.code):
            ctx.stats.unresolved_skips += 1
            ctx.book.observe(tick.code, float(tick.price), base, tick.name, tick.time)
            return "an order of this stock has an unknown outcome: no rule ran", base
        signal, outcome = self.decide(tick, base, round_time, ctx.as_rules_see(band), fees)
        if signal is None:
            return "", base
        ctx.stats.signals += 1
        if signal.volume == 0:
            self._record_no_action(signal, outcome)
        elif not ctx.auto_trading:
            self._record(signal, Outcome.NOT_EXECUTED, "auto trading is off")
        else:
            self._hand_over(signal)
        return "", base

    def decide(
        self, tick: Tick, base: float, round_time: dt.datetime, limits: tuple[float, float], fees: FeeParams
    ) -> tuple[Signal | None, int]:
        """The kernel's decision on one tick (parity step 3), or (None, 0) when no rule fires; ``limits``:
        the (up, down) limits the rules see, ``fees``: the day's."""
        ctx = self.ctx
        book, params = ctx.book, ctx.params
        code, p = tick.code, float(tick.price)
        up, down = limits
        lots = market.lot_rule(code)
        with book.lock:
            pos = book.quote(code, p, base, tick.name, tick.time)
            # reserved cash and shares belong to orders in flight: the rules see only what is free
            cash = book.free_cash()
            if pos is not None and pos.state.volume > 0:
                held, rule, volume, outcome = observe_decide_plain_nb(
                    cast(HoldingTuple, tuple(pos.state)), p, book.reserved_volume.get(code, 0), cash, *lots,
                    up, down, self._plain_params, cast(FeeTuple, tuple(fees)),
                )
                state = HoldingState(*held)
                book.observed(pos, state)
                opened = pos.opened_at
            elif tick.bar_close and ctx.entries is not None and ctx.entries.is_entry(code, tick.trade_time, p):
                state = empty_holding_nb() if pos is None else pos.state
                rule, volume, outcome = decide_entry_nb(state, p, cash, lots, up, params, fees)
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
            detected_at=ctx.clock.now(),
            stamp=tick.trade_time,
            tick_time=round_time,
            key=repeat_key(code, int(rule), state, opened),
        )
        return signal, int(outcome)

    def _record(self, signal: Signal, outcome: Outcome, message: str) -> None:
        self.ctx.store.insert_signal(
            SignalRow(
                signal.id, signal.detected_at, signal.stamp, signal.code, signal.rule_name, signal.side.value,
                signal.price, signal.volume, outcome.value, message, signal.key,
            )
        )
        self.ctx.on_change()

    def _record_no_action(self, signal: Signal, outcome: int) -> None:
        # a blocked rule fires again on every tick live; one record per holding state and window is enough
        quiet = self.ctx.quiet
        quiet_key = f"{signal.key}|{outcome}"
        if quiet.recent(quiet_key, signal.detected_at):
            return
        quiet.remember(quiet_key, signal.detected_at)
        blocked = Blocked(outcome)
        self._record(signal, Outcome.blocked(blocked), blocked.message)

    def _hand_over(self, signal: Signal) -> None:
        ctx = self.ctx
        previous = ctx.store.signal_outcome(signal.id)
        if previous in FINAL_FOR_EXECUTION:
            log.info("signal %s was %s before a restart: not executed again", signal.id, previous)
            return
        if not ctx.accepting:
            self._record(signal, Outcome.NOT_EXECUTED, "the engine is stopping")
            return
        if previous is None:
            self._record(signal, Outcome.PENDING, "")
        task = Task(signal)
        ctx.tasks.put(task)
        if not task.done.wait(self._ack_timeout):
            log.error("signal %s: no acknowledgement within %.1f s; going on", signal.id, self._ack_timeout)



def _code_of(tick: Tick) -> str:
    return str(tick.code)


def _journal_price(value: object) -> float | None:
    return float(value) if isinstance(value, float | int) and math.isfinite(value) else None


def _journal_row(tick: Tick, base: float, note: str, texts: dict[dt.datetime, str]) -> JournalRow:
    """The journal's record of ``tick`` (with the base price the engine used); ``texts`` caches the
    stored text of the round's times."""
    for moment in (tick.time, tick.trade_time):
        if moment not in texts:
            texts[moment] = local_text(moment)
    return (texts[tick.time], texts[tick.trade_time], str(tick.code), _journal_price(tick.price),
            int(tick.bar_close), _journal_price(base), note)
