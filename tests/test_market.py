"""The A-share market model: codes, boards, limits, lots, fees and trading time."""

from __future__ import annotations

import datetime as dt
import logging
import math

import numpy as np
import pytest

from miniqmt_lab import market as M
from miniqmt_lab.errors import InsufficientPosition, InvalidPrice, InvalidStockCode, InvalidVolume


@pytest.mark.parametrize(
    ("raw", "code", "board"),
    [
        ("600000.SH", "600000.SH", M.Board.SH_MAIN),
        ("000001.SZ", "000001.SZ", M.Board.SZ_MAIN),
        ("300750.SZ", "300750.SZ", M.Board.CHINEXT),
        ("301236.SZ", "301236.SZ", M.Board.CHINEXT),
        ("688981.SH", "688981.SH", M.Board.STAR),
        ("830799.BJ", "830799.BJ", M.Board.BJ),
        ("920001.BJ", "920001.BJ", M.Board.BJ),
        ("600000.sh", "600000.SH", M.Board.SH_MAIN),
        ("sh600000", "600000.SH", M.Board.SH_MAIN),
        ("SZ.000001", "000001.SZ", M.Board.SZ_MAIN),
        (" 600519 ", "600519.SH", M.Board.SH_MAIN),
        ("002594", "002594.SZ", M.Board.SZ_MAIN),
        ("830799", "830799.BJ", M.Board.BJ),
        ("302132.SZ", "302132.SZ", M.Board.CHINEXT),
        ("689009.SH", "689009.SH", M.Board.STAR),
        ("003816.SZ", "003816.SZ", M.Board.SZ_MAIN),
        ("605389.SH", "605389.SH", M.Board.SH_MAIN),
        ("430047.BJ", "430047.BJ", M.Board.BJ),
        ("873122.BJ", "873122.BJ", M.Board.BJ),
        ("600000.XSHG", "600000.SH", M.Board.SH_MAIN),
        ("000001.XSHE", "000001.SZ", M.Board.SZ_MAIN),
        ("688981.xshg", "688981.SH", M.Board.STAR),
        ("920118.BSE", "920118.BJ", M.Board.BJ),
        ("BJ430047", "430047.BJ", M.Board.BJ),
        ("600000.SS", "600000.SH", M.Board.SH_MAIN),
    ],
)
def test_codes_normalised_with_board(raw, code, board):
    assert M.normalize_code(raw) == code
    assert M.board_of(raw) is board


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("600000.SZ", "not an A-share stock on SZ"),
        ("000001.SH", "is an SSE index, not an A-share stock"),
        ("000300.XSHG", "is an SSE index"),
        ("399001.SZ", "is an SZSE index"),
        ("899050.BJ", "is a Beijing exchange index"),
        ("510300.SH", "is a fund"),
        ("159919.SZ", "is a fund"),
        ("900901.SH", "is a B-share"),
        ("200002.SZ", "is a B-share"),
        ("113050.SH", "is a bond"),
        ("123001.SZ", "is a bond"),
        ("204001.SH", "is a repo"),
        ("60000.SH", "expected six digits"),
        ("600000.HK", "expected six digits"),
        ("SH600000.SH", "expected six digits"),
        ("", "expected six digits"),
        ("abcdef", "expected six digits"),
        ("600\u0660\u0660\u0660.SH", "expected six digits"),  # Arabic-Indic zeros are digits to str.isdigit, not codes
        ("\uff16\uff10\uff10000.SH", "expected six digits"),  # full-width digits (a CJK input method)
        (600000, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_bad_codes_have_clear_errors(raw, message):
    with pytest.raises(InvalidStockCode, match=message):
        M.normalize_code(raw)


def test_limit_widths_and_prices():
    assert M.limit_width("600000.SH") == 0.10
    assert M.limit_width("300750.SZ") == 0.20
    assert M.limit_width("688981.SH") == 0.20
    assert M.limit_width("830799.BJ") == 0.30
    assert M.limit_width("600000.SH", "*ST 某某") == 0.05
    assert M.limit_prices("600000.SH", 10.05) == (11.06, 9.05)
    assert M.limit_prices("300750.SZ", 180.33) == (216.4, 144.26)
    assert M.limit_prices("600001.SH", 3.33, "ST 样本") == (3.5, 3.16)
    assert all(math.isnan(x) for x in M.limit_prices("600000.SH", math.nan))


def test_lots():
    assert M.min_buy_volume("600000.SH") == 100
    assert M.min_buy_volume("688981.SH") == 200
    assert M.check_buy_volume("600000.SH", 300) == 300
    assert M.check_buy_volume("600000.SH", 300.0) == 300
    for bad in (150, 0, -100, 100.5, math.nan, "100", True):
        with pytest.raises(InvalidVolume):
            M.check_buy_volume("600000.SH", bad)
    with pytest.raises(InvalidVolume, match="at least 200"):
        M.check_buy_volume("688981.SH", 100)
    assert M.check_sell_volume(150, held=150, available=150) == 150  # odd lot closing the holding
    with pytest.raises(InvalidVolume, match="whole lot"):
        M.check_sell_volume(150, held=250, available=250)
    with pytest.raises(InvalidVolume, match="positive"):
        M.check_sell_volume(0, held=250, available=250)


def test_order_sizes_by_board():
    assert M.lot_rule("600000.SH") == M.lot_rule("302132.SZ") == (100, 100, 100)
    assert M.lot_rule("688981.SH") == (200, 1, 200)
    assert M.lot_rule("920118.BJ") == (100, 1, 100)
    # STAR: at least 200, then any whole number; BJ: at least 100, then any whole number
    assert M.check_buy_volume("688981.SH", 201) == 201
    assert M.check_buy_volume("830799.BJ", 101) == 101
    with pytest.raises(InvalidVolume, match="at least 100 shares"):
        M.check_buy_volume("830799.BJ", 99)
    with pytest.raises(InvalidVolume, match="whole lots of 100"):
        M.check_buy_volume("302132.SZ", 250)
    # sells: in the board's steps above its minimum, or the whole available remainder
    assert M.check_sell_volume(201, held=300, available=300, code="688981.SH") == 201
    assert M.check_sell_volume(150, held=350, available=150, code="688981.SH") == 150
    with pytest.raises(InvalidVolume, match="at least 200 shares unless it sells all 300 available"):
        M.check_sell_volume(100, held=300, available=300, code="688981.SH")
    assert M.check_sell_volume(1050, held=1470, available=1050, code="600000.SH") == 1050
    with pytest.raises(InvalidVolume, match="whole lot of 100"):
        M.check_sell_volume(1020, held=1470, available=1050, code="600000.SH")


def test_selling_more_than_held_says_what_you_hold():
    with pytest.raises(InsufficientPosition, match=r"you hold 1000 \(0 available\)"):
        M.check_sell_volume(100, held=1000, available=0, code="600000.SH")
    with pytest.raises(InsufficientPosition, match=r"you hold 1000 \(600 available\)"):
        M.check_sell_volume(1100, held=1000, available=600)


def test_fee_rates_are_dated():
    assert M.fee_params(day=dt.date(2023, 8, 25)).stamp_duty_rate == 0.001
    assert M.fee_params(day=dt.date(2023, 8, 28)).stamp_duty_rate == 0.0005
    assert M.fee_params(day=dt.date(2022, 4, 28)).transfer_fee_rate == 0.00002
    assert M.fee_params(day=dt.date(2022, 4, 29)).transfer_fee_rate == 0.00001
    days = np.array(["2021-06-01", "2022-04-29", "2023-08-27", "2023-08-28"], dtype="datetime64[D]")
    table = M.fee_table(None, days)
    assert table.stamp_duty_rate.tolist() == [0.001, 0.001, 0.001, 0.0005]
    assert table.transfer_fee_rate.tolist() == [0.00002, 0.00001, 0.00001, 0.00001]
    # a 100,000 yuan sell in 2021 pays 0.1% stamp duty and 0.002% transfer fee
    assert M.order_fees(100_000, "SELL", day=dt.date(2021, 6, 1)) == (25.0, 100.0, 2.0)


def test_new_listings_trade_without_limits_for_five_days():
    listed = dt.date(2024, 3, 1)  # a Friday; the fifth trading day is Thursday 2024-03-07
    assert M.last_unlimited_day(listed) == dt.date(2024, 3, 7)
    assert not M.has_limits(dt.date(2024, 3, 7), listed)
    assert M.has_limits(dt.date(2024, 3, 8), listed)
    assert M.has_limits(dt.date(2024, 3, 4), None)


def test_ex_rights_reference_price():
    # 10-for-4 bonus shares and 0.35 yuan dividend on a 30.00 close: (30 - 0.35) / 1.4 = 21.18
    assert M.ex_rights_price(30.0, 0.35, 0.4) == 21.18
    # rights: 3 for 10 at 8.00 on a 12.00 close: (12 + 2.4) / 1.3 = 11.08
    assert M.ex_rights_price(12.0, rights_ratio=0.3, rights_price=8.0) == 11.08


@pytest.mark.parametrize("bad", [math.nan, 0, -1.0, math.inf, "10", None])
def test_bad_prices(bad):
    with pytest.raises(InvalidPrice):
        M.check_price(bad)


def test_fees():
    fees = M.order_fees(20000, "BUY")
    assert fees == (5.0, 0.0, 0.2) and fees.total == 5.2
    assert M.order_fees(100_000, "SELL").total == 76.0


def test_trading_time():
    assert M.is_trading_time(dt.datetime(2026, 11, 27, 9, 30))
    assert M.is_trading_time(dt.datetime(2026, 11, 27, 11, 30))
    assert not M.is_trading_time(dt.datetime(2026, 11, 27, 12, 0))
    assert M.is_trading_time(dt.datetime(2026, 11, 27, 14, 59))
    assert not M.is_trading_time(dt.datetime(2026, 11, 27, 15, 1))
    assert not M.is_trading_time(dt.datetime(2026, 11, 28, 10, 0))  # Saturday
    assert not M.is_trading_time(dt.datetime(2026, 10, 1, 10, 0))  # National Day
    utc = dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
    assert M.is_trading_time(utc)


def test_seconds_to_next_session():
    assert M.seconds_to_next_session(dt.datetime(2026, 11, 27, 10, 0)) == 0
    assert M.seconds_to_next_session(dt.datetime(2026, 11, 27, 12, 0)) == 3600
    # Friday after the close -> Monday 09:30
    assert M.seconds_to_next_session(dt.datetime(2026, 11, 27, 15, 30)) == (2 * 24 + 18) * 3600


def test_holidays_from_the_settings_close_the_market_past_the_calendars_end():
    cal = M.TradingCalendar()  # its own calendar: the process-wide one is not touched
    spring_festival = [dt.date(2031, 1, 22), dt.date(2031, 1, 23), dt.date(2031, 1, 24)]  # Wed-Fri past the end
    assert all(cal.is_trading_day(d) for d in spring_festival)
    cal.add_holidays(spring_festival)
    assert not any(cal.is_trading_day(d) for d in spring_festival)
    assert cal.next_trading_day(dt.date(2031, 1, 21)) == dt.date(2031, 1, 27)  # the Monday after
    assert cal.previous_trading_day(dt.date(2031, 1, 27)) == dt.date(2031, 1, 21)
    cal.add_holidays([dt.date(2026, 11, 27)])  # a sudden closure inside the recorded range wins too
    assert not cal.is_trading_day(dt.date(2026, 11, 27)) and cal.is_trading_day(dt.date(2026, 11, 26))


def test_calendar_falls_back_to_weekdays_with_one_warning(caplog):
    cal = M.TradingCalendar()
    with caplog.at_level(logging.WARNING, logger="miniqmt_lab.market"):
        assert cal.is_trading_day(dt.date(2031, 3, 3))  # a Monday past the calendar's end
        assert not cal.is_trading_day(dt.date(2031, 3, 1))  # a Saturday
        assert cal.is_trading_day(dt.date(2031, 3, 4))
    assert sum("outside the XSHG calendar" in r.message for r in caplog.records) == 1
    assert cal.next_trading_day(dt.date(2026, 9, 30)) == dt.date(2026, 10, 8)
    assert cal.previous_trading_day(dt.date(2026, 11, 30)) == dt.date(2026, 11, 27)
