"""What the engine shows: frozen snapshots for widgets and status, and the positions table."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from miniqmt_lab.engine.book import PositionBook
from miniqmt_lab.engine.interfaces import BrokerStatus
from miniqmt_lab.rules import RuleParams, dynamic_exit_level_nb, grid_trigger_price_nb

POSITION_COLUMNS = (
    "stock_code",
    "stock_name",
    "volume",
    "available",
    "cost",
    "base_cost",
    "price",
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


@dataclass(frozen=True, slots=True)
class PositionView:
    stock_code: str
    stock_name: str
    volume: int
    available: int
    cost: float
    base_cost: float
    price: float
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


def position_views(book: PositionBook, params: RuleParams) -> tuple[PositionView, ...]:
    """Every holding with the price levels the rules will act at (computed by the kernel)."""
    views = []
    with book.lock:
        for code in sorted(book.positions):
            pos = book.positions[code]
            s = pos.state
            quote = book.quotes.get(code)
            price = quote.price if quote is not None else s.cost
            views.append(
                PositionView(
                    stock_code=code,
                    stock_name=pos.name or (quote.name if quote is not None else ""),
                    volume=int(s.volume),
                    available=int(s.available),
                    cost=float(s.cost),
                    base_cost=float(s.base_cost),
                    price=float(price),
                    market_value=float(s.volume * price),
                    profit_ratio=float(price / s.cost - 1.0) if s.cost > 0 else math.nan,
                    open_date=pos.open_date,
                    tp_done=bool(s.tp_done),
                    high=float(s.high),
                    stop_loss_price=float(s.cost * (1.0 + params.stop_loss_ratio)),
                    dynamic_exit_level=float(dynamic_exit_level_nb(s.high, s.cost, params)) if s.tp_done else math.nan,
                    next_grid_price=float(grid_trigger_price_nb(s, params)),
                    grid_k=int(s.grid_k),
                )
            )
    return tuple(views)


def positions_frame(views: tuple[PositionView, ...]) -> pd.DataFrame:
    frame = pd.DataFrame([{c: getattr(v, c) for c in POSITION_COLUMNS} for v in views], columns=list(POSITION_COLUMNS))
    if frame.empty:
        return frame.astype({"volume": np.int64, "available": np.int64, "grid_k": np.int64, "tp_done": bool})
    return frame
