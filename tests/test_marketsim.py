"""The one market simulation: what the engine's replay feed and the backtest both read from it."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from miniqmt_lab.bars import sample_bars
from miniqmt_lab.engine.entries import MacdEntries, macd_bar_entries
from miniqmt_lab.engine.replay import ReplayFeed, bars_to_ticks
from miniqmt_lab.errors import InvalidStockCode
from miniqmt_lab.market import SHANGHAI
from miniqmt_lab.marketsim import market_data, traded_mask

DAYS = pd.bdate_range("2024-03-04", periods=10)


def frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["stock_code", "stock_name", "date", "open", "high", "low", "close", "volume"])


def test_replay_ticks_carry_the_base_price_skip_suspensions_and_free_new_listings():
    bars = frame([
        ("600000.SH", "", DAYS[0], 30.0, 30.0, 30.0, 30.0, 1e5),
        ("600000.SH", "", DAYS[1], 0.0, 0.0, 0.0, 30.0, 0.0),  # a vendor's suspension row
        ("600000.SH", "", DAYS[2], 21.0, 21.5, 20.9, 21.2, 1e5),  # the ex-date
        ("301555.SZ", "新股", DAYS[2], 20.0, 28.0, 20.0, 25.0, 1e6),
    ])
    bars.attrs["actions"] = pd.DataFrame({"stock_code": ["600000.SH"], "ex_date": [DAYS[1]],
                                          "cash_dividend": [0.35], "bonus_ratio": [0.4]})
    bars.attrs["instruments"] = pd.DataFrame({"stock_code": ["301555.SZ"], "listing_date": [DAYS[2]]})
    table = bars_to_ticks(bars, "close")
    rows = list(zip(table.codes, table.prev_close, table.limits, table.stamps, strict=True))
    # the suspension gives no tick; the action of the suspended ex-date carries to the next traded day:
    # (30 - 0.35) / 1.4 = 21.18
    assert [(c, None if math.isnan(p) else p, lim) for c, p, lim, _ in rows] == [
        ("600000.SH", None, True), ("301555.SZ", None, False), ("600000.SH", 21.18, True)]
    feed = ReplayFeed.from_bars(bars, tick_mode="ohlc")
    ticks = [t for i in range(feed.n_rounds) for t in feed.table.round_at(i).ticks]
    assert {t.code for t in ticks if not t.limits} == {"301555.SZ"}
    assert [t.price for t in ticks if t.code == "301555.SZ"] == [20.0, 20.0, 28.0, 25.0]
    assert ticks[-1].time == dt.datetime(2024, 3, 6, 14, 57, tzinfo=SHANGHAI)


def test_unsorted_frames_categorical_and_vendor_codes_give_the_same_stream():
    bars = sample_bars(6, 40, seed=2)
    reference = market_data(bars)
    shuffled = bars.sample(frac=1.0, random_state=1)
    shuffled["stock_code"] = shuffled["stock_code"].str.replace(".SH", ".XSHG").str.replace(".SZ", ".XSHE")
    shuffled["stock_code"] = shuffled["stock_code"].astype("category")
    other = market_data(shuffled)
    assert other.codes == reference.codes
    for field in ("col", "open", "high", "low", "close", "traded", "start", "group_day"):
        assert np.array_equal(getattr(other.stream, field), getattr(reference.stream, field)), field
    assert np.array_equal(other.bases, reference.bases, equal_nan=True)
    assert np.array_equal(other.macd_entries(), reference.macd_entries())
    named = bars_to_ticks(shuffled)
    assert list(named.names[:3]) == list(bars_to_ticks(bars).names[:3])


def test_a_frame_with_a_fund_says_what_it_is():
    bars = frame([("510300.SH", "沪深300ETF", DAYS[0], 4.0, 4.0, 4.0, 4.0, 1e6)])
    with pytest.raises(InvalidStockCode, match=r"510300\.SH is a fund"):
        market_data(bars)


def test_traded_mask_is_the_suspension_test():
    bars = frame([
        ("600000.SH", "", DAYS[0], 10.0, 10.0, 10.0, 10.0, 1e5),
        ("600000.SH", "", DAYS[1], 10.0, 10.0, 10.0, 10.0, 0.0),
        ("600000.SH", "", DAYS[2], 0.0, 10.0, 10.0, 10.0, 1e5),
        ("600000.SH", "", DAYS[3], np.nan, 10.0, 10.0, 10.0, 1e5),
    ])
    assert traded_mask(bars).tolist() == [True, False, False, False]


def test_live_macd_entries_equal_the_simulation_on_the_same_closes():
    bars = sample_bars(5, 160, seed=9)
    data = market_data(bars)
    replayed = macd_bar_entries(data)
    closes = bars.pivot(index="date", columns="stock_code", values="close").sort_index()
    live = MacdEntries(lambda: closes)
    live.refresh()
    hits = 0
    for code in closes.columns:
        series = closes[code].dropna()
        for day, price in series.iloc[30:].items():
            stamp = dt.datetime.combine(day.date(), dt.time(15, 0))
            expected = replayed.is_entry(code, stamp, float(price))
            assert live.is_entry(code, stamp.replace(tzinfo=SHANGHAI), float(price)) == expected, (code, day)
            hits += expected
    assert hits >= 5
