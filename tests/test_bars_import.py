"""Importing vendor files a user can trust: layouts, units, dates that cannot be misread, codes from file
names, suspension rows, whole-market dumps with B-shares and funds, one clear error per bad file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bars_support import small_bars, write_text

from miniqmt_lab.bars import AmbiguousDates, BarStore, ImportReport, InvalidBarData, suspended_mask
from miniqmt_lab.errors import InvalidStockCode

TUSHARE_DAILY = """
ts_code,trade_date,open,high,low,close,pre_close,change,pct_chg,vol,amount
600000.SH,20240105,6.62,6.70,6.60,6.66,6.62,0.04,0.6042,315478.53,209808.571
600000.SH,20240104,6.63,6.65,6.57,6.62,6.64,-0.02,-0.3012,281245.00,185935.337
600000.SH,20240103,6.60,6.66,6.58,6.64,6.59,0.05,0.7587,304568.40,201618.001
"""

# East Money through akshare: 成交量 in lots (手), 成交额 in yuan, code without exchange
EASTMONEY_DAILY = """
日期,股票代码,开盘,收盘,最高,最低,成交量,成交额,振幅,涨跌幅,涨跌额,换手率
2024-01-02,000001,9.39,9.21,9.42,9.21,1158366,1075742252.15,2.24,-1.92,-0.18,0.6
2024-01-03,000001,9.19,9.20,9.22,9.15,733610,673016425.17,0.76,-0.11,-0.01,0.38
"""

# a terminal export: full Chinese names, units in the header, GBK on Chinese Windows
TERMINAL_DAILY = """
日期,股票代码,名称,开盘价,最高价,最低价,收盘价,成交量(股),成交额(元)
2024/1/2,600519,贵州茅台,1715.00,1718.19,1678.10,1685.01,3215644,5440082000
2024/1/3,600519,贵州茅台,1681.11,1695.22,1676.33,1694.00,2022526,3418410000
"""

# one stock per file, no code column: the code is in the file name
PER_STOCK = """
date,open,high,low,close,volume,amount
2024-01-02,10.00,10.80,9.90,10.50,1000,10400
2024-01-03,10.50,10.90,10.20,10.30,1500,15600
"""

# 603003.SH suspended for two days: the vendor writes zero open/high/low, the close carried, volume 0
WITH_SUSPENSION = """
stock_code,stock_name,date,open,high,low,close,volume,amount
603003.SH,龙宇股份,2024-05-06,5.10,5.20,5.05,5.12,2103400,10797830
603003.SH,龙宇股份,2024-05-07,0,0,0,5.12,0,0
603003.SH,龙宇股份,2024-05-08,0.00,0.00,0.00,0.00,0,0
603003.SH,龙宇股份,2024-05-09,5.00,5.15,4.95,5.05,3320100,16766000
"""

# a whole-market dump: A-shares with B-shares, funds, a bond and an index in the same file
WHOLE_MARKET = """
stock_code,date,open,high,low,close,volume,amount
600000.SH,2024-01-02,6.58,6.62,6.55,6.59,25000000,164750000
900901.SH,2024-01-02,0.30,0.31,0.30,0.30,1200000,360000
000001.SZ,2024-01-02,9.39,9.42,9.21,9.21,115836600,1075742252
200002.SZ,2024-01-02,3.10,3.12,3.05,3.06,900000,2754000
510300.SH,2024-01-02,3.50,3.52,3.46,3.47,600000000,2082000000
159915.SZ,2024-01-02,1.90,1.91,1.86,1.86,300000000,558000000
113050.SH,2024-01-02,101.0,101.5,100.6,100.9,150000,15135000
000300.SH,2024-01-02,3430.0,3435.0,3382.0,3386.0,9000000000,30474000000000
600000.SH,2024-01-03,6.59,6.66,6.58,6.64,30456840,201618001
510300.SH,2024-01-03,3.47,3.49,3.44,3.45,550000000,1897500000
"""


def dd_mm(days: list[str]) -> str:
    rows = [f"{day},10.00,10.50,9.80,10.20,1000,10200" for day in days]
    return "date,open,high,low,close,volume,amount\n" + "\n".join(rows)


# -- layouts and units --------------------------------------------------------------------------------


def test_tushare_daily_files_come_in_shares_and_yuan(tmp_path: Path) -> None:
    csv = write_text(tmp_path / "daily.csv", TUSHARE_DAILY)
    with BarStore(tmp_path / "bars.duckdb") as store:
        report = store.import_csv(csv)
        got = store.query()
    assert report.rows == 3 and report.skipped == ()
    assert got["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-03", "2024-01-04", "2024-01-05"]
    np.testing.assert_allclose(got["volume"], [30_456_840.0, 28_124_500.0, 31_547_853.0])
    np.testing.assert_allclose(got["amount"], [201_618_001.0, 185_935_337.0, 209_808_571.0])
    vwap = got["amount"] / got["volume"]
    assert ((vwap >= got["low"]) & (vwap <= got["high"])).all()


def test_chinese_headers_with_volume_in_lots_are_recognised(tmp_path: Path) -> None:
    csv = write_text(tmp_path / "000001.csv", EASTMONEY_DAILY)
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.import_csv(csv)
        got = store.query()
    assert got["stock_code"].astype(str).tolist() == ["000001.SZ", "000001.SZ"]
    assert got[["open", "high", "low", "close"]].iloc[0].tolist() == [9.39, 9.42, 9.21, 9.21]
    assert got["volume"].tolist() == [115_836_600.0, 73_361_000.0]


def test_chinese_headers_with_units_in_gbk(tmp_path: Path) -> None:
    csv = write_text(tmp_path / "export.csv", TERMINAL_DAILY, encoding="gbk")
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.import_csv(csv)
        got = store.query()
    assert got["stock_name"].astype(str).unique().tolist() == ["贵州茅台"]
    assert got["volume"].tolist() == [3_215_644.0, 2_022_526.0]
    assert got["date"].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]


def test_a_volume_unit_that_cannot_be_told_is_asked_for(tmp_path: Path) -> None:
    no_amount = """
    日期,开盘,收盘,最高,最低,成交量
    2024-01-02,9.39,9.21,9.42,9.21,1158366
    2024-01-03,9.19,9.20,9.22,9.15,733610
    """
    csv = write_text(tmp_path / "000001.SZ.csv", no_amount)
    with BarStore(tmp_path / "bars.duckdb") as store:
        with pytest.raises(InvalidBarData, match=r"000001.SZ.csv: cannot tell whether 成交量 .*volume_unit='lots'"):
            store.import_csv(csv)
        assert store.query().empty
        store.import_csv(csv, volume_unit="lots")
        assert store.query()["volume"].tolist() == [115_836_600.0, 73_361_000.0]


def test_units_that_disagree_are_refused_with_a_hint(tmp_path: Path) -> None:
    lots = small_bars().assign(volume=[10.0, 20.0, 15.0, 25.0])
    csv = tmp_path / "bars.csv"
    lots.to_csv(csv, index=False)
    with BarStore(tmp_path / "bars.duckdb") as store:
        with pytest.raises(InvalidBarData, match=r"bars.csv: amount and volume disagree.*volume_unit='lots'"):
            store.import_csv(csv)
        assert store.import_csv(csv, volume_unit="lots").rows == 4
        assert store.query()["volume"].sum() == 7000.0


# -- dates --------------------------------------------------------------------------------------------


def test_day_month_dates_with_no_day_above_12_are_refused(tmp_path: Path) -> None:
    csv = write_text(tmp_path / "600000.SH.csv", dd_mm(["02/01/2024", "03/01/2024", "04/01/2024", "05/01/2024",
                                                       "08/01/2024"]))
    with BarStore(tmp_path / "bars.duckdb") as store:
        with pytest.raises(AmbiguousDates, match=r"600000.SH.csv: .*date_format='%d/%m/%Y'.*date_format='%m/%d/%Y'"):
            store.import_csv(csv)
        assert store.query().empty
        store.import_csv(csv, date_format="%d/%m/%Y")
        got = store.query()["date"]
    assert got.dt.strftime("%Y-%m-%d").tolist() == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05",
                                                    "2024-01-08"]


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (["11/01/2024", "12/01/2024", "15/01/2024"], ["2024-01-11", "2024-01-12", "2024-01-15"]),
        (["01/11/2024", "01/12/2024", "01/15/2024"], ["2024-01-11", "2024-01-12", "2024-01-15"]),
    ],
)
def test_day_month_order_is_taken_from_a_day_above_12(tmp_path: Path, days: list[str], expected: list[str]) -> None:
    csv = write_text(tmp_path / "600000.SH.csv", dd_mm(days))
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.import_csv(csv)
        assert store.query()["date"].dt.strftime("%Y-%m-%d").tolist() == expected


@pytest.mark.parametrize(
    "days",
    [
        ["2024-01-02", "2024-01-03"],
        ["2024/1/2", "2024/1/3"],
        ["20240102", "20240103"],
        ["2024年1月2日", "2024年1月3日"],
        ["2024-01-02 00:00:00", "2024-01-03 00:00:00"],
    ],
)
def test_iso_and_yyyymmdd_dates_are_read(tmp_path: Path, days: list[str]) -> None:
    csv = write_text(tmp_path / "600000.SH.csv", dd_mm(days))
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.import_csv(csv)
        assert store.date_range("600000.SH") == (pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03"))


def test_minute_times_with_a_zone_are_shanghai_times(tmp_path: Path) -> None:
    text = (
        "time,open,high,low,close,volume,amount\n"
        "2024-01-02T09:31:00+08:00,10.00,10.05,9.98,10.02,10000,100200\n"
        "2024-01-02T01:32:00Z,10.02,10.06,10.01,10.05,8000,80300\n"
    )
    csv = write_text(tmp_path / "sh600000.csv", text)
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.import_csv(csv, "1m")
        got = store.query(freq="1m")
    assert got["time"].tolist() == [pd.Timestamp("2024-01-02 09:31"), pd.Timestamp("2024-01-02 09:32")]


def test_an_unreadable_date_names_the_file_and_the_option(tmp_path: Path) -> None:
    csv = write_text(tmp_path / "600000.SH.csv", dd_mm(["Jan 2 2024", "Jan 3 2024"]))
    unreadable = r"600000\.SH\.csv: .*date_format="
    with BarStore(tmp_path / "bars.duckdb") as store, pytest.raises(InvalidBarData, match=unreadable):
        store.import_csv(csv)


# -- codes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [("600000.SH.csv", "600000.SH"), ("sh600000.csv", "600000.SH"), ("SZ#000001.csv", "000001.SZ"),
     ("000001.csv", "000001.SZ"), ("300750_SZ_daily.txt", "300750.SZ")],
)
def test_a_per_stock_file_takes_its_code_from_its_name(tmp_path: Path, name: str, code: str) -> None:
    csv = write_text(tmp_path / name, PER_STOCK)
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.import_csv(csv)
        assert store.codes() == [code]


def test_a_per_stock_file_takes_its_code_from_the_argument(tmp_path: Path) -> None:
    csv = write_text(tmp_path / "daily.csv", PER_STOCK)
    with BarStore(tmp_path / "bars.duckdb") as store:
        with pytest.raises(InvalidBarData, match=r"daily.csv: the file has no stock code column.*stock_code="):
            store.import_csv(csv)
        store.import_csv(csv, stock_code="sz000001")
        assert store.codes() == ["000001.SZ"]
        with pytest.raises(InvalidBarData, match="other codes"):
            store.import_csv(write_text(tmp_path / "both.csv", TUSHARE_DAILY), stock_code="000001.SZ")


def test_a_whole_market_dump_fails_whole_or_skips_what_is_not_an_a_share(tmp_path: Path) -> None:
    csv = write_text(tmp_path / "market.csv", WHOLE_MARKET)
    with BarStore(tmp_path / "bars.duckdb") as store:
        with pytest.raises(InvalidStockCode, match=r"market.csv line 3: invalid stock code '900901.SH'"):
            store.import_csv(csv)
        assert store.query().empty
        report = store.import_csv(csv, on_invalid="skip")
        assert store.codes() == ["000001.SZ", "600000.SH"]
    assert isinstance(report, ImportReport)
    assert report.rows == 3 and report.rows_skipped == 7
    skipped_codes = {code for group in report.skipped for code in group.codes}
    assert skipped_codes == {"900901.SH", "200002.SZ", "510300.SH", "159915.SZ", "113050.SH", "000300.SH"}
    assert all(not re.search(r"\d{6}", group.reason) for group in report.skipped)
    assert "skipped" in str(report) and "900901.SH" in str(report)


def test_a_folder_of_per_stock_files_with_a_fund_among_them(tmp_path: Path) -> None:
    folder = tmp_path / "daily"
    folder.mkdir()
    for name in ("600000.SH.csv", "000001.SZ.csv", "510300.SH.csv"):
        write_text(folder / name, PER_STOCK)
    (folder / "readme.md").write_text("not bars")
    with BarStore(tmp_path / "bars.duckdb") as store:
        with pytest.raises(InvalidStockCode, match=r"510300\.SH\.csv"):
            store.import_files(folder)
        report = store.import_files(folder, on_invalid="skip")
        assert store.codes() == ["000001.SZ", "600000.SH"]
    assert report.rows == 4 and report.rows_skipped == 2 and len(report.files) == 3
    assert report.skipped[0].codes == ("510300.SH",)


# -- suspensions and garbage --------------------------------------------------------------------------


def test_vendor_suspension_rows_are_stored_as_suspended(tmp_path: Path) -> None:
    csv = write_text(tmp_path / "603003.csv", WITH_SUSPENSION)
    with BarStore(tmp_path / "bars.duckdb") as store:
        assert store.import_csv(csv).rows == 4
        got = store.query()
    assert suspended_mask(got).tolist() == [False, True, True, False]
    assert got["volume"].tolist()[1:3] == [0.0, 0.0]
    assert got[["open", "high", "low"]].iloc[1:3].isna().all().all()
    assert got["close"].iloc[1] == 5.12 and np.isnan(got["close"].iloc[2])
    assert got["stock_name"].astype(str).unique().tolist() == ["龙宇股份"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("5.00,5.15,4.95,5.05,3320100", "5.00,5.15,-4.95,5.05,3320100"), r"a price is negative .* line 5"),
        (("5.10,5.20,5.05,5.12,2103400", "5.10,5.00,5.05,5.12,2103400"), r"high < low .* line 2"),
        (("0,0,0,5.12,0,0", "0,0,0,5.12,500,0"), r"not positive on a traded row .* line 3"),
        (("2024-05-08", "2024-05-38"), r"line 4: bar time '2024-05-38' is not a real date"),
        (("3320100,16766000", "3.3M,16766000"), r"line 5: volume '3.3M' is not a number"),
    ],
)
def test_garbage_fails_with_the_file_and_line_named(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    csv = write_text(tmp_path / "603003.csv", WITH_SUSPENSION.replace(*change, 1))
    with BarStore(tmp_path / "bars.duckdb") as store:
        store.write_frame(small_bars())
        with pytest.raises(InvalidBarData, match=message) as refused:
            store.import_csv(csv)
        assert str(csv) in str(refused.value)
        assert len(store.query()) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "the file is empty"), ("date,open\n2024-01-02,1.0\n", r"lack column\(s\)")],
)
def test_files_that_are_not_bars(tmp_path: Path, text: str, message: str) -> None:
    csv = tmp_path / "600000.SH.csv"
    csv.write_text(text)
    with BarStore(tmp_path / "bars.duckdb") as store, pytest.raises(InvalidBarData, match=message):
        store.import_csv(csv)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with BarStore(tmp_path / "bars.duckdb") as store, pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        store.import_csv(tmp_path / "nope.csv")
