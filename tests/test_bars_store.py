"""Bar store on real DuckDB files: round trips, upserts, what query() returns, names kept, transactions."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from bars_support import plain, small_bars

from miniqmt_lab.bars import AttachedTable, BarStore, InvalidBarData, bar_columns, sample_bars
from miniqmt_lab.errors import InvalidStockCode
from miniqmt_lab.schema import ACTION_COLUMNS, INSTRUMENT_COLUMNS

REPO = Path(__file__).resolve().parents[1]


def test_write_query_round_trip(tmp_path: Path) -> None:
    bars = sample_bars(n_stocks=6, n_days=30)
    with BarStore(tmp_path / "bars.duckdb") as store:
        assert store.write_frame(bars) == len(bars)
        got = store.query()
    pd.testing.assert_frame_equal(plain(got), bars.reset_index(drop=True), check_dtype=False)
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
        assert store.import_csv(csv).rows == 4
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
        assert store.import_parquet(parquet).rows == len(bars)
        pd.testing.assert_frame_equal(plain(store.query()), bars.reset_index(drop=True), check_dtype=False)


def test_minute_bars_round_trip_and_whole_day_end(tmp_path: Path) -> None:
    minutes = sample_bars(n_stocks=3, n_days=2, freq="1m")
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.write_frame(minutes, "1m")
        got = store.query(freq="1m")
        first_day = store.query(freq="1m", end="2023-01-03")
        window = store.query(codes="600000.SH", start="2023-01-03 10:00", end="2023-01-03 10:04", freq="1m")
        first, last = store.date_range("600000.SH", "1m") or (None, None)
    pd.testing.assert_frame_equal(plain(got), minutes.reset_index(drop=True), check_dtype=False)
    assert len(first_day) == 3 * 240
    assert len(window) == 5
    assert (first, last) == (pd.Timestamp("2023-01-03 09:31"), pd.Timestamp("2023-01-04 15:00"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=["close"]), r"lack column\(s\) \['close'\]"),
        (lambda df: df.assign(close=[10.5, np.nan, 10.3, 19.2]), "missing or not finite"),
        (lambda df: df.assign(low=[9.9, 19.5, 0.0, 19.0]), "not positive on a traded row.*row 2"),
        (lambda df: df.assign(low=[9.9, 19.5, -1.0, 19.0]), "a price is negative.*row 2"),
        (lambda df: df.assign(high=[9.0, 20.5, 10.9, 20.0]), r"high < low in 1 row\(s\); first is row 0 \(600000.SH"),
        (lambda df: df.assign(open=[11.0, 20.0, 10.5, 19.8]), r"open or close outside \[low, high\]"),
        (lambda df: df.assign(volume=[1.0, -5.0, 1.0, 1.0]), "volume is missing or negative"),
        (lambda df: df.assign(close=[10.5, 19.8, "x", 19.2]), "row 2: close 'x' is not a number"),
        (lambda df: df.assign(date=["2024-01-02", None, "2024-01-03", "2024-01-03"]), "row 1: bar time is missing"),
        (lambda df: df.assign(date=["1970-01-01"] * 4), "before the A-share market opened"),
        (
            lambda df: df.assign(date=["2024-01-02", "2024-01-32", "2024-01-03", "2024-01-03"]),
            "row 1: bar time '2024-01-32' is not a real date",
        ),
        (lambda df: df.assign(date=["2024-01-02", "next monday", "2024-01-03", "2024-01-03"]), "cannot read the date"),
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


# -- what query() returns -----------------------------------------------------------------------------


def test_query_gives_what_a_backtest_needs(tmp_path: Path) -> None:
    bars = sample_bars(n_stocks=8, n_days=40).sample(frac=1.0, random_state=3)  # written in no order
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.write_frame(bars)
        got = store.query(["600000.SH", "300001.SZ", "000001.SZ"], start="2023-01-10")
    assert isinstance(got["stock_code"].dtype, pd.CategoricalDtype)
    assert isinstance(got["stock_name"].dtype, pd.CategoricalDtype)
    assert list(got["stock_code"].cat.categories) == ["000001.SZ", "300001.SZ", "600000.SH"]
    assert set(got["stock_name"].cat.categories) == set(got["stock_name"].astype(str))
    assert all(got[c].dtype == np.float64 for c in ("open", "high", "low", "close", "volume", "amount"))
    assert pd.api.types.is_datetime64_dtype(got["date"])
    keys = pd.DataFrame({"date": got["date"], "code": got["stock_code"].astype(str)})
    assert keys.equals(keys.sort_values(["date", "code"]).reset_index(drop=True))
    assert got["date"].min() == pd.Timestamp("2023-01-10")


def test_empty_query_has_the_columns_dtypes_and_attrs(tmp_path: Path) -> None:
    with BarStore(tmp_path / "bars.duckdb") as store:
        for got in (store.query(), store.query(codes=[]), store.query(freq="1m")):
            assert got.empty
            assert isinstance(got["stock_code"].dtype, pd.CategoricalDtype)
            assert list(got.attrs["actions"].columns) == list(ACTION_COLUMNS)
            assert list(got.attrs["instruments"].columns) == list(INSTRUMENT_COLUMNS)


def test_attached_tables_survive_what_users_do_with_bars(tmp_path: Path) -> None:
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.write_frame(small_bars())
        dividend = {"stock_code": ["600000.SH"], "ex_date": ["2024-01-03"], "cash_dividend": [0.2]}
        store.write_actions(pd.DataFrame(dividend))
        bars = store.query()
        other = store.query("000001.SZ")
    actions = bars.attrs["actions"]
    assert isinstance(actions, AttachedTable) and len(actions) == 1
    derived = [
        bars[bars["stock_code"] == "600000.SH"],
        bars.iloc[:2],
        bars.copy(),
        copy.deepcopy(bars),
        bars.sort_values("close"),
        pd.concat([bars.iloc[:2], bars.iloc[2:]]),
        pickle.loads(pickle.dumps(bars)),
    ]
    for frame in derived:
        assert frame.attrs["actions"].equals(actions)
    assert derived[0].attrs["actions"] is actions  # shared, not copied, for every slice of whole-market bars
    # parts of two different queries: pandas drops attrs that differ instead of failing
    assert pd.concat([bars, other]).attrs == {}
    assert isinstance(actions[actions["cash_dividend"] > 0], pd.DataFrame)


def test_reimport_without_names_keeps_stored_names(tmp_path: Path) -> None:
    csv = tmp_path / "bars.csv"
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.write_frame(small_bars().assign(stock_name=["*ST甲", "乙", "*ST甲", "乙"]))
        small_bars().drop(columns=["stock_name"]).assign(close=[10.4, 19.8, 10.3, 19.2]).to_csv(csv, index=False)
        store.import_csv(csv)
        got = store.query()
    assert got["stock_name"].astype(str).tolist() == ["乙", "*ST甲", "乙", "*ST甲"]
    assert got["close"].iloc[1] == 10.4


def test_new_bars_without_names_take_the_instrument_or_latest_name(tmp_path: Path) -> None:
    later = small_bars().drop(columns=["stock_name"]).assign(date=["2024-01-04"] * 2 + ["2024-01-05"] * 2)
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.write_frame(small_bars().assign(stock_name=["ST甲", "乙", "ST甲", "乙"]))
        store.write_instruments(pd.DataFrame({"stock_code": ["000001.SZ"], "stock_name": ["平安银行"]}))
        store.write_frame(later)
        got = store.query(start="2024-01-04")
    names = dict(zip(got["stock_code"].astype(str), got["stock_name"].astype(str), strict=False))
    assert names == {"600000.SH": "ST甲", "000001.SZ": "平安银行"}


def test_a_refused_import_loses_nothing_stored(tmp_path: Path) -> None:
    good, bad = tmp_path / "600000.SH.csv", tmp_path / "000001.SZ.csv"
    small_bars().iloc[[0, 2]].drop(columns=["stock_code"]).assign(close=[10.6, 10.4]).to_csv(good, index=False)
    small_bars().iloc[[1, 3]].drop(columns=["stock_code"]).assign(high=[20.5, 18.0]).to_csv(bad, index=False)
    path = tmp_path / "bars.duckdb"
    with BarStore(path) as store:
        store.write_frame(small_bars())
        before = store.query()
        with pytest.raises(InvalidBarData, match=r"000001.SZ.csv line 3"):
            store.import_files(tmp_path)
        pd.testing.assert_frame_equal(store.query(), before)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM stock_daily_data").fetchone() == (4,)


def test_a_failed_write_rolls_back(tmp_path: Path) -> None:
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.write_frame(small_bars())
        with store._transaction() as con:  # the transaction every write runs in
            con.execute("DELETE FROM stock_daily_data")
        assert store.query().empty
        store.write_frame(small_bars())
        with pytest.raises(duckdb.Error), store._transaction() as con:
            con.execute("DELETE FROM stock_daily_data")
            con.execute("INSERT INTO stock_daily_data (stock_code, date) VALUES (NULL, NULL)")
        assert len(store.query()) == 4


def test_an_older_store_without_side_tables_reads_as_having_none(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE stock_daily_data (stock_code VARCHAR NOT NULL, stock_name VARCHAR, date DATE NOT NULL,"
            " open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, amount DOUBLE,"
            " PRIMARY KEY (stock_code, date))"
        )
        con.execute(
            "INSERT INTO stock_daily_data VALUES"
            " ('600000.SH', '浦发银行', '2024-01-02', 10, 10.8, 9.9, 10.5, 1000, 10400)"
        )
    with BarStore(path, read_only=True) as store:
        got = store.query()
        assert len(got) == 1 and got.attrs["actions"].empty and got.attrs["instruments"].empty
        assert store.actions().empty and store.instruments().empty
        assert len(store.query(adjust="front")) == 1
