"""Long bar frames to the arrays of the simulation loop: the bar grid, tick rounds, limits, entries, params.

Stocks become columns in ascending code order (the order of work in a round), bars become rows.
A missing bar (a suspension) stays NaN and gives that stock no tick.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from miniqmt_lab.backtest.nb import BarGrid, TickRounds, limit_table_nb, ohlc_rounds_nb, prev_close_nb
from miniqmt_lab.config import FIELD_SECTION, RuleSettings, Settings
from miniqmt_lab.indicators import macd_entries
from miniqmt_lab.market import ST_LIMIT_WIDTH, is_st, limit_width, lot_rule, normalize_code

TickMode = Literal["ohlc", "close"]
Entries = str | pd.DataFrame | np.ndarray
DAILY_CLOSE = pd.Timedelta(hours=15)
BARS_PER_YEAR = {"1d": 252, "1m": 252 * 240}


@dataclass(frozen=True, eq=False)
class BarData:
    """Bars as (bar x stock) arrays; build with :func:`prepare_bars` and reuse across runs."""

    index: pd.DatetimeIndex  # bar stamps: 15:00 of the date for daily bars, the bar time for minute bars
    codes: tuple[str, ...]  # ascending
    names: tuple[str, ...]  # each stock's last name
    freq: str  # "1d" or "1m"
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    day: np.ndarray  # (n_bars,) trading day number
    width: np.ndarray  # (n_bars, n_stocks) price-limit width from code and name (ST)
    lots: np.ndarray  # (n_stocks, 3) each board's LotRule (min buy, step, min sell)

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape

    @functools.cached_property
    def day_dates(self) -> np.ndarray:
        """The date of each trading day number (``datetime64[D]``), for the fee rates of the day."""
        dates = self.index.normalize().to_numpy(dtype="datetime64[D]")
        out = np.empty(int(self.day.max()) + 1 if self.day.size else 0, dtype="datetime64[D]")
        out[self.day] = dates
        return out

    # Derived arrays are computed on first use and kept: a BarData is built to be backtested often.

    @functools.cached_property
    def ohlc_rounds(self) -> TickRounds:
        price, last_tick = ohlc_rounds_nb(self.open, self.high, self.low, self.close)
        n_bars = self.shape[0]
        return TickRounds(price, last_tick, np.repeat(np.arange(n_bars, dtype=np.int64), 4), np.repeat(self.day, 4))

    @functools.cached_property
    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(up-limit, down-limit) of every bar and stock (parity rule 5)."""
        return limit_table_nb(prev_close_nb(self.close, self.day), self.width)

    @functools.cached_property
    def macd_entries(self) -> np.ndarray:
        return _macd_signals(self, None)

    def close_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.close, index=self.index, columns=pd.Index(self.codes, name="stock_code"))


def prepare_bars(bars: pd.DataFrame | BarData) -> BarData:
    """Pivot a long bar frame (``stock_code``, ``date`` or ``time``, ``open``..``close``) to arrays."""
    if isinstance(bars, BarData):
        return bars
    if "time" in bars.columns:
        freq, time_column = "1m", "time"
    elif "date" in bars.columns:
        freq, time_column = "1d", "date"
    else:
        raise ValueError("bars need a 'date' column (daily bars) or a 'time' column (minute bars)")
    missing = [c for c in ("stock_code", "open", "high", "low", "close") if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {missing}")
    if bars.empty:
        raise ValueError("bars are empty")

    codes, col_of_row = stock_columns(bars["stock_code"])
    times = naive_shanghai(bars[time_column])
    if freq == "1d":
        times = times.astype("datetime64[D]").astype("datetime64[us]")
    bar_times, row_of_row = _factorize(times)
    n_bars, n_stocks = len(bar_times), len(codes)
    flat = row_of_row * n_stocks + col_of_row
    if np.bincount(flat, minlength=n_bars * n_stocks).max() > 1:
        raise ValueError("bars hold more than one row for some (stock_code, bar time)")

    def grid_of(values: np.ndarray) -> np.ndarray:
        out = np.full(n_bars * n_stocks, np.nan)
        out[flat] = values
        return out.reshape(n_bars, n_stocks)

    prices = {c: grid_of(bars[c].to_numpy(dtype=np.float64)) for c in ("open", "high", "low", "close")}
    if "stock_name" in bars.columns:
        names, name_of_row = _factorize(bars["stock_name"].fillna("").to_numpy(dtype=object))
    else:
        names, name_of_row = np.array([""], dtype=object), np.zeros(len(bars), dtype=np.int64)
    board_width = np.array([limit_width(c) for c in codes])
    st_row = np.array([is_st(str(n)) for n in names], dtype=bool)[name_of_row]
    # a bar's own name decides ST; bars that are missing keep the board's width
    width = np.tile(board_width, n_bars)
    width[flat] = np.where(st_row, ST_LIMIT_WIDTH, board_width[col_of_row])
    width = width.reshape(n_bars, n_stocks)
    by_stock_then_time = np.lexsort((row_of_row, col_of_row))
    latest_row = by_stock_then_time[np.r_[np.diff(col_of_row[by_stock_then_time]) != 0, True]]

    index = pd.DatetimeIndex(bar_times)
    if freq == "1d":
        index = index + DAILY_CLOSE
        day = np.arange(n_bars, dtype=np.int64)
    else:
        day = pd.factorize(index.normalize())[0].astype(np.int64)
    return BarData(
        index=index,
        codes=tuple(str(c) for c in codes),
        names=tuple(str(n) for n in names[name_of_row[latest_row]]),
        freq=freq,
        open=prices["open"],
        high=prices["high"],
        low=prices["low"],
        close=prices["close"],
        day=day,
        width=width,
        lots=lot_table(codes),
    )


def lot_table(codes: Iterable[str]) -> np.ndarray:
    """(n_stocks, 3) int64: each code's LotRule (min buy, step, min sell) for the loop."""
    return np.array([tuple(lot_rule(c)) for c in codes], dtype=np.int64).reshape(-1, 3)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted uniques, code of each value)."""
    codes, uniques = pd.factorize(values, sort=True)
    return np.asarray(uniques), codes.astype(np.int64)


def stock_columns(stock_codes: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(normalized codes in ascending order, column of each row): the order of work in a round."""
    raw, code_of_row = _factorize(stock_codes.to_numpy(dtype=object))
    normalized = np.array([normalize_code(c) for c in raw], dtype=object)
    codes = np.unique(normalized)
    return codes, np.searchsorted(codes, normalized)[code_of_row]


def naive_shanghai(values: pd.Series | pd.Index) -> np.ndarray:
    """Times as naive Asia/Shanghai datetime64[us] (aware times are converted, naive ones kept)."""
    stamps = pd.DatetimeIndex(pd.to_datetime(values))
    if stamps.tz is not None:
        stamps = stamps.tz_convert("Asia/Shanghai").tz_localize(None)
    return stamps.to_numpy(dtype="datetime64[us]")


def tick_rounds(bars: BarData, tick_mode: TickMode = "ohlc") -> TickRounds:
    """Bars to tick rounds (parity rule 1): O, L, H, C when close >= open, else O, H, L, C; or C only."""
    if tick_mode == "close":
        return TickRounds(bars.close, bars.close > 0.0, np.arange(bars.shape[0], dtype=np.int64), bars.day)
    if tick_mode != "ohlc":
        raise ValueError(f"tick_mode must be 'ohlc' or 'close', got {tick_mode!r}")
    return bars.ohlc_rounds


def bar_grid(bars: BarData, entries: np.ndarray, *, limits: bool) -> BarGrid:
    """Valuation closes, entry signals, the day's price limits (parity rule 5) and min buys."""
    if limits:
        up, down = bars.limits
    else:
        up = down = np.full(bars.shape, np.nan)
    return BarGrid(bars.close, entries, up, down, bars.lots)


def entry_signals(bars: BarData, entries: Entries, history: pd.DataFrame | None = None) -> np.ndarray:
    """Entry signals as a (bar x stock) bool array.

    ``"macd"``: MACD 12/26/9 golden cross on daily closes, on the day's last bar (``history``:
    earlier daily closes, date x stock_code, for the averages to start from). ``"always"``: every
    bar (a holding opens on the first bar and again after every full exit). ``"none"``: never. Or a
    boolean frame (bar time x stock_code; dates match daily bars) or an array shaped like the bars.
    """
    if isinstance(entries, pd.DataFrame):
        return _align_entry_frame(bars, entries)
    if isinstance(entries, np.ndarray):
        if entries.shape != bars.shape:
            raise ValueError(f"an entries array must be shaped like the bars {bars.shape}, got {entries.shape}")
        return entries.astype(np.bool_)
    if entries == "always":
        return np.ones(bars.shape, dtype=np.bool_)
    if entries == "none":
        return np.zeros(bars.shape, dtype=np.bool_)
    if entries == "macd":
        return bars.macd_entries if history is None else _macd_signals(bars, history)
    raise ValueError(f"entries must be 'macd', 'always', 'none', a boolean DataFrame or array, got {entries!r}")


def _macd_signals(bars: BarData, history: pd.DataFrame | None) -> np.ndarray:
    if bars.freq == "1d" and history is None:
        return np.asarray(macd_entries(bars.close), dtype=np.bool_)
    # one cross per day from each day's last close, acted on at that day's last bar of the stock
    closes = bars.close_frame()
    daily_close = closes.groupby(bars.day).last().to_numpy()
    n_days = daily_close.shape[0]
    if history is not None:
        first_day = bars.index[0].normalize()
        earlier = history.rename(columns=normalize_code).set_axis(naive_shanghai(history.index), axis=0)
        earlier = earlier[earlier.index < first_day].reindex(columns=list(bars.codes))
        daily_close = np.vstack([earlier.to_numpy(dtype=np.float64), daily_close])
    crosses = np.asarray(macd_entries(daily_close), dtype=np.bool_)[-n_days:]
    has_bar = closes.notna().to_numpy()
    bar_no = np.where(has_bar, np.arange(bars.shape[0])[:, None], -1)
    last_bar_of_day = pd.DataFrame(bar_no).groupby(bars.day).max().to_numpy()
    out = np.zeros(bars.shape, dtype=np.bool_)
    day_idx, stock_idx = np.nonzero(crosses & (last_bar_of_day >= 0))
    out[last_bar_of_day[day_idx, stock_idx], stock_idx] = True
    return out


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
