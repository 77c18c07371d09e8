"""SimBroker: a paper venue behind the same ``Broker`` protocol as the real one.

It keeps its own ledger (holdings, availability, cash) with the rule kernel's transitions, refuses
what a real broker refuses (no cash, not available, bad price), fills every accepted order at once
at the order's price and reports everything on ``events``: an accepted update, the fill, the final
update, in that order, like a real broker's callbacks.

Attached to an engine (``attach``, at every start) it follows the engine's clock for T+1 and rebuilds
its ledger from the engine's trade records, so after a restart (a new engine, or the same one stopped
and started: ``connect`` after ``close`` works) the venue and the book agree.
"""

from __future__ import annotations

import datetime as dt
import itertools
import queue
import threading
import uuid
from collections.abc import Iterable

import pandas as pd

from miniqmt_lab.config import Settings
from miniqmt_lab.engine.clock import WallClock
from miniqmt_lab.errors import InsufficientCash, InsufficientPosition, InvalidPrice, InvalidVolume
from miniqmt_lab.market import check_price, fee_params
from miniqmt_lab.protocols import EngineClock
from miniqmt_lab.rules import (
    HoldingState,
    apply_buy_nb,
    apply_sell_nb,
    empty_holding_nb,
    fees_nb,
    roll_day_nb,
)
from miniqmt_lab.schema import (
    BrokerAsset,
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
)


class SimBroker:
    """Paper broker: immediate fills at the order price, kernel fees, T+1, a single cash pool."""

    name = "SimBroker"
    live = False  # paper: no order leaves this process

    def __init__(self, settings: Settings | None = None, *, clock: EngineClock | None = None) -> None:
        self.settings = settings or Settings()
        self.events: queue.Queue[BrokerEvent] = queue.Queue()
        self._fees = fee_params(self.settings.fees)
        self._clock: EngineClock = clock or WallClock()
        self._lock = threading.Lock()
        self._cash = float(self.settings.engine.simulation_balance)
        self._holdings: dict[str, HoldingState] = {}
        self._last_price: dict[str, float] = {}
        self._day: dt.date | None = None
        self._connected = False
        # ids stay unique across restarts: the engine's trade_records key on them
        self._session = uuid.uuid4().hex[:8]
        self._ids = itertools.count(1)
        self._orders: list[BrokerOrder] = []

    def attach(self, clock: EngineClock, trades: pd.DataFrame) -> None:
        """Follow the engine's clock and rebuild the ledger from its trades (``Store.ledger_frame``)."""
        with self._lock:
            self._clock = clock
            self._cash = float(self.settings.engine.simulation_balance)
            self._holdings = {}
            self._day = None
            for row in trades.itertuples(index=False):
                self._roll_to(pd.Timestamp(row.time).date())
                self._apply(row.stock_code, Side(row.side), float(row.price), int(row.volume), str(row.rule))
            self._roll_to(self._clock.now().date())

    # -- the ledger (call with the lock held) ------------------------------------------------------

    def _roll_to(self, day: dt.date) -> None:
        if self._day is None or day > self._day:
            self._day = day
            self._fees = fee_params(self.settings.fees, day)  # each trade pays its own day's rates
            self._holdings = {code: roll_day_nb(state) for code, state in self._holdings.items()}

    def _apply(self, code: str, side: Side, price: float, volume: int, rule: str) -> float:
        state = self._holdings.get(code, empty_holding_nb())
        rule_code = int(Rule.of(rule))
        if side is Side.BUY:
            state, self._cash, fee = apply_buy_nb(state, self._cash, price, volume, rule_code, self._fees)
        else:
            state, self._cash, fee, _ = apply_sell_nb(state, self._cash, price, volume, rule_code, self._fees)
        if state.volume > 0:
            self._holdings[code] = state
        else:
            self._holdings.pop(code, None)
        self._last_price[code] = price
        return fee

    # -- Broker protocol ---------------------------------------------------------------------------

    def connect(self) -> None:
        self._connected = True

    def close(self) -> None:
        self._connected = False

    def submit(self, order: OrderRequest) -> str:
        price = check_price(order.price, what=f"order price for {order.code}") if order.price is not None else None
        if price is None:
            raise InvalidPrice(f"the paper broker needs a price for {order.code}")
        if order.volume <= 0:
            raise InvalidVolume(f"order volume must be positive, got {order.volume}")
        fill_time = order.stamp or self._clock.now()
        with self._lock:
            self._roll_to(self._clock.now().date())
            amount = order.volume * price
            if order.side is Side.BUY:
                need = amount + fees_nb(amount, False, self._fees)
                if need > self._cash + 1e-9:
                    raise InsufficientCash(f"paper broker: {need:,.2f} needed, {self._cash:,.2f} cash")
            else:
                held = self._holdings.get(order.code)
                available = held.available if held is not None else 0
                if order.volume > available:
                    raise InsufficientPosition(f"paper broker: sell {order.volume} {order.code}, {available} available")
            n = next(self._ids)
            order_id = f"sim-{self._session}-{n}"
            fee = self._apply(order.code, order.side, price, order.volume, order.rule)
            self._orders.append(BrokerOrder(order_id, order.code, order.side, order.volume, order.volume, price,
                                            OrderStatus.FILLED, order.signal_id))
            # the events are queued before the lock is released, so they keep the order of the fills
            common = {"signal_id": order.signal_id, "rule": order.rule}
            self.events.put(
                OrderUpdate(order_id, order.code, order.side, OrderStatus.REPORTED, order.volume, 0, price, **common)
            )
            self.events.put(
                Fill(order_id, f"{order_id}-t", order.code, order.side, price, order.volume, amount, fee, fill_time,
                     **common)
            )
            self.events.put(
                OrderUpdate(order_id, order.code, order.side, OrderStatus.FILLED, order.volume, order.volume, price,
                            **common)
            )
        return order_id

    def cancel(self, order_id: str) -> None:
        # every paper order fills at once: nothing is ever left to cancel
        return None

    def positions(self) -> list[BrokerPosition]:
        with self._lock:
            self._roll_to(self._clock.now().date())
            return [
                BrokerPosition(
                    code,
                    s.volume,
                    s.available,
                    s.cost,
                    self._last_price.get(code, s.cost),
                    s.volume * self._last_price.get(code, s.cost),
                )
                for code, s in sorted(self._holdings.items())
            ]

    def orders(self) -> list[BrokerOrder]:
        """Every order of this session; paper orders fill at once."""
        with self._lock:
            return list(self._orders)

    def asset(self) -> BrokerAsset:
        with self._lock:
            market_value = sum(s.volume * self._last_price.get(c, s.cost) for c, s in self._holdings.items())
            return BrokerAsset(self._cash, 0.0, market_value, self._cash + market_value)

    def status(self) -> BrokerStatus:
        return BrokerStatus(connected=self._connected, name=self.name, message="paper trading", account="paper")

    def holdings(self) -> Iterable[tuple[str, HoldingState]]:
        """The venue's own ledger (tests compare it with the engine's book)."""
        with self._lock:
            return list(self._holdings.items())
