"""``replay_journal``: a recorded engine session (its tick journal) through the backtest loop.

A journal row is one tick the engine evaluated: ``time`` (the round), ``stamp`` (the time a trade on
it records), ``stock_code``, ``price``, ``bar_close`` (entries act here) and ``prev_close`` (the
day's price limits); see ``miniqmt_lab.records.read_journal``. Ticks of one time form a round, the
distinct stamps are the bars of the result. The loop is the one ``run_backtest`` uses, so replaying
a journal reproduces what the rules should have done on exactly the ticks the engine saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miniqmt_lab.backtest.core import BacktestResult, simulate
from miniqmt_lab.backtest.nb import BarGrid, TickRounds, limit_table_nb
from miniqmt_lab.backtest.prepare import (
    BarData,
    Entries,
    entry_signals,
    lot_table,
    naive_shanghai,
    rule_settings,
    stock_columns,
)
from miniqmt_lab.config import FeeSettings, RuleSettings
from miniqmt_lab.market import ST_LIMIT_WIDTH, is_st, limit_width
from miniqmt_lab.records import read_journal
from miniqmt_lab.schema import JOURNAL_COLUMNS

DAILY_STAMP = np.timedelta64(15 * 3600, "s")


def replay_journal(
    journal: pd.DataFrame | str | Path,
    params: RuleSettings | Mapping[str, Any] | None = None,
    entries: Entries = "macd",
    init_cash: float = 1_000_000.0,
    realism: bool = True,
    fees: FeeSettings | None = None,
    history: pd.DataFrame | None = None,
) -> BacktestResult:
    """Backtest the ticks of an engine journal (a frame, or the path of a journal file).

    ``entries``: as in ``run_backtest``; ``"macd"`` takes daily closes from the journal's bar-closing
    ticks, after ``history`` (earlier daily closes, date x stock_code) when given: a live session
    journal holds too few days for the averages on its own. ``init_cash``: the cash the session
    started with. ``realism``: apply the price limits from the journal's ``prev_close``.
    """
    if not isinstance(journal, pd.DataFrame):
        journal = read_journal(journal)
    bars, rounds, prev_close = journal_rounds(journal)
    if realism:
        up, down = limit_table_nb(prev_close, bars.width)
    else:
        up = down = np.full(bars.shape, np.nan)
    grid = BarGrid(bars.close, entry_signals(bars, entries, history), up, down, bars.lots)
    rules = rule_settings(params)
    fee_settings = fees or FeeSettings()
    out = simulate(rounds, grid, [rules], fee_settings, init_cash, bars.day_dates)
    return BacktestResult(bars, rules, fee_settings, float(init_cash), "journal", out)


def journal_rounds(journal: pd.DataFrame) -> tuple[BarData, TickRounds, np.ndarray]:
    """(bars, tick rounds, prev_close per bar and stock) of a journal frame.

    Rounds are the distinct tick times (a time whose ticks carry different stamps is split per stamp);
    a bar's open/high/low/close are its first, highest, lowest and last valid tick price, and its
    ``prev_close`` the first one its ticks report. Names (``stock_name``, optional) give ST limits.
    """
    missing = [c for c in JOURNAL_COLUMNS if c not in journal.columns]
    if missing:
        raise ValueError(f"a journal needs column(s) {missing}")
    if journal.empty:
        raise ValueError("the journal holds no ticks")
    codes, col = stock_columns(journal["stock_code"])
    time = naive_shanghai(journal["time"])
    stamp = naive_shanghai(journal["stamp"])
    price = pd.to_numeric(journal["price"]).to_numpy(dtype=np.float64)
    bar_close = journal["bar_close"].to_numpy(dtype=bool)
    reported_prev = pd.to_numeric(journal["prev_close"]).to_numpy(dtype=np.float64)

    bar, stamps = pd.factorize(stamp, sort=True)
    round_keys = pd.MultiIndex.from_arrays([time, bar])
    round_of_row, round_index = pd.factorize(round_keys, sort=True)
    n_rounds, n_bars, n_stocks = len(round_index), len(stamps), len(codes)
    flat = round_of_row * n_stocks + col
    if np.bincount(flat, minlength=n_rounds * n_stocks).max() > 1:
        raise ValueError("the journal holds two ticks of one stock in one round")
    tick_price = np.full(n_rounds * n_stocks, np.nan)
    tick_price[flat] = price
    last_tick = np.zeros(n_rounds * n_stocks, dtype=np.bool_)
    last_tick[flat] = bar_close
    round_time = round_index.get_level_values(0).to_numpy(dtype="datetime64[us]")
    round_bar = round_index.get_level_values(1).to_numpy(dtype=np.int64)
    round_day = pd.factorize(round_time.astype("datetime64[D]"), sort=True)[0].astype(np.int64)

    ticks = pd.DataFrame({"bar": bar, "col": col, "round": round_of_row, "price": price, "prev": reported_prev})
    valid = ticks[ticks["price"] > 0].sort_values("round", kind="stable").groupby(["bar", "col"])["price"]
    ohlc = {name: _bar_grid(getattr(valid, how)(), n_bars, n_stocks)
            for name, how in (("open", "first"), ("high", "max"), ("low", "min"), ("close", "last"))}
    prev_close = _bar_grid(ticks.groupby(["bar", "col"])["prev"].first(), n_bars, n_stocks)

    names = (journal["stock_name"].fillna("").astype(str).to_numpy(dtype=object)
             if "stock_name" in journal.columns else np.full(len(journal), "", dtype=object))
    last_name = pd.Series(names).groupby(col).last().reindex(range(n_stocks), fill_value="")
    width = np.array([ST_LIMIT_WIDTH if is_st(n) else limit_width(c) for c, n in zip(codes, last_name, strict=True)])
    stamp_values = np.asarray(stamps, dtype="datetime64[us]")
    stamp_days = stamp_values.astype("datetime64[D]")
    # one bar a day stamped 15:00 is a replay of daily bars; the frequency sets the annualisation
    daily = bool((stamp_values - stamp_days == DAILY_STAMP).all()) and np.unique(stamp_days).size == n_bars
    bars = BarData(
        index=pd.DatetimeIndex(stamp_values),
        codes=tuple(str(c) for c in codes),
        names=tuple(str(n) for n in last_name),
        freq="1d" if daily else "1m",
        open=ohlc["open"],
        high=ohlc["high"],
        low=ohlc["low"],
        close=ohlc["close"],
        day=pd.factorize(stamp_days, sort=True)[0].astype(np.int64),
        width=np.tile(width, (n_bars, 1)),
        lots=lot_table(codes),
    )
    rounds = TickRounds(tick_price.reshape(n_rounds, n_stocks), last_tick.reshape(n_rounds, n_stocks), round_bar,
                        round_day)
    return bars, rounds, prev_close


def _bar_grid(values: pd.Series, n_bars: int, n_stocks: int) -> np.ndarray:
    """A (bar, col)-indexed series as a (bar x stock) array, NaN where absent."""
    out = np.full((n_bars, n_stocks), np.nan)
    bars = values.index.get_level_values(0).to_numpy()
    cols = values.index.get_level_values(1).to_numpy()
    out[bars, cols] = values.to_numpy(dtype=np.float64)
    return out
