"""SimBroker: a paper venue behind the same ``Broker`` protocol as the real one, filling like the market.

It sees every good tick the engine sees (``observe_tick``) and keeps its own ledger (holdings,
availability, cash, reservations) with the rule kernel's transitions and the fees of each day:

* a marketable limit order (buy limit >= last price, sell limit <= last price) fills at once at the
  last price, so a rule's order fills at the tick price that fired it (live/backtest parity);
* a non-marketable one rests, reserving cash or shares, fills at its limit when a later tick crosses
  it, can be cancelled, and expires at the session close;
* prices off the 0.01 grid, outside the day's limit band, or for a stock with no price yet are
  refused, as is what a real broker refuses (no cash, nothing available).

Everything is reported on ``events`` in a real broker's order: reported, the fill, the final state.
Attached to an engine (``attach``, at every start) it follows the engine's clock for T+1 and rebuilds
its ledger from the engine's trade records, so after a restart the venue and the book agree.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
import queue
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from miniqmt_lab import market
from miniqmt_lab.config import Settings
from miniqmt_lab.engine.clock import WallClock
from miniqmt_lab.errors import InsufficientCash, InsufficientPosition, InvalidPrice, InvalidVolume, PriceLimitBreached
from miniqmt_lab.market import check_price, fee_params
from miniqmt_lab.protocols import EngineClock
from miniqmt_lab.rules import HoldingState, empty_holding_nb, fees_nb, fill_buy_nb, fill_sell_nb, roll_day_nb
from miniqmt_lab.schema import (
    BrokerAsset,
    BrokerError,
    BrokerEvent,
    BrokerOrder,
    BrokerPosition,
    BrokerStatus,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Rule,
    Side,
    Tick,
)

SESSION_CLOSE = dt.time(15, 0)
_limit_prices = functools.lru_cache(maxsize=65536)(market.limit_prices)  # a stock's band moves once a day


@dataclass(slots=True)
class _Quote:
    price: float
    up: float  # NaN: no band known
    down: float
    time: dt.datetime


@dataclass(slots=True)
class _Order:
    order_id: str
    request: OrderRequest
    price: float  # the limit
    day: dt.date
    status: OrderStatus = OrderStatus.REPORTED
    filled: int = 0
    reserved_cash: float = 0.0


def on_grid(price: float) -> bool:
    return abs(price * 100.0 - round(price * 100.0)) < 1e-6


class SimBroker:
    """Paper broker: market-like fills at the last price, resting limit orders, kernel fees, T+1, one cash pool."""

    name = "SimBroker"
    live = False  # paper: no order leaves this process

    def __init__(self, settings: Settings | None = None, *, clock: EngineClock | None = None) -> None:
        self.settings = settings or Settings()
        self.events: queue.Queue[BrokerEvent] = queue.Queue()
        self._clock: EngineClock = clock or WallClock()
        self._lock = threading.Lock()
        self._cash = float(self.settings.engine.simulation_balance)
        self._holdings: dict[str, HoldingState] = {}
        self._quotes: dict[str, _Quote] = {}
        self._day: dt.date | None = None
        self._connected = False
        # ids stay unique across restarts: the engine's trade_records key on them
        self._session = uuid.uuid4().hex[:8]
        self._ids = itertools.count(1)
        self._orders: dict[str, _Order] = {}  # every order of the session, by id
        self._open: dict[str, _Order] = {}  # the resting ones: what a tick may fill and the close expires

    def attach(
        self,
        clock: EngineClock,
        trades: pd.DataFrame,
        quotes: Mapping[str, Any] | None = None,
        events: pd.DataFrame | None = None,
    ) -> None:
        """Follow the engine's clock and rebuild the ledger from its trades (``Store.ledger_frame``),
        each with the fees it was charged, and its corporate-action events (``Store.events_frame``) in time
        order; ``quotes`` (the engine's last known prices: ``price``, ``prev_close``, ``name``, ``time``)
        are the venue's last prices until ticks come."""
        with self._lock:
            self._clock = clock
            self._cash = float(self.settings.engine.simulation_balance)
            self._holdings = {}
            self._orders, self._open = {}, {}
            self._day = None
            for code, q in (quotes or {}).items():
                up, down = market.limit_prices(code, q.prev_close, q.name)
                self._quotes[code] = _Quote(float(q.price), up, down, q.time)
            actions = list(events.itertuples(index=False)) if events is not None else []
            for row in trades.itertuples(index=False):
                while actions and actions[0].time <= row.time:  # an ex-date comes before the day's trades
                    self._action_row(actions.pop(0))
                self._roll_to(pd.Timestamp(row.time).date())
                self._book(row.stock_code, Side(row.side), float(row.price), int(row.volume), str(row.rule),
                           float(row.commission))
            for action in actions:
                self._action_row(action)
            self._roll_to(self._now().date())

    def corporate_action(self, code: str, new_shares: int, cash: float) -> None:
        """An ex-date at the venue: ``new_shares`` bonus shares (available the next trading day) and ``cash``
        yuan of dividend for the holding of ``code`` (the engine applies the kernel's transition to its book)."""
        with self._lock:
            self._roll_to(self._now().date())  # the ex-date's own roll first: the new shares wait for the next
            self._corporate(code, new_shares, cash)

    def _action_row(self, row: Any) -> None:
        self._roll_to(pd.Timestamp(row.time).date())
        self._corporate(str(row.stock_code), int(row.volume_after) - int(row.volume_before), float(row.cash))

    def _corporate(self, code: str, new_shares: int, cash: float) -> None:
        state = self._holdings.get(code)
        if state is not None:
            self._holdings[code] = state._replace(volume=state.volume + new_shares)
        self._cash += cash

    # -- the ledger (call with the lock held) ------------------------------------------------------

    def _now(self) -> dt.datetime:
        try:
            return self._clock.now()
        except RuntimeError:  # a replay clock before its first round
            return dt.datetime.now(market.SHANGHAI)

    def _roll_to(self, day: dt.date) -> None:
        if self._day is None or day > self._day:
            self._day = day
            self._holdings = {code: roll_day_nb(state) for code, state in self._holdings.items()}

    def _book(self, code: str, side: Side, price: float, volume: int, rule: str, fee: float) -> None:
        state = self._holdings.get(code, empty_holding_nb())
        rule_code = int(Rule.of(rule))
        if side is Side.BUY:
            state, self._cash = fill_buy_nb(state, self._cash, price, volume, rule_code, fee)
        else:
            state, self._cash, _ = fill_sell_nb(state, self._cash, price, volume, rule_code, fee)
        if state.volume > 0:
            self._holdings[code] = state
        else:
            self._holdings.pop(code, None)

    def _fee(self, side: Side, amount: float, day: dt.date) -> float:
        return float(fees_nb(amount, side is Side.SELL, fee_params(self.settings.fees, day)))

    def _reserved_volume(self, code: str) -> int:
        return sum(o.request.volume - o.filled for o in self._open.values()
                   if o.request.code == code and o.request.side is Side.SELL)

    def _reserved_cash(self) -> float:
        return sum(o.reserved_cash for o in self._open.values())

    def _fill(self, order: _Order, price: float, when: dt.datetime) -> None:
        request = order.request
        volume = request.volume - order.filled
        day = when.date()
        amount = volume * price
        fee = self._fee(request.side, amount, day)
        order.reserved_cash = 0.0
        self._book(request.code, request.side, price, volume, request.rule, fee)
        order.filled += volume
        order.status = OrderStatus.FILLED
        self._open.pop(order.order_id, None)
        common = {"signal_id": request.signal_id, "rule": request.rule}
        self.events.put(Fill(order.order_id, f"{order.order_id}-t", request.code, request.side, price, volume,
                             amount, fee, when, **common))
        self.events.put(OrderUpdate(order.order_id, request.code, request.side, OrderStatus.FILLED, request.volume,
                                    order.filled, price, **common))

    def _end(self, order: _Order, status: OrderStatus, message: str) -> None:
        order.status = status
        order.reserved_cash = 0.0
        self._open.pop(order.order_id, None)
        request = order.request
        self.events.put(OrderUpdate(order.order_id, request.code, request.side, status, request.volume, order.filled,
                                    order.price, message, signal_id=request.signal_id, rule=request.rule))

    def _expire(self, now: dt.datetime) -> None:
        for order in list(self._open.values()):
            if order.day < now.date() or (order.day == now.date() and now.time() >= SESSION_CLOSE):
                self._end(order, OrderStatus.EXPIRED, f"expired at the close of {order.day}")

    # -- the market ----------------------------------------------------------------------------------

    def observe_tick(self, tick: Tick, base: float, band: tuple[float, float] | None = None) -> None:
        """A good tick the engine saw (``base``: the day's base price; ``band``: its (up, down) limits
        when the caller has them): the venue's last price, and a resting order the price reaches fills
        at its limit."""
        code = str(tick.code)
        price = float(tick.price)
        if band is not None:
            up, down = band
        else:
            up, down = _limit_prices(code, base, tick.name) if tick.limits else (math.nan, math.nan)
        with self._lock:
            now = market.to_shanghai(tick.time)  # the market's own time: a new day rolls T+1 and ends old orders
            self._roll_to(now.date())
            self._quotes[code] = _Quote(price, up, down, tick.time)
            if not self._open:  # no resting order: nothing more to do (the usual case)
                return
            self._expire(now)
            for order in [o for o in self._open.values() if o.request.code == code]:
                crossed = price <= order.price if order.request.side is Side.BUY else price >= order.price
                if crossed:
                    self._fill(order, order.price, tick.trade_time)

    # -- Broker protocol ---------------------------------------------------------------------------

    def connect(self) -> None:
        self._connected = True

    def close(self) -> None:
        self._connected = False

    def submit(self, order: OrderRequest) -> str:
        if isinstance(order.volume, bool) or not isinstance(order.volume, int) or order.volume <= 0:
            raise InvalidVolume(f"order volume must be a positive whole number of shares, got {order.volume!r}")
        with self._lock:
            now = self._now()
            self._roll_to(now.date())
            self._expire(now)
            quote = self._quotes.get(order.code)
            if quote is None:
                raise InvalidPrice(f"the paper broker has no price of {order.code} yet: it fills only at market prices")
            price = quote.price if order.price is None else check_price(order.price, what=f"price for {order.code}")
            if not on_grid(price):
                raise InvalidPrice(f"price {price!r} for {order.code} is not on the 0.01 price grid")
            if price > quote.up + 1e-9 or price < quote.down - 1e-9:
                raise PriceLimitBreached(f"price {price:.2f} for {order.code} is outside the day's limit band"
                                         f" {quote.down:.2f}-{quote.up:.2f}")
            marketable = price >= quote.price if order.side is Side.BUY else price <= quote.price
            fill_price = quote.price if marketable else price
            amount = order.volume * fill_price
            if order.side is Side.BUY:
                need = order.volume * price + self._fee(Side.BUY, order.volume * price, now.date())
                free = self._cash - self._reserved_cash()
                if need > free + 1e-9:
                    raise InsufficientCash(f"paper broker: {need:,.2f} needed, {free:,.2f} cash free")
            else:
                held = self._holdings.get(order.code)
                available = (held.available if held is not None else 0) - self._reserved_volume(order.code)
                if order.volume > available:
                    raise InsufficientPosition(f"paper broker: sell {order.volume} {order.code},"
                                               f" {max(available, 0)} available")
            order_id = f"sim-{self._session}-{next(self._ids)}"
            record = _Order(order_id, order, price, now.date())
            self._orders[order_id] = self._open[order_id] = record
            # the events are queued before the lock is released, so they keep the order of the fills
            self.events.put(OrderUpdate(order_id, order.code, order.side, OrderStatus.REPORTED, order.volume, 0,
                                        price, signal_id=order.signal_id, rule=order.rule))
            if marketable:
                self._fill(record, fill_price, order.stamp or now)
            elif order.side is Side.BUY:
                record.reserved_cash = amount + self._fee(Side.BUY, amount, now.date())
        return order_id

    def cancel(self, order_id: str) -> None:
        with self._lock:
            order = self._orders.get(str(order_id))
            if order is None or order.status is not OrderStatus.REPORTED:
                state = "unknown" if order is None else str(order.status)
                self.events.put(BrokerError(str(order_id), f"order {order_id} is {state}: nothing to cancel",
                                            kind="cancel", signal_id=order.request.signal_id if order else ""))
                return
            self._end(order, OrderStatus.CANCELLED, "cancelled")

    def orders(self) -> list[BrokerOrder]:
        """Every order of this session with its state."""
        with self._lock:
            self._expire(self._now())
            return [
                BrokerOrder(o.order_id, o.request.code, o.request.side, o.request.volume, o.filled, o.price,
                            o.status, o.request.signal_id)
                for o in self._orders.values()
            ]

    def positions(self) -> list[BrokerPosition]:
        with self._lock:
            now = self._now()
            self._roll_to(now.date())
            self._expire(now)
            out = []
            for code, s in sorted(self._holdings.items()):
                last = self._quotes[code].price if code in self._quotes else s.cost
                available = max(0, s.available - self._reserved_volume(code))
                out.append(BrokerPosition(code, s.volume, available, s.cost, last, s.volume * last))
            return out

    def asset(self) -> BrokerAsset:
        with self._lock:
            value = sum(s.volume * (self._quotes[c].price if c in self._quotes else s.cost)
                        for c, s in self._holdings.items())
            frozen = self._reserved_cash()
            return BrokerAsset(self._cash, frozen, value, self._cash + value)

    def status(self) -> BrokerStatus:
        return BrokerStatus(connected=self._connected, name=self.name, message="paper trading", account="paper")

    def holdings(self) -> Iterable[tuple[str, HoldingState]]:
        """The venue's own ledger (tests compare it with the engine's book)."""
        with self._lock:
            return list(self._holdings.items())
