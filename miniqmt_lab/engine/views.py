"""What the engine shows: frozen snapshots for widgets and status, and the positions table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from miniqmt_lab.engine.book import PositionBook
from miniqmt_lab.rules import RuleParams, dynamic_exit_level_nb, grid_trigger_price_nb, stop_loss_price_nb
from miniqmt_lab.schema import POSITION_COLUMNS, PositionView


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
                    price_time=quote.time if quote is not None else None,
                    market_value=float(s.volume * price),
                    profit_ratio=float(price / s.cost - 1.0) if s.cost > 0 else math.nan,
                    open_date=pos.open_date,
                    tp_done=bool(s.tp_done),
                    high=float(s.high),
                    stop_loss_price=float(stop_loss_price_nb(s.cost, params)),
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
