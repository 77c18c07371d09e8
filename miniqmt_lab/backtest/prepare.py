"""Long bar frames to what the simulation loop reads: the market simulation's row stream, entries, params.

Bars stay in the frame's rows (sorted by bar time and code, as the bar store returns them); stocks are
columns in ascending code order (the order of work in a round). Suspensions give no ticks, no fills and
no entries; base prices, bands, new listings, corporate actions and MACD entries on each stock's own days
come from :mod:`miniqmt_lab.marketsim`, the same code the engine's replay feed calls.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from miniqmt_lab.backtest.nb import DayFacts
from miniqmt_lab.config import FIELD_SECTION, RuleSettings, Settings
from miniqmt_lab.market import ST_LIMIT_WIDTH, normalize_code
from miniqmt_lab.marketsim import MarketData, TickStream, market_data, naive_shanghai, stock_columns, with_ticks

TickMode = Literal["ohlc", "close"]
Entries = str | pd.DataFrame | np.ndarray
BARS_PER_YEAR = {"1d": 252, "1m": 252 * 240}

BarData = MarketData
"""Bars prepared once for many backtests (:func:`prepare_bars`): the market simulation's row stream."""

__all__ = [
    "BARS_PER_YEAR",
    "BarData",
    "Entries",
    "TickMode",
    "day_facts",
    "entry_signals",
    "grid_combinations",
    "naive_shanghai",
    "prepare_bars",
    "rule_settings",
    "stock_columns",
    "tick_stream",
]


def prepare_bars(
    bars: pd.DataFrame | BarData,
    *,
    actions: pd.DataFrame | None = None,
    instruments: pd.DataFrame | None = None,
) -> BarData:
    """The row stream of a long bar frame (``stock_code``, ``date`` or ``time``, ``open``..``close``).

    ``actions`` (corporate actions) and ``instruments`` (listing dates) default to the frame's
    ``attrs`` as the bar store sets them; a prepared :class:`BarData` already holds its own.
    """
    if isinstance(bars, MarketData):
        if actions is not None or instruments is not None:
            raise ValueError("prepared bars hold their actions and instruments: pass them to prepare_bars")
        return bars
    return market_data(bars, actions=actions, instruments=instruments)


def tick_stream(bars: BarData, tick_mode: TickMode = "ohlc") -> TickStream:
    """Bars to ticks (rules.md): O, L, H, C when close >= open, else O, H, L, C; or the close only."""
    if tick_mode not in ("ohlc", "close"):
        raise ValueError(f"tick_mode must be 'ohlc' or 'close', got {tick_mode!r}")
    return with_ticks(bars, 4 if tick_mode == "ohlc" else 1).stream


def day_facts(bars: BarData, entries: np.ndarray) -> DayFacts:
    """The day's base prices and widths (limits and the bad-tick test), corporate actions, board sizes and
    entry signals."""
    return DayFacts(bars.bases, bars.st, bars.board_width, ST_LIMIT_WIDTH, bars.act_start, bars.act_col,
                    bars.act_values, bars.lots, entries)


def entry_signals(bars: BarData, entries: Entries, history: pd.DataFrame | None = None) -> np.ndarray:
    """Entry signals, one per row of the stream (acted on at the row's last tick).

    ``"macd"``: MACD 12/26/9 golden cross on each stock's own daily closes (suspended days absent), on
    the day's last bar of the stock (``history``: earlier daily closes, date x stock_code, for the
    averages to start from). ``"always"``: every bar (a holding opens on the first bar and again after
    every full exit). ``"none"``: never. Or a boolean frame (bar time x stock_code; dates match daily
    bars) or an array shaped like the bars (bars x stocks).
    """
    if isinstance(entries, pd.DataFrame):
        return _rows_of_grid(bars, _align_entry_frame(bars, entries))
    if isinstance(entries, np.ndarray):
        if entries.shape != bars.shape:
            raise ValueError(f"an entries array must be shaped like the bars {bars.shape}, got {entries.shape}")
        return _rows_of_grid(bars, entries.astype(np.bool_))
    if entries == "always":
        return np.ones(bars.n_rows, dtype=np.bool_)
    if entries == "none":
        return np.zeros(bars.n_rows, dtype=np.bool_)
    if entries == "macd":
        return bars.macd_entries(None if history is None else _history_closes(bars, history))
    raise ValueError(f"entries must be 'macd', 'always', 'none', a boolean DataFrame or array, got {entries!r}")


def _rows_of_grid(bars: BarData, grid: np.ndarray) -> np.ndarray:
    rows = bars.stream
    return grid[np.repeat(rows.group_bar, np.diff(rows.start)), rows.col]


def _history_closes(bars: BarData, history: pd.DataFrame) -> np.ndarray:
    """Earlier daily closes (date x stock_code) before the bars' first day, as (days x stocks) in code order."""
    first_day = bars.index[0].normalize()
    earlier = history.rename(columns=normalize_code).set_axis(naive_shanghai(history.index), axis=0)
    earlier = earlier[earlier.index < first_day].sort_index().reindex(columns=list(bars.codes))
    return np.ascontiguousarray(earlier.to_numpy(dtype=np.float64))


def _align_entry_frame(bars: BarData, frame: pd.DataFrame) -> np.ndarray:
    frame = frame.rename(columns=normalize_code)
    index = pd.DatetimeIndex(naive_shanghai(frame.index))
    target = bars.index
    if bars.freq == "1d":
        index, target = index.normalize(), target.normalize()
    aligned = frame.set_axis(index, axis=0).astype(bool).reindex(index=target, columns=list(bars.codes),
                                                                 fill_value=False)
    return aligned.to_numpy(dtype=np.bool_)


def rule_settings(params: RuleSettings | Mapping[str, Any] | None) -> RuleSettings:
    """A RuleSettings from itself, a dict of flat RuleSettings field names, or None (defaults)."""
    if params is None:
        return RuleSettings()
    if isinstance(params, RuleSettings):
        return params
    unknown = [k for k in params if FIELD_SECTION.get(k) != "rules"]
    if unknown:
        raise ValueError(f"not RuleSettings fields: {unknown}")
    return Settings().with_values(**dict(params)).rules


def grid_combinations(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Cartesian product of ``{flat RuleSettings field: list of values}``, in the grid's key order.

    Every entry lists values, also for tuple fields: ``{"grid_levels": [(0.93, 0.86), (0.95,)]}``.
    """
    if not grid:
        raise ValueError("the sweep grid is empty")
    unknown = [k for k in grid if FIELD_SECTION.get(k) != "rules"]
    if unknown:
        raise ValueError(f"not RuleSettings fields: {unknown}")
    values = []
    for name, options in grid.items():
        if isinstance(options, str) or not isinstance(options, Iterable):
            raise ValueError(f"sweep grid {name!r}: expected a list of values, got {options!r}")
        values.append(list(options))
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*values)]
