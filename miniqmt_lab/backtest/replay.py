"""``replay_journal``: a recorded engine session (its tick journal) through the backtest loop.

A journal row is one tick the engine evaluated: ``time`` (the round), ``stamp`` (the time a trade on
it records), ``stock_code``, ``price``, ``bar_close`` (entries act here) and ``prev_close`` (the
day's base price); see ``miniqmt_lab.records.read_journal``. Ticks of one time form a round, the
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
from miniqmt_lab.backtest.prepare import (
    BarData,
    Entries,
    day_facts,
    entry_signals,
    naive_shanghai,
    rule_settings,
    stock_columns,
)
from miniqmt_lab.config import FeeSettings, RuleSettings
from miniqmt_lab.market import check_actions, is_st
from miniqmt_lab.marketsim import DAILY_STAMP, TickStream
from miniqmt_lab.marketsim.nb import group_starts_nb, stream_order_nb
from miniqmt_lab.records import read_journal
from miniqmt_lab.schema import JOURNAL_COLUMNS


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

    ``entries``: as in ``run_backtest``; ``"macd"`` takes daily closes from the journal's ticks (each
    stock's last of the day), after ``history`` (earlier daily closes, date x stock_code) when given: a
    live session journal holds too few days for the averages on its own. ``init_cash``: the cash the
    session started with. ``realism``: apply the price limits from the journal's ``prev_close``.
    """
    if not isinstance(journal, pd.DataFrame):
        journal = read_journal(journal)
    data = journal_data(journal)
    rules = rule_settings(params)
    fee_settings = fees or FeeSettings()
    days = day_facts(data, entry_signals(data, entries, history))
    out = simulate(data.stream, days, [rules], fee_settings, init_cash, data.day_dates, realism=realism)
    return BacktestResult(data, rules, fee_settings, float(init_cash), "journal", out)


def journal_data(journal: pd.DataFrame) -> BarData:
    """The row stream of a journal frame: a group per tick round, a row per tick, one tick each.

    Rounds are the distinct tick times (a time whose ticks carry different stamps is split per stamp);
    the distinct stamps are the bars. The day's band comes from the first ``prev_close`` a stock's ticks
    report that day (``limits`` False, where the journal has that column: none); names (``stock_name``,
    optional) give ST limits. A tick without a usable price is skipped, as the engine skipped it.
    """
    missing = [c for c in JOURNAL_COLUMNS if c not in journal.columns]
    if missing:
        raise ValueError(f"a journal needs column(s) {missing}")
    if journal.empty:
        raise ValueError("the journal holds no ticks")
    codes, col = stock_columns(journal["stock_code"])
    time = naive_shanghai(journal["time"])
    stamp = naive_shanghai(journal["stamp"])
    bar, stamps = pd.factorize(stamp, sort=True)
    round_of_row, round_index = pd.factorize(pd.MultiIndex.from_arrays([time, bar]), sort=True)
    order = np.lexsort((col, round_of_row))
    round_sorted, col = round_of_row[order].astype(np.int64), col[order]
    if stream_order_nb(round_sorted, col) > 0:
        raise ValueError("the journal holds two ticks of one stock in one round")
    price = pd.to_numeric(journal["price"]).to_numpy(dtype=np.float64)[order]
    bar_close = journal["bar_close"].to_numpy(dtype=bool)[order]
    reported_prev = pd.to_numeric(journal["prev_close"]).to_numpy(dtype=np.float64)[order]
    limited = (journal["limits"].to_numpy(dtype=bool)[order] if "limits" in journal.columns
               else np.ones(len(journal), dtype=bool))
    start = group_starts_nb(round_sorted)
    round_time = round_index.get_level_values(0).to_numpy(dtype="datetime64[us]")
    round_bar = round_index.get_level_values(1).to_numpy(dtype=np.int64)
    round_day_key = round_time.astype("datetime64[D]")
    day_dates, round_day = np.unique(round_day_key, return_inverse=True)

    names = (journal["stock_name"].fillna("").astype(str).to_numpy(dtype=object)[order]
             if "stock_name" in journal.columns else np.full(len(journal), "", dtype=object))
    last_name = pd.Series(names).groupby(col).last().reindex(range(len(codes)), fill_value="")
    st = np.array([is_st(n) for n in names], dtype=np.bool_)
    row_day = np.repeat(round_day, np.diff(start))
    first = pd.DataFrame({"day": row_day, "col": col, "prev": reported_prev, "limited": limited}).groupby(
        ["day", "col"], sort=False).first()
    bases = np.full((len(day_dates), len(codes)), np.nan)
    days_of, cols_of = first.index.get_level_values(0), first.index.get_level_values(1)
    bases[days_of, cols_of] = np.where(first["limited"].to_numpy(dtype=bool), first["prev"].to_numpy(), np.nan)

    stamp_values = np.asarray(stamps, dtype="datetime64[us]")
    stamp_days = stamp_values.astype("datetime64[D]")
    # one bar a day stamped 15:00 is a replay of daily bars; the frequency sets the annualisation
    at_close = stamp_values - stamp_days == DAILY_STAMP.to_timedelta64()
    daily = bool(at_close.all()) and np.unique(stamp_days).size == len(stamps)
    traded = price > 0.0
    data = BarData(
        codes=tuple(str(c) for c in codes),
        names=tuple(str(n) for n in last_name),
        freq="1d" if daily else "1m",
        index=pd.DatetimeIndex(stamp_values),
        day_dates=day_dates,
        group_times=round_time,
        offsets=np.zeros(1, dtype="timedelta64[us]"),
        stream=TickStream(start, round_bar, round_day.astype(np.int64), col, price, price, price, price, traded,
                          bar_close, 1),
        row_order=order,
        st=st,
        free_until=np.full(len(codes), -1, dtype=np.int64),
        seed_close=np.full(len(codes), np.nan),
        actions=check_actions(None).assign(day=pd.Series(dtype=np.int64), col=pd.Series(dtype=np.int64)),
        act_start=np.zeros(len(day_dates) + 1, dtype=np.int64),
        act_col=np.empty(0, dtype=np.int64),
        act_values=np.empty((0, 4)),
    )
    data.__dict__["bases"] = bases  # the base prices the engine saw, not ones recomputed from the ticks
    return data
