"""The A-share market model: codes, boards, limits, lots, fees and trading time."""

from __future__ import annotations

import datetime as dt
import logging
import math

import pytest

from miniqmt_lab import market as M
from miniqmt_lab.errors import InvalidPrice, InvalidStockCode, InvalidVolume


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
    ],
)
def test_codes_normalised_with_board(raw, code, board):
    assert M.normalize_code(raw) == code
    assert M.board_of(raw) is board


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("600000.SZ", "not an A-share stock on SZ"),
        ("000001.SH", "not an A-share stock on SH"),
        ("510300.SH", "not an A-share stock"),  # an ETF
        ("399001.SZ", "not an A-share stock"),  # an index
        ("60000.SH", "expected six digits"),
        ("600000.HK", "expected six digits"),
        ("SH600000.SH", "expected six digits"),
        ("", "expected six digits"),
        ("abcdef", "expected six digits"),
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


def test_calendar_falls_back_to_weekdays_with_one_warning(caplog):
    cal = M.TradingCalendar()
    with caplog.at_level(logging.WARNING, logger="miniqmt_lab.market"):
        assert cal.is_trading_day(dt.date(2031, 3, 3))  # a Monday past the calendar's end
        assert not cal.is_trading_day(dt.date(2031, 3, 1))  # a Saturday
        assert cal.is_trading_day(dt.date(2031, 3, 4))
    assert sum("outside the XSHG calendar" in r.message for r in caplog.records) == 1
    assert cal.next_trading_day(dt.date(2026, 9, 30)) == dt.date(2026, 10, 8)
    assert cal.previous_trading_day(dt.date(2026, 11, 30)) == dt.date(2026, 11, 27)
