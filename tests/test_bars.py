"""Bar store on real DuckDB files, and the synthetic sample generator."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from miniqmt_lab.bars import (
    SYNTHETIC_NOTICE,
    BarStore,
    InvalidBarData,
    bar_columns,
    default_store,
    sample_bars,
    sample_codes,
    trading_days,
)
from miniqmt_lab.errors import InvalidStockCode
from miniqmt_lab.market import Board, board_of, limit_prices

REPO = Path(__file__).resolve().parents[1]


def small_bars() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stock_code": ["600000.SH", "000001.SZ", "600000.SH", "000001.SZ"],
            "stock_name": ["甲", "乙", "甲", "乙"],
            "date": ["2024-01-02", "2024-01-02", "2024-01-03", "2024-01-03"],
            "open": [10.0, 20.0, 10.5, 19.8],
            "high": [10.8, 20.5, 10.9, 20.0],
            "low": [9.9, 19.5, 10.2, 19.0],
            "close": [10.5, 19.8, 10.3, 19.2],
            "volume": [1000.0, 2000.0, 1500.0, 2500.0],
            "amount": [10_400.0, 39_600.0, 15_600.0, 48_500.0],
        }
    )


@pytest.fixture(scope="module")
def daily() -> pd.DataFrame:
    return sample_bars()


# -- store --------------------------------------------------------------------------------------------


def test_write_query_round_trip(tmp_path: Path) -> None:
    bars = sample_bars(n_stocks=6, n_days=30)
    with BarStore(tmp_path / "bars.duckdb") as store:
        assert store.write_frame(bars) == len(bars)
        got = store.query()
    pd.testing.assert_frame_equal(got, bars.reset_index(drop=True))
    assert list(got.columns) == bar_columns("1d")


def test_query_filters_and_sort_order(tmp_path: Path) -> None:
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.write_frame(small_bars())
        got = store.query(codes="600000", start="2024-01-03")
        assert got["stock_code"].tolist() == ["600000.SH"]
        assert got["date"].tolist() == [pd.Timestamp("2024-01-03")]
        both = store.query(codes=["600000.SH", "000001.SZ"], end="2024-01-02")
        assert both["stock_code"].tolist() == ["000001.SZ", "600000.SH"]
        assert store.query(codes=[]).empty
        assert store.codes() == ["000001.SZ", "600000.SH"]
        assert store.date_range("600000.SH") == (pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03"))
        assert store.date_range("600004.SH") is None
        assert store.codes("1m") == []


def test_upsert_replaces_and_never_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "bars.duckdb"
    with BarStore(path) as store:
        store.write_frame(small_bars())
        store.write_frame(small_bars())
        changed = small_bars().iloc[[0]].assign(close=10.6, high=10.8)
        store.write_frame(changed)
        got = store.query()
    assert len(got) == 4
    assert got.loc[got["stock_code"].eq("600000.SH"), "close"].tolist() == [10.6, 10.3]
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM stock_daily_data").fetchone() == (4,)


def test_duplicates_inside_one_frame_keep_the_last(tmp_path: Path) -> None:
    bars = pd.concat([small_bars(), small_bars().iloc[[1]].assign(close=20.0)])
    with BarStore(":memory:") as store:
        assert store.write_frame(bars) == 4
        assert store.query(codes="000001.SZ", end="2024-01-02")["close"].tolist() == [20.0]


def test_codes_are_normalized_and_names_optional() -> None:
    bars = (
        small_bars()
        .drop(columns=["stock_name", "amount"])
        .assign(stock_code=["sh600000", "000001", "600000", "SZ000001"])
    )
    with BarStore(":memory:") as store:
        store.write_frame(bars)
        got = store.query()
    assert sorted(set(got["stock_code"])) == ["000001.SZ", "600000.SH"]
    assert got["stock_name"].isna().all() and got["amount"].isna().all()


def test_import_csv(tmp_path: Path) -> None:
    csv = tmp_path / "bars.csv"
    bars = small_bars().assign(stock_code=["600000", "000001", "600000", "000001"])
    bars.to_csv(csv, index=False)
    with BarStore(tmp_path / "bars.duckdb") as store:
        assert store.import_csv(csv) == 4
        assert store.codes() == ["000001.SZ", "600000.SH"]  # leading zeros survive the CSV
        store.import_csv(csv)
        assert len(store.query()) == 4


def test_numeric_yyyymmdd_dates_are_dates_not_nanoseconds(tmp_path: Path) -> None:
    csv = tmp_path / "bars.csv"
    small_bars().assign(date=[20240102, 20240102, 20240103, 20240103]).to_csv(csv, index=False)
    with BarStore(":memory:") as store:
        store.import_csv(csv)
        assert store.date_range("600000.SH") == (pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03"))


def test_import_parquet(tmp_path: Path) -> None:
    parquet = tmp_path / "bars.parquet"
    bars = sample_bars(n_stocks=5, n_days=10)
    with duckdb.connect() as con:
        con.register("bars", bars)
        con.execute(f"COPY bars TO '{parquet}' (FORMAT parquet)")
    with BarStore(tmp_path / "bars.duckdb") as store:
        assert store.import_parquet(parquet) == len(bars)
        pd.testing.assert_frame_equal(store.query(), bars.reset_index(drop=True))


def test_minute_bars_round_trip_and_whole_day_end(tmp_path: Path) -> None:
    minutes = sample_bars(n_stocks=3, n_days=2, freq="1m")
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.write_frame(minutes, "1m")
        got = store.query(freq="1m")
        first_day = store.query(freq="1m", end="2023-01-03")
        window = store.query(codes="600000.SH", start="2023-01-03 10:00", end="2023-01-03 10:04", freq="1m")
        first, last = store.date_range("600000.SH", "1m") or (None, None)
    pd.testing.assert_frame_equal(got, minutes.reset_index(drop=True))
    assert len(first_day) == 3 * 240
    assert len(window) == 5
    assert (first, last) == (pd.Timestamp("2023-01-03 09:31"), pd.Timestamp("2023-01-04 15:00"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=["close"]), r"lack column\(s\) \['close'\]"),
        (lambda df: df.assign(close=[10.5, np.nan, 10.3, 19.2]), "missing or not finite"),
        (lambda df: df.assign(low=[9.9, 19.5, 0.0, 19.0]), "not positive"),
        (lambda df: df.assign(high=[9.0, 20.5, 10.9, 20.0]), r"high < low in 1 row\(s\); first is row 0 \(600000.SH"),
        (lambda df: df.assign(open=[11.0, 20.0, 10.5, 19.8]), r"open or close outside \[low, high\]"),
        (lambda df: df.assign(volume=[1.0, -5.0, 1.0, 1.0]), "volume is missing or negative"),
        (lambda df: df.assign(close=["a", "b", "c", "d"]), "'close' is not numeric"),
        (lambda df: df.assign(date=["2024-01-02", None, "2024-01-03", "2024-01-03"]), "bar time is missing"),
        (lambda df: df.assign(date=["1970-01-01"] * 4), "before the A-share market opened"),
        (
            lambda df: df.assign(date=["2024-01-02", "2024-01-99", "2024-01-03", "2024-01-03"]),
            "bar times cannot be parsed",
        ),
    ],
)
def test_bad_bars_are_refused_with_a_clear_message(
    change: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    with BarStore(":memory:") as store:
        with pytest.raises(InvalidBarData, match=message):
            store.write_frame(change(small_bars()))
        assert store.query().empty


@pytest.mark.parametrize("code", ["999999.SH", "600000.SZ", "000300.SH", "BTCUSD"])
def test_invalid_stock_codes_are_refused(code: str) -> None:
    with BarStore(":memory:") as store, pytest.raises(InvalidStockCode, match="invalid stock code"):
        store.write_frame(small_bars().assign(stock_code=code))


def test_invalid_freq() -> None:
    with BarStore(":memory:") as store, pytest.raises(ValueError, match="freq"):
        store.query(freq="5m")  # type: ignore[arg-type]


def test_read_only_store_in_this_and_another_process(tmp_path: Path) -> None:
    path = tmp_path / "bars.duckdb"
    writer = BarStore(path)
    writer.write_frame(small_bars())
    # the writer stays open: it must not keep the file locked between calls
    with BarStore(path, read_only=True) as reader:
        assert len(reader.query()) == 4
        with pytest.raises(PermissionError):
            reader.write_frame(small_bars())
    script = textwrap.dedent(
        f"""
        from miniqmt_lab.bars import BarStore
        with BarStore({str(path)!r}, read_only=True) as store:
            print(len(store.query()), store.codes())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "4 ['000001.SZ', '600000.SH']"
    writer.write_frame(small_bars().assign(close=[10.4, 19.8, 10.3, 19.2]))
    assert writer.query()["close"].iloc[1] == 10.4
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.query()


def test_read_only_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        BarStore(tmp_path / "missing.duckdb", read_only=True)


# -- sample generator ---------------------------------------------------------------------------------


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


def test_sample_is_fast_enough_for_the_benchmark() -> None:
    sample_bars(n_stocks=5, n_days=5)  # calendar loaded once
    started = time.perf_counter()
    bars = sample_bars(n_stocks=500, n_days=1000)
    assert time.perf_counter() - started < 1.0
    assert bars["stock_code"].nunique() == 500


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
