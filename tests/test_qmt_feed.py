"""QmtFeed against the fake client: tick rounds, history downloads, instrument facts, calendar."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time

import numpy as np
import pandas as pd
import pytest

from miniqmt_lab import market as mkt
from miniqmt_lab.bars.store import BarStore
from miniqmt_lab.config import Settings
from miniqmt_lab.errors import QmtUnavailable
from miniqmt_lab.qmt import Instrument, QmtFeed
from miniqmt_lab.qmt.feed import bars_from_xt, xt_time
from miniqmt_lab.xtquant_double import FakeQmt

pytestmark = pytest.mark.timeout(60)

SPDB, PINGAN, MOUTAI = "600000.SH", "000001.SZ", "600519.SH"


def at(hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime(2024, 3, 5, hour, minute, second, tzinfo=mkt.SHANGHAI)


@pytest.fixture
def qmt():
    fake = FakeQmt()
    fake.market.set_instrument(SPDB, "浦发银行", prev_close=10.0)
    fake.market.set_instrument(PINGAN, "平安银行", prev_close=12.0)
    fake.market.set_instrument(MOUTAI, "贵州茅台", prev_close=1700.0)
    return fake


@pytest.fixture
def feed(qmt):
    f = QmtFeed(Settings(), modules=qmt, poll_interval=0.01, clock=lambda: at(10, 0))
    yield f
    f.close()


def test_round_of_valid_ticks_in_code_order(qmt, feed, caplog):
    caplog.set_level(logging.WARNING, logger="miniqmt_lab.qmt.feed")
    qmt.market.set_price(SPDB, 10.2, time=at(10, 0, 3))
    qmt.market.set_price(PINGAN, 12.3, time=at(10, 0, 1))
    qmt.market.set_price(MOUTAI, math.nan, time=at(10, 0, 2))
    feed.watch([SPDB, "000001", MOUTAI, "300750.SZ"])  # 300750 has no tick at all

    tick_round = feed.next_round(1.0)
    assert tick_round is not None
    assert [t.code for t in tick_round.ticks] == [PINGAN, SPDB]
    pingan, spdb = tick_round.ticks
    assert (spdb.price, spdb.prev_close, spdb.name, spdb.time, spdb.bar_close) == (10.2, 10.0, "浦发银行", at(10, 0, 3),
                                                                                   False)
    assert (pingan.price, pingan.prev_close, pingan.name) == (12.3, 12.0, "平安银行")
    assert spdb.stamp is None and spdb.trade_time == spdb.time
    assert tick_round.time == at(10, 0, 3)
    assert "tick of 600519.SH dropped: bad lastPrice nan" in caplog.text
    assert "tick of 300750.SZ dropped: no tick" in caplog.text

    started = time.monotonic()
    assert feed.next_round(0.1) is None  # nothing new: the same ticks are not delivered twice
    assert time.monotonic() - started >= 0.09
    assert caplog.text.count("600519.SH dropped") == 1  # logged once while it stays bad

    qmt.market.set_price(MOUTAI, 1710.0, time=at(10, 0, 5))
    assert [(t.code, t.price) for t in feed.next_round(1.0).ticks] == [(MOUTAI, 1710.0)]


def test_zero_price_dropped_and_close_ticks_marked(qmt, feed):
    qmt.market.set_price(SPDB, 0.0, time=at(14, 56))
    qmt.market.set_price(PINGAN, 12.5, time=at(14, 57))
    feed.watch([SPDB, PINGAN])
    [tick] = feed.next_round(1.0).ticks
    assert (tick.code, tick.bar_close) == (PINGAN, True)


def test_watch_nothing_and_close(feed):
    feed.watch([])
    assert feed.next_round(0.05) is None
    assert feed.finished() is False
    feed.close()
    started = time.monotonic()
    assert feed.next_round(5.0) is None
    assert time.monotonic() - started < 0.5


def test_open_after_close_delivers_the_latest_ticks_again(qmt, feed):
    qmt.market.set_price(SPDB, 10.2, time=at(10, 0, 3))
    feed.watch([SPDB])
    assert [t.price for t in feed.next_round(1.0).ticks] == [10.2]
    feed.close()
    assert feed.next_round(1.0) is None
    feed.open()  # an engine started again: its book has no prices yet
    assert [t.price for t in feed.next_round(1.0).ticks] == [10.2]
    assert feed.next_round(0.05) is None  # then each tick once, as before


def test_client_going_away_costs_rounds_not_the_feed(qmt, feed, caplog):
    caplog.set_level(logging.INFO, logger="miniqmt_lab.qmt.feed")
    qmt.market.set_price(SPDB, 10.1, time=at(10, 0))
    feed.watch([SPDB])
    qmt.running = False
    assert feed.next_round(0.05) is None
    assert feed.next_round(0.05) is None
    assert "QMT client is not running" in feed.last_error
    assert caplog.text.count("QMT feed: the QMT client is not running") == 1
    qmt.running = True
    assert [t.price for t in feed.next_round(1.0).ticks] == [10.1]
    assert "the client answers again" in caplog.text


def test_instrument_facts(feed):
    assert feed.instrument("600000") == Instrument(SPDB, "浦发银行", 10.0, 11.0, 9.0, 0.01)
    assert feed.instrument("601398.SH") is None


def test_trading_days_from_the_client_or_the_xshg_calendar(qmt, feed, caplog):
    caplog.set_level(logging.INFO, logger="miniqmt_lab.qmt.feed")
    fallback = feed.trading_days("2024-02-08", "2024-02-19")  # the client has no holiday data yet
    assert fallback[0] == dt.date(2024, 2, 8)
    assert dt.date(2024, 2, 12) not in fallback  # Spring Festival
    assert fallback == [d for d in pd.date_range("2024-02-08", "2024-02-19").date if mkt.CALENDAR.is_trading_day(d)]
    assert "using the XSHG calendar" in caplog.text

    qmt.market.set_calendar([dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6)])
    assert feed.trading_days(dt.date(2024, 3, 5), dt.date(2024, 3, 31)) == [dt.date(2024, 3, 5), dt.date(2024, 3, 6)]
    qmt.running = False
    assert feed.trading_days("2024-03-04", "2024-03-08") == [dt.date(2024, 3, d) for d in range(4, 9)]


def daily_bars() -> pd.DataFrame:
    days = pd.bdate_range("2024-03-04", periods=5)
    rows = []
    for code, base in ((SPDB, 10.0), (PINGAN, 12.0)):
        for i, day in enumerate(days):
            close = base + 0.1 * i
            rows.append((code, day, close - 0.05, close + 0.1, close - 0.1, close, 1e6 + i, (1e6 + i) * close))
    return pd.DataFrame(rows, columns=["stock_code", "date", "open", "high", "low", "close", "volume", "amount"])


def test_download_history_into_the_bar_store_with_progress(qmt, feed, tmp_path, capsys):
    qmt.market.add_bars(daily_bars())
    path = tmp_path / "bars.duckdb"
    frame = feed.download_history([SPDB, PINGAN], "2024-03-05", dt.date(2024, 3, 7), store=path)

    assert qmt.xtdata.calls[:2] == ["download_history_data2", "get_market_data_ex"]
    assert "2/2" in capsys.readouterr().err  # the progress bar reached every code
    assert list(frame.columns) == ["stock_code", "stock_name", "date", "open", "high", "low", "close", "volume",
                                   "amount"]
    assert len(frame) == 6
    assert frame["date"].is_monotonic_increasing
    assert set(frame["stock_name"]) == {"浦发银行", "平安银行"}

    with BarStore(path, read_only=True) as store:
        stored = store.query([SPDB], freq="1d")
    assert stored["close"].round(2).tolist() == [10.1, 10.2, 10.3]
    assert stored["stock_name"].unique().tolist() == ["浦发银行"]


def test_download_without_progress_returns_the_frame(qmt, feed, capsys):
    qmt.market.add_bars(daily_bars())
    frame = feed.download_history(SPDB, "20240304", progress=False)
    assert len(frame) == 5
    assert capsys.readouterr().err == ""


def test_download_refuses_a_period_the_store_cannot_keep_before_downloading(qmt, feed, tmp_path):
    with pytest.raises(ValueError, match="'5m' cannot be stored"):
        feed.download_history(SPDB, "20240304", period="5m", store=tmp_path / "bars.duckdb")
    assert qmt.xtdata.calls == []


def test_download_with_the_client_away(qmt, feed):
    qmt.running = False
    with pytest.raises(QmtUnavailable, match="start miniQMT"):
        feed.download_history(SPDB, "20240304", progress=False)


def test_bars_from_xt_drops_suspended_and_empty_bars():
    frame = pd.DataFrame({
        "time": [0, 0, 0, 0],
        "open": [10.0, 10.1, np.nan, 10.2], "high": [10.2] * 4, "low": [9.9] * 4, "close": [10.1, 10.1, np.nan, 10.2],
        "volume": [100.0, 0.0, 0.0, 200.0], "amount": [1010.0, 0.0, 0.0, 2040.0], "suspendFlag": [0, 1, 0, 0],
    }, index=["20240304", "20240305", "20240306", "20240307"])
    bars = bars_from_xt({SPDB: frame, PINGAN: frame.iloc[:0]}, "1d", {SPDB: "浦发银行"})
    assert bars["date"].dt.strftime("%Y%m%d").tolist() == ["20240304", "20240307"]
    minute = frame.set_axis(["20240304093100", "20240304093200", "20240304093300", "20240304093400"])
    assert bars_from_xt({SPDB: minute}, "1m", {})["time"].dt.strftime("%H:%M").tolist() == ["09:31", "09:34"]
    assert list(bars_from_xt({}, "1d", {}).columns)[:3] == ["stock_code", "stock_name", "date"]


def test_xt_time_formats():
    assert xt_time(dt.date(2024, 3, 5)) == "20240305"
    assert xt_time("2024-03-05 09:31") == "20240305093100"
    assert xt_time(dt.datetime(2024, 3, 5, 1, 31, tzinfo=dt.UTC)) == "20240305093100"
    assert xt_time(None) == ""
