"""The ``monitor`` thread's work: tick rounds through the rule kernel.

A round of ticks, stocks in ascending code order, each completely before the next
(docs/contracts.md, parity steps 1-8). A signal with an order is handed to the strategy thread
(:mod:`miniqmt_lab.engine.execution`) with an acknowledgement, and the monitor waits until the
order's fills are in the book. Before each round it runs the trader's broker sync when that is due.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from typing import TYPE_CHECKING

from miniqmt_lab import market
from miniqmt_lab.engine.execution import Task
from miniqmt_lab.engine.guards import FINAL_FOR_EXECUTION, Signal, repeat_key, signal_id, tick_problem
from miniqmt_lab.engine.store import SignalRow
from miniqmt_lab.records import local_text
from miniqmt_lab.rules import (
    RULE_NONE,
    decide_entry_nb,
    decide_nb,
)
from miniqmt_lab.schema import Blocked, Outcome, Tick, TickRound

if TYPE_CHECKING:
    from miniqmt_lab.engine.trading import Trader

log = logging.getLogger(__name__)

END_OF_ROUND = "\uffff"  # progress code meaning "every tick of the round is done"


@dataclasses.dataclass
class MonitorStats:
    rounds: int = 0
    ticks: int = 0
    busy_seconds: float = 0.0  # time spent processing rounds, waits for fills included
    signals: int = 0
    bad_ticks: int = 0
    skipped_ticks: int = 0  # already handled before a restart


class Monitor:
    """Tick rounds of ``trader``'s feed, decided on its book and handed to its strategy thread."""

    def __init__(self, trader: Trader) -> None:
        self.trader = trader
        self._ack_timeout = 2 * trader.settings.engine.call_timeout + 1.0
        self._fee_day: dt.date | None = None

    def step(self) -> float:
        trader = self.trader
        interval = trader.settings.engine.monitor_interval
        trader.sync_broker_if_due()
        wait = trader.clock.seconds_to_next_session()
        if wait > 0:
            return min(wait, trader.settings.engine.idle_sleep)
        if not trader.accepting:
            # stopping: a round taken now would be left unprocessed, and a resumed replay starts after it
            return interval
        rnd = trader.runner.call(
            "feed.next_round", trader.feed.next_round, interval, timeout=interval + trader.settings.engine.call_timeout
        )
        if rnd is None:
            if trader.feed.finished():
                trader.drained.set()
            return interval
        trader.drained.clear()
        processed = self.process_round(rnd)
        if trader.feed.finished():
            trader.drained.set()
        return interval if processed else 0.0  # rounds handled before a restart are skipped without a pause

    def process_round(self, rnd: TickRound) -> bool:
        """Parity steps 2-8 on one round; False when the round was handled before a restart.

        A tick is marked handled (``book.progress``) once its decision is carried out. When the engine
        stops mid-round, the round ends at the tick in hand, unmarked: its order may have been refused
        as the engine was stopping, so a restart evaluates it and the rest of the round again.
        """
        trader = self.trader
        book, stats = trader.book, trader.stats
        started = time.perf_counter()
        with book.lock:
            progress = book.progress
        if progress is not None and (rnd.time, END_OF_ROUND) <= progress:
            # the round in progress at the last stop comes again when a replay resumes: expected
            if rnd.time < progress[0] and not stats.skipped_ticks:
                log.warning(
                    "rounds up to %s were handled before (database %s): skipping them; use another database"
                    " to replay an earlier period", progress[0], trader.store.path,
                )
            stats.skipped_ticks += len(rnd.ticks)
            return False
        day = market.to_shanghai(rnd.time).date()
        book.roll_day(day)
        if day != self._fee_day:  # each trade pays its own day's stamp duty and transfer fee
            self._fee_day = day
            trader.fees = market.fee_params(trader.settings.fees, day)
        journal_rows = []
        texts: dict[dt.datetime, str] = {}  # the ticks of a round share one or two times
        for tick in sorted(rnd.ticks, key=lambda t: t.code):
            if progress is not None and (rnd.time, tick.code) <= progress:
                stats.skipped_ticks += 1
            else:
                self.process_tick(tick, rnd.time)
                if not trader.accepting:
                    break
                book.mark_progress(rnd.time, tick.code)
            journal_rows.append(_journal_row(tick, texts))
        else:
            book.mark_progress(rnd.time, END_OF_ROUND)
            stats.rounds += 1
        if trader.journal is not None:
            trader.journal.append(journal_rows)
        stats.ticks += len(journal_rows)
        stats.busy_seconds += time.perf_counter() - started
        return True

    def process_tick(self, tick: Tick, round_time: dt.datetime) -> None:
        trader = self.trader
        problem = tick_problem(tick)
        if problem is not None:
            trader.stats.bad_ticks += 1
            trader.issue("bad_tick", str(tick.code), f"tick ignored at {tick.time}: {problem}")
            return
        signal, outcome = self.decide(tick, round_time)
        if signal is None:
            return
        trader.stats.signals += 1
        if signal.volume == 0:
            self._record_no_action(signal, outcome)
        elif not trader.auto_trading:
            self._record(signal, Outcome.NOT_EXECUTED, "auto trading is off")
        else:
            self._hand_over(signal)

    def decide(self, tick: Tick, round_time: dt.datetime) -> tuple[Signal | None, int]:
        """The kernel's decision on one tick (parity step 3), or (None, 0) when no rule fires."""
        trader = self.trader
        book, params, fees = trader.book, trader.params, trader.fees
        code, p = tick.code, float(tick.price)
        up, down = trader.limits(code, tick.prev_close, tick.name)
        lots = market.lot_rule(code)
        with book.lock:
            state = book.observe(code, p, tick.prev_close, tick.name, tick.time)
            # reserved cash and shares belong to orders in flight: the rules see only what is free
            cash = book.free_cash()
            if state.volume > 0:
                reserved = book.reserved_volume.get(code, 0)
                free = state._replace(available=max(0, state.available - reserved)) if reserved else state
                rule, volume, outcome = decide_nb(free, p, cash, lots, up, down, params, fees)
                opened = book.positions[code].opened_at
            elif tick.bar_close and trader.entries is not None and trader.entries.is_entry(code, tick.trade_time, p):
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
            detected_at=trader.clock.now(),
            stamp=tick.trade_time,
            tick_time=round_time,
            key=repeat_key(code, int(rule), state, opened),
        )
        return signal, int(outcome)

    def _record(self, signal: Signal, outcome: Outcome, message: str) -> None:
        self.trader.store.insert_signal(
            SignalRow(
                signal.id, signal.detected_at, signal.stamp, signal.code, signal.rule_name, signal.side.value,
                signal.price, signal.volume, outcome.value, message, signal.key,
            )
        )
        self.trader.on_change()

    def _record_no_action(self, signal: Signal, outcome: int) -> None:
        # a blocked rule fires again on every tick live; one record per holding state and window is enough
        quiet = self.trader.quiet
        quiet_key = f"{signal.key}|{outcome}"
        if quiet.recent(quiet_key, signal.detected_at):
            return
        quiet.remember(quiet_key, signal.detected_at)
        blocked = Blocked(outcome)
        self._record(signal, Outcome.blocked(blocked), blocked.message)

    def _hand_over(self, signal: Signal) -> None:
        trader = self.trader
        previous = trader.store.signal_outcome(signal.id)
        if previous in FINAL_FOR_EXECUTION:
            log.info("signal %s was %s before a restart: not executed again", signal.id, previous)
            return
        if not trader.accepting:
            self._record(signal, Outcome.NOT_EXECUTED, "the engine is stopping")
            return
        if previous is None:
            self._record(signal, Outcome.PENDING, "")
        task = Task(signal)
        trader.tasks.put(task)
        if not task.done.wait(self._ack_timeout):
            log.error("signal %s: no acknowledgement within %.1f s; going on", signal.id, self._ack_timeout)



def _journal_price(value: float) -> float | None:
    return float(value) if isinstance(value, float | int) and math.isfinite(value) else None


def _journal_row(tick: Tick, texts: dict[dt.datetime, str]) -> tuple[str, str, str, float | None, int, float | None]:
    """The journal's record of ``tick``; ``texts`` caches the stored text of the round's times."""
    for moment in (tick.time, tick.trade_time):
        if moment not in texts:
            texts[moment] = local_text(moment)
    return (texts[tick.time], texts[tick.trade_time], str(tick.code), _journal_price(tick.price),
            int(tick.bar_close), _journal_price(tick.prev_close))

