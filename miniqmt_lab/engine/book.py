"""The position book: holdings, cash, last prices and order reservations behind one lock.

Every transition of a holding goes through the rule kernel (``observe_price_nb``, ``roll_day_nb``,
``fill_buy_nb``, ``fill_sell_nb``). Volume and cash are *reserved* under the lock when an order is
submitted and released when the order ends, so racing orders never sell more than is available
nor spend more than the cash.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from miniqmt_lab.errors import InsufficientCash, InsufficientPosition
from miniqmt_lab.rules import (
    RULE_GRID_BUY,
    RULE_MANUAL,
    FeeParams,
    HoldingState,
    empty_holding_nb,
    fees_nb,
    fill_buy_nb,
    fill_sell_nb,
    holding,
    observe_price_nb,
    roll_day_nb,
)
from miniqmt_lab.schema import BrokerPosition, OrderStatus, Side

CASH_TOLERANCE = 0.005  # yuan: below half a cent two cash figures are the same


@dataclass(frozen=True, slots=True)
class Position:
    code: str
    name: str
    state: HoldingState
    open_date: dt.date | None = None
    opened_at: str = ""  # time of the opening fill; part of the repeat-guard key of this holding


@dataclass(frozen=True, slots=True)
class Quote:
    price: float
    prev_close: float
    name: str
    time: dt.datetime


@dataclass(eq=False)
class PendingOrder:
    """An order between submission and its final state, holding its reservation."""

    client_id: str
    code: str
    side: Side
    volume: int
    price: float
    rule: int
    reserved_volume: int = 0
    reserved_cash: float = 0.0
    order_id: str = ""
    filled: int = 0
    grid_applied: bool = False
    status: OrderStatus = OrderStatus.SUBMITTED
    progress: tuple[dt.datetime, str] | None = None  # the tick a rule order came from (round time, code)
    submitted_at: dt.datetime | None = None  # engine clock time the order went to the broker
    unknown: bool = False  # the submit did not answer in time: the order may be at the broker
    lookups: int = 0  # broker order queries that did not show it (an unknown order)
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class FillResult:
    position: Position | None  # None: the holding closed
    cash: float
    fee: float
    realised: float


def fill_transition(
    position: Position | None,
    cash: float,
    *,
    code: str,
    name: str,
    side: Side,
    price: float,
    volume: int,
    rule: int,
    time: dt.datetime,
    fee: float,
) -> FillResult:
    """The holding and cash after one fill, by the kernel's fill functions.

    ``fee`` is what the broker charged for this fill: an order filled in parts pays its minimum
    commission once, not once per part.
    """
    state = position.state if position is not None else empty_holding_nb()
    if side is Side.BUY:
        new_state, new_cash = fill_buy_nb(state, cash, price, volume, rule, fee)
        realised = 0.0
    else:
        new_state, new_cash, realised = fill_sell_nb(state, cash, price, volume, rule, fee)
    if new_state.volume <= 0:
        return FillResult(None, new_cash, fee, realised)
    if position is None or position.state.volume <= 0:
        opened = Position(code, name, new_state, time.date(), time.isoformat())
    else:
        opened = replace(position, state=new_state, name=name or position.name)
    return FillResult(opened, new_cash, fee, realised)


class PositionBook:
    """Holdings, cash and reservations. Methods take the (reentrant) lock; callers may hold it too."""

    def __init__(self, cash: float, *, on_change: Callable[[], None] = lambda: None) -> None:
        self.lock = threading.RLock()
        self.cash = float(cash)
        self.day: dt.date | None = None
        self.positions: dict[str, Position] = {}
        self.quotes: dict[str, Quote] = {}
        self.pending: dict[str, PendingOrder] = {}
        self.reserved_cash = 0.0
        self.reserved_volume: dict[str, int] = {}
        self.progress: tuple[dt.datetime, str] | None = None  # last tick fully handled
        self.dirty: set[str] = set()
        self.dirty_quotes: set[str] = set()
        self.activity = 0  # counts reservations, fills and finished orders: a sync can tell it read an older state
        self._on_change = on_change

    # -- reading ----------------------------------------------------------------------------------

    def state(self, code: str) -> HoldingState:
        with self.lock:
            pos = self.positions.get(code)
            return pos.state if pos is not None else empty_holding_nb()

    def free_cash(self) -> float:
        with self.lock:
            return self.cash - self.reserved_cash

    def free_available(self, code: str) -> int:
        with self.lock:
            pos = self.positions.get(code)
            held = pos.state.available if pos is not None else 0
            return held - self.reserved_volume.get(code, 0)

    def codes(self) -> list[str]:
        with self.lock:
            return sorted(self.positions)

    def unresolved(self, code: str) -> bool:
        """An order of ``code`` has an unknown outcome (its submit timed out): no rule may act on it."""
        if not self.pending:  # no order in flight, the usual case: known without the lock
            return False
        with self.lock:
            return any(o.unknown and o.code == code for o in self.pending.values())

    def base_price(self, code: str, day: dt.date) -> float:
        """The day's base price from what the book saw before: the last price of an earlier day (a
        restart before the feed says), or the base that came with today's earlier ticks; NaN if none."""
        with self.lock:
            quote = self.quotes.get(code)
        if quote is None:
            return math.nan
        if quote.time.date() < day:
            return quote.price
        return quote.prev_close

    # -- transitions ------------------------------------------------------------------------------

    def load(
        self,
        positions: Iterable[Position],
        day: dt.date | None,
        progress: tuple[dt.datetime, str] | None,
        quotes: dict[str, Quote] | None = None,
    ) -> None:
        with self.lock:
            self.positions = {p.code: p for p in positions}
            self.quotes = dict(quotes or {})
            self.day = day
            self.progress = progress
            self.dirty.clear()
        self._on_change()

    def roll_day(self, day: dt.date) -> bool:
        """T+1: on a new trading day every share held becomes available."""
        with self.lock:
            if self.day is not None and day <= self.day:
                return False
            self.day = day
            for code, pos in self.positions.items():
                rolled = roll_day_nb(pos.state)
                if rolled != pos.state:
                    self.positions[code] = replace(pos, state=rolled)
                    self.dirty.add(code)
        self._on_change()
        return True

    def observe(self, code: str, price: float, prev_close: float, name: str, time: dt.datetime) -> HoldingState:
        """Record the tick's price and raise the holding's high; returns the holding as the rules see it."""
        with self.lock:
            pos = self.quote(code, price, prev_close, name, time)
            if pos is None:
                return empty_holding_nb()
            observed = observe_price_nb(pos.state, price)
            self.observed(pos, observed)
            return observed

    def quote(self, code: str, price: float, prev_close: float, name: str, time: dt.datetime) -> Position | None:
        """Record the tick's price (call with the lock held); returns the holding of ``code``, if any."""
        old = self.quotes.get(code)
        self.quotes[code] = Quote(price, prev_close, name or (old.name if old else ""), time)
        self.dirty_quotes.add(code)
        return self.positions.get(code)

    def observed(self, pos: Position, state: HoldingState) -> None:
        """The holding after the kernel observed a tick (call with the lock held): kept when it changed."""
        if state != pos.state:
            self.positions[pos.code] = replace(pos, state=state)
            self.dirty.add(pos.code)

    def mark_progress(self, tick_time: dt.datetime, code: str) -> None:
        with self.lock:
            if self.progress is None or (tick_time, code) > self.progress:
                self.progress = (tick_time, code)

    def reserve(self, order: PendingOrder, fees: FeeParams) -> None:
        """Reserve the order's shares or cash, or raise the typed refusal. Registers the order."""
        with self.lock:
            if order.side is Side.SELL:
                free = self.free_available(order.code)
                if order.volume > free:
                    raise InsufficientPosition(
                        f"sell {order.volume} {order.code}: only {max(free, 0)} shares are available now"
                        " (T+1 and pending orders count)"
                    )
                order.reserved_volume = order.volume
                self.reserved_volume[order.code] = self.reserved_volume.get(order.code, 0) + order.volume
            else:
                amount = order.volume * order.price
                need = amount + fees_nb(amount, False, fees)
                free_cash = self.free_cash()
                if need > free_cash + 1e-9:
                    raise InsufficientCash(
                        f"buy {order.volume} {order.code} at {order.price:.2f} needs {need:,.2f} yuan with fees;"
                        f" {free_cash:,.2f} is free"
                    )
                order.reserved_cash = need
                self.reserved_cash += need
            self.pending[order.client_id] = order
            self.activity += 1

    def release(self, order: PendingOrder, *, volume: int | None = None, cash: float | None = None) -> None:
        """Give back part (a fill) or, by default, all of what ``order`` still reserves."""
        with self.lock:
            give_volume = order.reserved_volume if volume is None else min(volume, order.reserved_volume)
            give_cash = order.reserved_cash if cash is None else min(cash, order.reserved_cash)
            order.reserved_volume -= give_volume
            order.reserved_cash -= give_cash
            left = self.reserved_volume.get(order.code, 0) - give_volume
            if left > 0:
                self.reserved_volume[order.code] = left
            else:
                self.reserved_volume.pop(order.code, None)
            self.reserved_cash = max(0.0, self.reserved_cash - give_cash)

    def finish(self, order: PendingOrder) -> None:
        with self.lock:
            self.release(order)
            self.pending.pop(order.client_id, None)
            # a broker answer read while this order was working may still show it (frozen shares or
            # cash): a sync that asked before now must not adopt that answer
            self.activity += 1
        order.done.set()
        self._on_change()

    def apply(self, code: str, result: FillResult) -> None:
        with self.lock:
            if result.position is None:
                self.positions.pop(code, None)
            else:
                self.positions[code] = result.position
            self.cash = result.cash
            self.dirty.discard(code)
            self.activity += 1
        self._on_change()

    def fill_rule(self, order: PendingOrder | None, rule: int) -> int:
        """Kernel rule code for a fill: a grid step counts once per order, not once per partial fill."""
        if rule != RULE_GRID_BUY or order is None:
            return rule
        with self.lock:
            if order.grid_applied:
                return RULE_MANUAL
            order.grid_applied = True
            return rule

    def take_dirty_quotes(self) -> list[tuple[str, Quote]]:
        with self.lock:
            out = [(c, self.quotes[c]) for c in self.dirty_quotes if c in self.quotes]
            self.dirty_quotes.clear()
            return out

    def take_dirty(self) -> tuple[list[Position], list[str]]:
        """Holdings changed since the last save (and codes that closed), clearing the marks."""
        with self.lock:
            changed = [self.positions[c] for c in self.dirty if c in self.positions]
            closed = [c for c in self.dirty if c not in self.positions]
            self.dirty.clear()
            return changed, closed

    def adopt_broker(self, broker_positions: Iterable[BrokerPosition], cash: float | None, *, since: int) -> list[str]:
        """Align volumes, availability and cash with the broker's; returns what differed.

        ``since`` is ``activity`` read before the broker was asked: when an order or fill came in
        between, the broker's answer may be older than the book and nothing is adopted. Codes with a
        pending order, and cash while any order is pending, are left alone: the broker may already
        show an effect the book is about to apply.
        """
        changes: list[str] = []
        with self.lock:
            if self.activity != since:
                return changes
            busy = {o.code for o in self.pending.values()}
            seen: set[str] = set()
            for bp in broker_positions:
                if bp.volume <= 0:
                    continue
                seen.add(bp.code)
                if bp.code in busy:
                    continue
                pos = self.positions.get(bp.code)
                if pos is None:
                    cost = bp.cost if bp.cost > 0 else bp.last_price
                    state = holding(bp.volume, bp.available, cost, cost, max(cost, bp.last_price))
                    self.positions[bp.code] = Position(bp.code, bp.name, state, self.day, f"broker:{self.day}")
                    changes.append(f"{bp.code}: held at the broker ({bp.volume}), not in the book")
                elif (pos.state.volume, pos.state.available) != (bp.volume, bp.available):
                    state = pos.state._replace(volume=int(bp.volume), available=int(bp.available))
                    self.positions[bp.code] = replace(pos, state=state)
                    changes.append(
                        f"{bp.code}: book {pos.state.volume}/{pos.state.available},"
                        f" broker {bp.volume}/{bp.available} (volume/available)"
                    )
                else:
                    continue
                self.dirty.add(bp.code)
            for code in [c for c in self.positions if c not in seen and c not in busy]:
                changes.append(f"{code}: in the book ({self.positions[code].state.volume}), not at the broker")
                del self.positions[code]
                self.dirty.add(code)
            if cash is not None and not self.pending and math.isfinite(cash) and abs(cash - self.cash) > CASH_TOLERANCE:
                changes.append(f"cash: book {self.cash:,.2f}, broker {cash:,.2f}")
                self.cash = float(cash)
        if changes:
            self._on_change()
        return changes
