"""The one pre-trade check every order passes, whatever its source (rules, entries, manual, panel, web).

Three gates, in order:

* the trading state (the kill switch): ``active`` trades, ``reducing`` only sells, ``halted`` nothing;
* a rate limit: at most ``engine.max_orders_per_minute`` orders in any 60 s of engine clock time;
* a maximum order value: ``engine.max_order_value`` yuan.

The engine switches itself to ``halted`` on a lost fill, a storage failure or a broker that stays
away, and says why; only a person (panel, web page, ``Engine.set_trading_state``) switches it back.
The state is kept in the engine database, so a restart does not clear a halt.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from miniqmt_lab.errors import OrderRejected
from miniqmt_lab.schema import Side, TradingState

log = logging.getLogger(__name__)


class TradingHalted(OrderRejected):
    """The kill switch refuses the order: trading is halted, or reducing and this is a buy."""

    reason = "trading_halted"


class RateLimited(OrderRejected):
    reason = "rate_limit"


class OrderTooLarge(OrderRejected):
    reason = "max_order_value"


@dataclass(frozen=True, slots=True)
class StateChange:
    state: TradingState
    reason: str
    time: dt.datetime
    by: str  # "engine" when it halted itself, else who switched it (panel, web, api)


class PreTradeCheck:
    """Trading state, rate limit and order value: one gate for every order. Thread-safe."""

    def __init__(
        self,
        *,
        max_orders_per_minute: int,
        max_order_value: float,
        state: TradingState = TradingState.ACTIVE,
        reason: str = "",
        on_change: Callable[[StateChange], None] = lambda change: None,
    ) -> None:
        self.max_orders_per_minute = int(max_orders_per_minute)
        self.max_order_value = float(max_order_value)
        self._lock = threading.Lock()
        self._state = TradingState(state)
        self._reason = reason
        self._sent: collections.deque[dt.datetime] = collections.deque()
        self._on_change = on_change

    @property
    def state(self) -> TradingState:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    def restore(self, state: TradingState | str, reason: str) -> None:
        """The state a previous run left (a restart does not clear a halt); no change is recorded."""
        with self._lock:
            self._state, self._reason = TradingState(state), reason
        if self._state is not TradingState.ACTIVE:
            log.warning("trading state %s restored from the database: %s", self._state.value.upper(), reason)

    def set_state(self, state: TradingState | str, reason: str, now: dt.datetime, *, by: str) -> bool:
        """Switch the state; returns False when it was that already (with that reason)."""
        new = TradingState(state)
        with self._lock:
            if (new, reason) == (self._state, self._reason):
                return False
            self._state, self._reason = new, reason
        level = logging.ERROR if new is TradingState.HALTED else logging.WARNING
        log.log(level, "trading state %s (%s): %s", new.value.upper(), by, reason or "no reason given")
        self._on_change(StateChange(new, reason, now, by))
        return True

    def halt(self, reason: str, now: dt.datetime) -> bool:
        """The engine halts itself; an existing halt keeps its first reason."""
        with self._lock:
            if self._state is TradingState.HALTED:
                return False
        return self.set_state(TradingState.HALTED, reason, now, by="engine")

    def check(self, side: Side, code: str, volume: int, price: float, now: dt.datetime) -> None:
        """Raise the typed refusal, or count the order as sent (the rate limit's window)."""
        value = volume * price
        with self._lock:
            state, reason = self._state, self._reason
            if state is TradingState.HALTED:
                raise TradingHalted(f"trading is halted ({reason or 'switched off'}): no {side.value} of {code}")
            if state is TradingState.REDUCING and side is Side.BUY:
                raise TradingHalted(f"trading is reducing ({reason or 'sells only'}): no BUY of {code}")
            if value > self.max_order_value + 1e-9:
                raise OrderTooLarge(
                    f"{side.value} {volume} {code} at {price:.2f} is {value:,.2f} yuan, above max_order_value"
                    f" {self.max_order_value:,.2f}"
                )
            cutoff = now - dt.timedelta(seconds=60)
            while self._sent and self._sent[0] <= cutoff:
                self._sent.popleft()
            if len(self._sent) >= self.max_orders_per_minute:
                raise RateLimited(
                    f"{self.max_orders_per_minute} orders within a minute already: {side.value} {code} refused"
                    " (max_orders_per_minute)"
                )
            self._sent.append(now)


__all__ = ["OrderTooLarge", "PreTradeCheck", "RateLimited", "StateChange", "TradingHalted"]
