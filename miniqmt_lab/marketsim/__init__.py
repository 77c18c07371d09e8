"""The one market simulation (rules.md, "Bars to ticks" and "Real market data"), called by the engine's
replay feed and by the backtest alike: bars to ticks, suspensions, the base price of each stock and day
(previous traded close, ex-rights reference), the day's band, new listings, and entry signals on each
stock's own traded days.

It imports the market model and the kernel, never the engine or the backtest.
"""

from miniqmt_lab.marketsim.data import (
    MarketData,
    TickStream,
    market_data,
    naive_shanghai,
    stock_columns,
    traded_mask,
    with_ticks,
)
from miniqmt_lab.marketsim.nb import bar_tick_nb, tick_table_nb, traded_rows_nb
from miniqmt_lab.marketsim.ticks import DAILY_STAMP, DAILY_TICK_TIMES, MINUTE_TICK_OFFSETS, tick_offsets

__all__ = [
    "DAILY_STAMP",
    "DAILY_TICK_TIMES",
    "MINUTE_TICK_OFFSETS",
    "MarketData",
    "TickStream",
    "bar_tick_nb",
    "market_data",
    "naive_shanghai",
    "stock_columns",
    "tick_offsets",
    "tick_table_nb",
    "traded_mask",
    "traded_rows_nb",
    "with_ticks",
]
