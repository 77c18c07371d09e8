"""Signals and the live-only guards around them: pure functions and one small thread-safe memory.

The guards never change a decision of the rule kernel; they only stop a decision from being
executed twice (repeat guard), late (stale guard) or on bad data (tick checks).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import threading
from dataclasses import dataclass

from miniqmt_lab.errors import InvalidStockCode
from miniqmt_lab.market import normalize_code
from miniqmt_lab.rules import HoldingState
from miniqmt_lab.schema import RULE_NAMES, Outcome, Side, Tick

FINAL_FOR_EXECUTION = frozenset(
    {Outcome.SUBMITTED, Outcome.EXECUTED, Outcome.PARTIAL, Outcome.INTERRUPTED, Outcome.UNKNOWN}
)
"""A signal id stored with one of these outcomes is never executed again (processed-signal memory)."""


@dataclass(frozen=True, slots=True)
class Signal:
    """A decision of the rule kernel on one tick, on its way to execution."""

    id: str
    code: str
    rule: int  # kernel RULE_* code
    price: float
    volume: int
    detected_at: dt.datetime  # engine clock time
    stamp: dt.datetime  # the time a resulting trade records
    tick_time: dt.datetime  # the round the tick belongs to
    key: str  # repeat-guard key: stock, rule and holding state

    @property
    def rule_name(self) -> str:
        return RULE_NAMES[self.rule]

    @property
    def side(self) -> Side:
        return Side.of_rule(self.rule)


def signal_id(round_time: dt.datetime, code: str, rule: int) -> str:
    """Deterministic id: a replay re-detecting the same tick after a restart gets the same id."""
    return f"{round_time:%Y%m%dT%H%M%S.%f}-{code}-{RULE_NAMES[rule]}"


def repeat_key(code: str, rule: int, state: HoldingState, opened: str) -> str:
    """(stock, rule) for one holding state: an order that changed the holding makes a new key."""
    return f"{code}|{RULE_NAMES[rule]}|{opened}|{state.volume}|{state.grid_k}|{int(state.tp_done)}"


@functools.lru_cache(maxsize=65536, typed=True)
def _code_problem(code: object) -> str | None:
    try:
        normal = normalize_code(code)
    except InvalidStockCode as exc:
        return f"unknown code: {exc}"
    if normal != code:
        return f"unknown code {code!r} (expected the normalized form {normal!r})"
    return None


def tick_problem(tick: Tick) -> str | None:
    """Why a tick cannot be used, or None: an unknown code or a price that is not a finite number > 0."""
    code = tick.code
    try:
        problem = _code_problem(code)
    except TypeError:  # not hashable: not a code either
        problem = f"unknown code {code!r}"
    if problem is not None:
        return problem
    price = tick.price
    if isinstance(price, bool) or not isinstance(price, float | int) or not math.isfinite(price) or price <= 0:
        return f"bad price {price!r} for {code}"
    return None


def is_stale(detected_at: dt.datetime, now: dt.datetime, limit_seconds: float) -> bool:
    return (now - detected_at).total_seconds() > limit_seconds


class RepeatGuard:
    """Remembers when each key last ran; thread-safe. Times are engine clock times."""

    def __init__(self, window_seconds: float) -> None:
        self.window = float(window_seconds)
        self._lock = threading.Lock()
        self._last: dict[str, dt.datetime] = {}

    def recent(self, key: str, now: dt.datetime) -> bool:
        with self._lock:
            last = self._last.get(key)
        return last is not None and 0.0 <= (now - last).total_seconds() < self.window

    def remember(self, key: str, now: dt.datetime) -> None:
        with self._lock:
            self._last[key] = now
            if len(self._last) > 4096:
                # keys of closed holdings never come back; keep the memory bounded
                cutoff = now - dt.timedelta(seconds=self.window)
                self._last = {k: t for k, t in self._last.items() if t >= cutoff}
