"""The seeded synthetic sample: deterministic, valid store input, realistic enough for the benchmarks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from miniqmt_lab.bars import SYNTHETIC_NOTICE, bar_columns, default_store, sample_bars, sample_codes, trading_days
from miniqmt_lab.market import Board, board_of, limit_prices


@pytest.fixture(scope="module")
def daily() -> pd.DataFrame:
    return sample_bars()


def test_sample_is_deterministic(daily: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(sample_bars(), daily)
    assert not sample_bars(seed=8)["close"].equals(daily["close"])


def test_sample_is_valid_store_input(daily: pd.DataFrame) -> None:
    assert list(daily.columns) == bar_columns("1d")
    assert daily["stock_name"].str.startswith("合成样本").all()
    assert "synthetic" in SYNTHETIC_NOTICE.lower()
    sorted_daily = daily.sort_values(["date", "stock_code"], ignore_index=True)
    pd.testing.assert_frame_equal(daily, sorted_daily)


def test_sample_ohlc_consistent_and_cents(daily: pd.DataFrame) -> None:
    o, h, lo, c = (daily[k].to_numpy() for k in ("open", "high", "low", "close"))
    assert (lo > 0).all()
    assert ((lo <= np.minimum(o, c)) & (np.maximum(o, c) <= h)).all()
    for prices in (o, h, lo, c):
        np.testing.assert_allclose(prices, np.round(prices, 2), rtol=0, atol=1e-9)
    volume = daily["volume"].to_numpy()
    assert (volume > 0).all() and (volume % 100 == 0).all()
    vwap = daily["amount"].to_numpy() / volume
    assert ((vwap >= lo - 0.01) & (vwap <= h + 0.01)).all()


def test_sample_respects_price_limits_and_hits_them(daily: pd.DataFrame) -> None:
    prev = daily.groupby("stock_code")["close"].shift()
    rows = daily[prev.notna()]
    limits = [limit_prices(code, p) for code, p in zip(rows["stock_code"], prev[prev.notna()], strict=True)]
    up = np.array([u for u, _ in limits])
    down = np.array([d for _, d in limits])
    assert (rows["high"].to_numpy() <= up + 1e-9).all()
    assert (rows["low"].to_numpy() >= down - 1e-9).all()
    assert np.isclose(rows["close"].to_numpy(), up).sum() >= 5
    assert np.isclose(rows["close"].to_numpy(), down).sum() >= 5
    gaps = np.abs(rows["open"].to_numpy() / prev[prev.notna()].to_numpy() - 1)
    assert (gaps > 0.03).sum() >= 10


def test_sample_has_a_suspended_stretch(daily: pd.DataFrame) -> None:
    days = trading_days("2023-01-03", 500)
    assert (daily["date"].drop_duplicates().to_numpy() == days.to_numpy()).all()
    per_stock = daily.groupby("stock_code")["date"].nunique()
    suspended = per_stock[per_stock < len(days)]
    assert len(suspended) == 1
    stored = daily.loc[daily["stock_code"].eq(suspended.index[0]), "date"]
    missing = days.difference(pd.DatetimeIndex(stored))
    assert len(missing) >= 3
    # one contiguous stretch of trading days
    positions = days.get_indexer(missing)
    assert (np.diff(positions) == 1).all()


def test_sample_covers_all_boards(daily: pd.DataFrame) -> None:
    boards = {board_of(code) for code in daily["stock_code"].unique()}
    assert boards == set(Board)
    assert sum(code.endswith(".BJ") for code in sample_codes(20)) == 1
    assert len(set(sample_codes(500))) == 500


def test_sample_days_follow_the_xshg_calendar() -> None:
    days = trading_days("2024-02-05", 10)
    # Spring Festival 2024: the exchange was closed from Feb 9 to Feb 16
    assert pd.Timestamp("2024-02-08") in days
    assert not any(pd.Timestamp(f"2024-02-{d}") in days for d in range(9, 17))
    assert pd.Timestamp("2024-02-19") in days


def test_sample_has_volatility_clustering() -> None:
    bars = sample_bars(n_stocks=30, n_days=800)
    abs_returns = bars.groupby("stock_code")["close"].pct_change().abs()
    autocorr = bars.assign(r=abs_returns).groupby("stock_code")["r"].apply(lambda s: s.autocorr(1))
    assert autocorr.mean() > 0.05


def test_minute_sample_aggregates_to_daily() -> None:
    minutes = sample_bars(n_stocks=6, n_days=3, freq="1m")
    assert list(minutes.columns) == bar_columns("1m")
    assert (minutes.groupby("stock_code").size() == 3 * 240).all()
    clock = minutes["time"].dt.strftime("%H:%M").unique().tolist()
    assert clock[0] == "09:31" and clock[119] == "11:30" and clock[120] == "13:01" and clock[-1] == "15:00"
    assert len(clock) == 240
    day = minutes.assign(date=minutes["time"].dt.normalize()).groupby(["date", "stock_code"])
    rebuilt = day.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    expected = sample_bars(n_stocks=6, n_days=3).set_index(["date", "stock_code"])[rebuilt.columns]
    pd.testing.assert_frame_equal(rebuilt, expected, check_names=False)
    assert (
        (minutes["low"] <= minutes[["open", "close"]].min(axis=1))
        & (minutes[["open", "close"]].max(axis=1) <= minutes["high"])
    ).all()


def test_sample_has_the_benchmarks_shape() -> None:
    # its speed is measured by bench/backtest.py, not asserted here (a loaded machine would fail a timing)
    bars = sample_bars(n_stocks=500, n_days=1000)
    assert bars["stock_code"].nunique() == 500 and bars["date"].nunique() == 1000


def test_default_store_fills_an_empty_store_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="miniqmt_lab.bars.sample"):
        store = default_store(tmp_path / "data")
    assert (tmp_path / "data" / "bars.duckdb").exists()
    assert "SYNTHETIC DATA" in caplog.text
    assert len(store.codes()) == 20
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="miniqmt_lab.bars.sample"):
        again = default_store(tmp_path / "data")
    assert "SYNTHETIC" not in caplog.text
    assert len(again.query()) == len(store.query())
    store.close()
    again.close()
