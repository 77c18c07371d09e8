"""The neutral layer: names, columns and record types that every part of the product shares.

This module imports nothing else of the package, so the kernel, the engine, the backtest, the QMT
adapters, the web service and the panels can all speak it without importing one another.

* one enum namespace: :class:`Rule` (kernel rule codes), :class:`Blocked` (why a fired rule came out
  as no action), :class:`Outcome` (what became of a signal), :class:`Side`, :class:`OrderStatus`,
  :class:`TradingState`;
* constants defined once: :data:`LOT`, the record columns, the summary metrics, the tick modes;
* market data and broker records: :class:`Tick`, :class:`TickRound`, orders, fills, broker events;
* what an engine shows: :class:`EngineSnapshot`, :class:`PositionView`, :class:`ThreadHealth`.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Literal

LOT = 100
"""Shares in a board lot (main boards and ChiNext buy in whole lots)."""

HISTORY_DAYS = 400
"""Calendar days of daily closes the live MACD entries load (EMA26 and EMA9 settle well within), and
what a live feed refreshes into the bar store each day."""

TickMode = Literal["ohlc", "close"]
TICK_MODES: tuple[TickMode, ...] = ("ohlc", "close")

# -- rules, kernel outcomes, signal outcomes ----------------------------------------------------------


class Rule(IntEnum):
    """Kernel rule codes; ``label`` is the name trade and signal records carry."""

    NONE = 0
    STOP_LOSS = 1
    TP_INITIAL = 2
    TP_DYNAMIC = 3
    GRID_BUY = 4
    ENTRY = 5
    MANUAL = 6

    @property
    def label(self) -> str:
        return RULE_NAMES[self]

    @property
    def sells(self) -> bool:
        return self in (Rule.STOP_LOSS, Rule.TP_INITIAL, Rule.TP_DYNAMIC)

    @classmethod
    def of(cls, label: str) -> Rule:
        """The rule of a record's name; anything unknown is a hand-placed order."""
        return _RULE_OF_LABEL.get(label, cls.MANUAL)


RULE_NAMES = ("", "stop_loss", "take_profit_initial", "take_profit_dynamic", "grid_buy", "entry", "manual")
_RULE_OF_LABEL = {name: Rule(code) for code, name in enumerate(RULE_NAMES) if name}


class Blocked(IntEnum):
    """The kernel's outcome of a fired rule: OK, or why its order came out as no action."""

    OK = 0
    NOTHING_AVAILABLE = 1  # a sell rule fired but no share may be sold (T+1) or it rounds to 0
    PRICE_LIMIT = 2  # buy at/above the up-limit or sell at/below the down-limit
    ZERO_LOT = 3  # a buy that rounds below the board's minimum (position_unit too small at this price)
    MAX_POSITION = 4  # max_position_value leaves no room for the board's minimum buy
    NO_CASH = 5  # cash does not cover the board's minimum buy plus fees

    @property
    def label(self) -> str:
        return BLOCKED_NAMES[self]

    @property
    def message(self) -> str:
        return _BLOCKED_MESSAGES[self]


BLOCKED_NAMES = ("ok", "nothing_available", "price_limit", "zero_lot", "max_position", "no_cash")
_BLOCKED_MESSAGES = (
    "",
    "no share may be sold now (T+1, board minimum or reserved by an order)",
    "blocked by the day's price limit",
    "position_unit buys less than the board's minimum at this price",
    "max_position_value leaves no room for the board's minimum buy",
    "cash does not cover the board's minimum buy with fees",
)


class Outcome(StrEnum):
    """What became of a signal: the ``outcome`` column of the signals table (live and backtest)."""

    PENDING = "pending"  # detected, handed to execution
    SUBMITTED = "submitted"  # the order is at the broker, no fill yet
    EXECUTED = "executed"  # filled
    PARTIAL = "partially_executed"  # part filled, the rest cancelled or refused by the broker
    NOT_EXECUTED = "not_executed"  # auto trading is off, or the engine stopped first
    STALE = "stale"  # older than signal_stale_seconds at execution
    DUPLICATE = "duplicate"  # the same (stock, rule, holding state) ran within signal_repeat_seconds
    REJECTED = "rejected"  # refused by the pre-trade check, validation or the broker; the message says why
    FAILED = "failed"  # execution raised; the message says why
    INTERRUPTED = "interrupted"  # the engine stopped before the broker confirmed the order
    UNKNOWN = "unknown"  # the submit did not answer in time: the order may be at the broker
    # a rule fired but its order came out as no action (Blocked)
    NOTHING_AVAILABLE = BLOCKED_NAMES[1]
    PRICE_LIMIT = BLOCKED_NAMES[2]
    ZERO_LOT = BLOCKED_NAMES[3]
    MAX_POSITION = BLOCKED_NAMES[4]
    NO_CASH = BLOCKED_NAMES[5]

    @classmethod
    def blocked(cls, code: int) -> Outcome:
        return cls(BLOCKED_NAMES[code])


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @classmethod
    def of_rule(cls, rule: int) -> Side:
        return cls.SELL if Rule(rule).sells else cls.BUY


class OrderStatus(StrEnum):
    SUBMITTED = "submitted"  # xtquant 48/49
    REPORTED = "reported"  # 50, 51 (cancel requested)
    PARTIAL = "partial"  # 55, and 52 (part filled, cancel pending: more fills may come)
    FILLED = "filled"  # 56
    PARTIAL_CANCELLED = "partial_cancelled"  # 53
    CANCELLED = "cancelled"  # 54
    REJECTED = "rejected"  # 57
    UNKNOWN = "unknown"  # 255
    EXPIRED = "expired"  # a paper order still resting at the session close

    @property
    def final(self) -> bool:
        return self in _FINAL_STATUSES


_FINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.PARTIAL_CANCELLED, OrderStatus.CANCELLED, OrderStatus.REJECTED,
     OrderStatus.EXPIRED}
)


class TradingState(StrEnum):
    """The kill switch every order passes: ``active`` trades, ``reducing`` only sells, ``halted`` nothing."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


# -- record columns -------------------------------------------------------------------------------------

TRADE_COLUMNS = ("time", "stock_code", "side", "price", "volume", "amount", "commission", "rule")
"""Schema of ``Engine.trades()`` and ``BacktestResult.trades``: the two are compared row by row."""

SIGNAL_COLUMNS = ("id", "time", "stock_code", "rule", "side", "price", "volume", "outcome", "message")
"""Schema of ``Engine.signals()``; ``BacktestResult.signals`` has the same columns but ``id``."""

JOURNAL_COLUMNS = ("time", "stamp", "stock_code", "price", "bar_close", "prev_close")
"""Schema of a session journal (``read_journal``)."""

ACTION_COLUMNS = ("stock_code", "ex_date", "cash_dividend", "bonus_ratio", "rights_ratio", "rights_price")
"""Corporate actions, one row per stock and ex-date: cash dividend (yuan per share, before tax), bonus plus
transferred shares per share, rights per share and the rights price (rules, "Real market data")."""

INSTRUMENT_COLUMNS = ("stock_code", "stock_name", "listing_date")
"""What is known of a stock beyond its bars; the listing date lifts price limits on its first five days."""

EVENT_COLUMNS = ("time", "stock_code", "kind", "volume_before", "volume_after", "cash", "message")
"""Schema of corporate-action events applied to holdings (not trades): ``kind`` 'ex_rights'."""

SUMMARY_METRICS = ("total_return", "max_drawdown", "sharpe", "trades", "win_rate")
"""The metrics of ``BacktestResult.summary`` and of each row of a sweep table."""

POSITION_COLUMNS = (
    "stock_code",
    "stock_name",
    "volume",
    "available",
    "cost",
    "base_cost",
    "price",
    "price_time",
    "market_value",
    "profit_ratio",
    "open_date",
    "tp_done",
    "high",
    "stop_loss_price",
    "dynamic_exit_level",
    "next_grid_price",
    "grid_k",
)


# -- market data -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """One observed price of one stock.

    ``time`` is when it was observed (aware Asia/Shanghai). ``stamp`` is what a trade made on this
    tick records as its time: the tick time live, the bar's time in replay (rules, bars to ticks).
    ``bar_close`` marks a bar's last tick, where entry signals are acted on. ``prev_close`` is the
    day's base price of the price limits (the previous traded close, or the ex-rights reference on an
    ex-date; NaN: none known). ``limits`` False: the stock has no price limits today (new listing).
    """

    code: str
    price: float
    time: dt.datetime
    stamp: dt.datetime | None = None
    bar_close: bool = False
    prev_close: float = math.nan
    name: str = ""
    limits: bool = True

    @property
    def trade_time(self) -> dt.datetime:
        return self.stamp if self.stamp is not None else self.time


@dataclass(frozen=True, slots=True)
class TickRound:
    """Ticks sharing one time, processed in ascending stock-code order (rules, order of work)."""

    time: dt.datetime
    ticks: tuple[Tick, ...]


# -- orders and broker events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRequest:
    code: str
    side: Side
    volume: int
    price: float | None  # None: latest price (market-like); a number: limit price
    rule: str  # a RULE_NAMES label
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


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker reports it when asked (``Broker.orders``): how an order whose submit
    timed out is found again, by the signal id it carries."""

    order_id: str
    code: str
    side: Side
    volume: int
    filled_volume: int
    price: float
    status: OrderStatus
    signal_id: str = ""


@dataclass(slots=True)
class BrokerStatus:
    connected: bool
    name: str
    message: str = ""
    account: str = ""  # masked
    outages: int = 0
    live: bool = False  # the broker reaches a real account
    details: dict[str, object] = field(default_factory=dict)


def mask_account(account_id: str) -> str:
    """Account ids are never shown whole: keep the first two and last two characters."""
    text = str(account_id or "")
    if len(text) <= 4:
        return "*" * len(text)
    return f"{text[:2]}{'*' * (len(text) - 4)}{text[-2:]}"


# -- what an engine shows -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PositionView:
    stock_code: str
    stock_name: str
    volume: int
    available: int
    cost: float
    base_cost: float
    price: float
    price_time: dt.datetime | None  # when ``price`` was seen (restored prices keep their old time)
    market_value: float
    profit_ratio: float
    open_date: dt.date | None
    tp_done: bool
    high: float
    stop_loss_price: float
    dynamic_exit_level: float  # NaN until the first take-profit ran, or when no tier is reached
    next_grid_price: float  # NaN when the grid is off or used up
    grid_k: int


@dataclass(frozen=True, slots=True)
class ThreadHealth:
    name: str
    state: str
    alive: bool
    last_heartbeat: float | None  # epoch seconds of the last loop turn
    restarts: int


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    version: int
    time: dt.datetime | None  # engine clock time; None before a replay clock has any
    mode: str  # 'paper' or 'live'
    auto_trading: bool
    running: bool
    cash: float
    total_asset: float
    positions: tuple[PositionView, ...]
    threads: tuple[ThreadHealth, ...]
    broker: BrokerStatus
    last_error: str
    trading_state: str = TradingState.ACTIVE.value
    state_reason: str = ""
    database: str = ""  # full path of the open engine database


__all__ = [
    "ACTION_COLUMNS",
    "BLOCKED_NAMES",
    "EVENT_COLUMNS",
    "HISTORY_DAYS",
    "INSTRUMENT_COLUMNS",
    "JOURNAL_COLUMNS",
    "LOT",
    "POSITION_COLUMNS",
    "RULE_NAMES",
    "SIGNAL_COLUMNS",
    "SUMMARY_METRICS",
    "TICK_MODES",
    "TRADE_COLUMNS",
    "Blocked",
    "BrokerAsset",
    "BrokerError",
    "BrokerEvent",
    "BrokerOrder",
    "BrokerPosition",
    "BrokerStatus",
    "ConnectionChanged",
    "EngineSnapshot",
    "Fill",
    "OrderRequest",
    "OrderStatus",
    "OrderUpdate",
    "Outcome",
    "PositionView",
    "Rule",
    "Side",
    "ThreadHealth",
    "Tick",
    "TickMode",
    "TickRound",
    "TradingState",
    "mask_account",
]
