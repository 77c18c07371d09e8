"""The small protocols the engine talks to: clock, feed and broker, and the events they report.

Paper (``SimBroker``, ``ReplayFeed``, ``ReplayClock``) and live (``QmtBroker``, ``QmtFeed``,
``WallClock``) implement the same protocols, so the engine holds no ``if simulation`` branch.
"""

from __future__ import annotations

import datetime as dt
import math
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

TRADE_COLUMNS = ("time", "stock_code", "side", "price", "volume", "amount", "commission", "rule")
"""Schema of ``Engine.trades()`` and ``BacktestResult.trades``: the two are compared row by row."""


# -- market data --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """One observed price of one stock.

    ``time`` is when it was observed (aware Asia/Shanghai). ``stamp`` is what a trade made on this
    tick records as its time: the tick time live, the bar's time in replay (rules.md, bars to
    ticks). ``bar_close`` marks a bar's last tick, where entry signals are acted on.
    ``prev_close`` gives the day's price limits (NaN: none known).
    """

    code: str
    price: float
    time: dt.datetime
    stamp: dt.datetime | None = None
    bar_close: bool = False
    prev_close: float = math.nan
    name: str = ""

    @property
    def trade_time(self) -> dt.datetime:
        return self.stamp if self.stamp is not None else self.time


@dataclass(frozen=True, slots=True)
class TickRound:
    """Ticks sharing one time, processed in ascending stock-code order (rules.md, order of work)."""

    time: dt.datetime
    ticks: tuple[Tick, ...]


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Current time, aware Asia/Shanghai."""
        ...

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Wait up to ``seconds`` (clock time); return True at once when ``stop`` is set."""
        ...


class Feed(Protocol):
    """A source of tick rounds. The engine calls ``open`` at every start and ``close`` at every stop,
    so one feed serves an engine that is stopped and started again."""

    def open(self) -> None:
        """Get ready to deliver: called at every start, so after a ``close`` too (a restart)."""
        ...

    def watch(self, codes: Sequence[str]) -> None:
        """Set the codes whose prices the feed delivers (held stocks and the stock pool)."""
        ...

    def next_round(self, timeout: float) -> TickRound | None:
        """The next round of ticks, or None when none arrived within ``timeout`` (or the stream ended)."""
        ...

    def finished(self) -> bool:
        """True when a finite stream (replay) has delivered its last round; always False live."""
        ...

    def close(self) -> None:
        """Stop delivering; a waiting ``next_round`` returns None at once."""
        ...


# -- orders and broker events -------------------------------------------------------------------


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(StrEnum):
    SUBMITTED = "submitted"  # xtquant 48/49
    REPORTED = "reported"  # 50, 51 (cancel requested)
    PARTIAL = "partial"  # 55, and 52 (part filled, cancel pending: more fills may come)
    FILLED = "filled"  # 56
    PARTIAL_CANCELLED = "partial_cancelled"  # 53
    CANCELLED = "cancelled"  # 54
    REJECTED = "rejected"  # 57
    UNKNOWN = "unknown"  # 255

    @property
    def final(self) -> bool:
        return self in {
            OrderStatus.FILLED,
            OrderStatus.PARTIAL_CANCELLED,
            OrderStatus.CANCELLED,
            OrderStatus.REJECTED,
        }


@dataclass(frozen=True, slots=True)
class OrderRequest:
    code: str
    side: Side
    volume: int
    price: float | None  # None: latest price (market-like); a number: limit price
    rule: str  # stop_loss, take_profit_initial, take_profit_dynamic, grid_buy, entry, manual
    signal_id: str = ""
    stamp: dt.datetime | None = None  # time a resulting fill records (replay: the bar's time)


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    order_id: str
    code: str
    side: Side
    status: OrderStatus
    volume: int
    filled_volume: int
    price: float
    message: str = ""
    signal_id: str = ""
    rule: str = ""


@dataclass(frozen=True, slots=True)
class Fill:
    order_id: str
    trade_id: str
    code: str
    side: Side
    price: float
    volume: int
    amount: float
    commission: float  # all fees of this fill
    time: dt.datetime
    signal_id: str = ""
    rule: str = ""


@dataclass(frozen=True, slots=True)
class BrokerError:
    order_id: str
    message: str
    kind: str = "order"  # "order" or "cancel"
    signal_id: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    connected: bool
    message: str = ""


BrokerEvent = OrderUpdate | Fill | BrokerError | ConnectionChanged


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    code: str
    volume: int
    available: int
    cost: float
    last_price: float
    market_value: float
    name: str = ""


@dataclass(frozen=True, slots=True)
class BrokerAsset:
    cash: float
    frozen_cash: float
    market_value: float
    total_asset: float


@dataclass(slots=True)
class BrokerStatus:
    connected: bool
    name: str
    message: str = ""
    account: str = ""  # masked
    outages: int = 0
    details: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class Broker(Protocol):
    """A venue. Every outcome of an order (updates, fills, errors) arrives on ``events``."""

    name: str
    events: queue.Queue[BrokerEvent]

    def connect(self) -> None:
        """Connect or raise a typed error (``QmtUnavailable`` for a missing client); after ``close``
        it connects again (the engine calls it at every start)."""
        ...

    def close(self) -> None: ...

    def submit(self, order: OrderRequest) -> str:
        """Send an order; return the broker's order id. Refusals raise ``OrderRejected``."""
        ...

    def cancel(self, order_id: str) -> None: ...

    def positions(self) -> list[BrokerPosition]: ...

    def asset(self) -> BrokerAsset: ...

    def status(self) -> BrokerStatus: ...


def mask_account(account_id: str) -> str:
    """Account ids are never shown whole: keep the first two and last two characters."""
    text = str(account_id or "")
    if len(text) <= 4:
        return "*" * len(text)
    return f"{text[:2]}{'*' * (len(text) - 4)}{text[-2:]}"
