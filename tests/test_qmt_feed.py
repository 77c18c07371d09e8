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
from miniqmt_lab.qmt.history import (
    actions_from_xt,
    bars_from_xt,
    instruments_from_xt,
    unexplained_base_prices,
    xt_time,
)
from miniqmt_lab.schema import ACTION_COLUMNS, INSTRUMENT_COLUMNS
from miniqmt_lab.xtquant_double import FakeQmt

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("compiled_fees")]

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
            volume = 1e6 + 100 * i
            rows.append((code, day, close - 0.05, close + 0.1, close - 0.1, close, volume, volume * close))
    return pd.DataFrame(rows, columns=["stock_code", "date", "open", "high", "low", "close", "volume", "amount"])


class RecordingStore:
    """A stand-in for the bar store's writing side: bars go to a real DuckDB ``BarStore``; actions and
    instruments (``BarStore.write_actions`` / ``write_instruments``) are recorded as given."""

    def __init__(self, path) -> None:
        self.bars = BarStore(path)
        self.actions: list[pd.DataFrame] = []
        self.instruments: list[pd.DataFrame] = []

    def write_frame(self, df: pd.DataFrame, freq: str = "1d") -> int:
        return self.bars.write_frame(df, freq)

    def write_actions(self, frame: pd.DataFrame) -> int:
        self.actions.append(frame)
        return len(frame)

    def write_instruments(self, frame: pd.DataFrame) -> int:
        self.instruments.append(frame)
        return len(frame)


def test_download_history_into_the_bar_store_with_progress(qmt, feed, tmp_path, capsys):
    qmt.market.add_bars(daily_bars())
    qmt.market.add_action(SPDB, "2024-03-06", interest=0.2, stock_bonus=0.2, stock_gift=0.1)
    qmt.market.add_action(SPDB, "2023-07-03", interest=0.3)  # before the window: not downloaded
    qmt.market.set_instrument(SPDB, "浦发银行", prev_close=10.0, open_date="19991110")
    store = RecordingStore(tmp_path / "bars.duckdb")
    frame = feed.download_history([SPDB, PINGAN], "2024-03-05", dt.date(2024, 3, 7), store=store)

    assert qmt.xtdata.calls[:2] == ["download_history_data2", "get_market_data_ex"]
    assert "2/2" in capsys.readouterr().err  # the progress bar reached every code
    assert list(frame.columns) == ["stock_code", "stock_name", "date", "open", "high", "low", "close", "volume",
                                   "amount", "prev_close"]
    assert len(frame) == 6
    assert frame["date"].is_monotonic_increasing
    assert set(frame["stock_name"]) == {"浦发银行", "平安银行"}
    assert frame["volume"].tolist() == sorted([1e6 + 100, 1e6 + 200, 1e6 + 300] * 2)  # shares again, not lots

    stored = store.bars.query([SPDB], freq="1d")
    assert stored["close"].round(2).tolist() == [10.1, 10.2, 10.3]
    assert stored["volume"].tolist() == [1e6 + 100, 1e6 + 200, 1e6 + 300]
    assert stored["stock_name"].unique().tolist() == ["浦发银行"]
    [actions] = store.actions
    assert list(actions.columns) == list(ACTION_COLUMNS)
    assert actions.to_dict("records") == [{
        "stock_code": SPDB, "ex_date": pd.Timestamp("2024-03-06"), "cash_dividend": 0.2,
        "bonus_ratio": pytest.approx(0.3), "rights_ratio": 0.0, "rights_price": 0.0,
    }]
    [instruments] = store.instruments
    assert list(instruments.columns) == list(INSTRUMENT_COLUMNS)
    assert instruments.set_index("stock_code")["listing_date"].to_dict() == {
        SPDB: pd.Timestamp("1999-11-10"), PINGAN: pd.NaT}
    store.bars.close()


def test_download_drops_suspended_days_and_keeps_the_exchanges_base_price(qmt, feed, caplog):
    qmt.market.add_bars(daily_bars())
    qmt.market.suspend(SPDB, ["2024-03-07"])  # inside the bars: a filled row with volume 0
    qmt.market.add_action(SPDB, "2024-03-08", interest=0.1)
    frame = feed.download_history(SPDB, "20240304", progress=False).set_index("date")
    assert pd.Timestamp("2024-03-07") not in frame.index  # suspended: no traded bar
    assert frame.loc["2024-03-08", "prev_close"] == round(10.2 - 0.1, 2)  # the ex-rights reference price
    assert math.isnan(frame["prev_close"].iloc[0])  # nothing before the first bar
    assert "base price" not in caplog.text  # every jump is explained by an action


def test_unexplained_base_prices_point_at_missing_actions():
    bars = pd.DataFrame({
        "stock_code": [SPDB] * 3, "date": pd.to_datetime(["2024-03-04", "2024-03-05", "2024-03-06"]),
        "close": [10.0, 10.2, 9.0], "prev_close": [np.nan, 10.0, 8.0],
    })
    missing = unexplained_base_prices(bars, pd.DataFrame({c: [] for c in ACTION_COLUMNS}))
    assert missing.to_dict("records") == [
        {"stock_code": SPDB, "date": pd.Timestamp("2024-03-06"), "prev_close": 8.0, "last_close": 10.2}]
    known = pd.DataFrame([(SPDB, pd.Timestamp("2024-03-06"), 0.0, 0.275, 0.0, 0.0)], columns=list(ACTION_COLUMNS))
    assert unexplained_base_prices(bars, known).empty


@pytest.mark.parametrize(("period", "stamps"), [
    ("1w", ["2024-03-08", "2024-03-15"]),
    ("1mon", ["2024-03-29", "2024-04-30"]),
])
def test_weekly_and_monthly_bars_are_dated(qmt, feed, period, stamps):
    bars = daily_bars().iloc[:2].assign(date=stamps)
    qmt.market.add_bars(bars, period)
    frame = feed.download_history(SPDB, "20240101", period=period, progress=False)
    assert frame["date"].tolist() == [pd.Timestamp(s) for s in stamps]
    assert frame["volume"].tolist() == [1e6, 1e6 + 100]


def test_tick_history_download(qmt, feed):
    qmt.market.set_price(SPDB, 10.1, volume=300, time=at(9, 31, 3))
    qmt.market.set_price(SPDB, 10.2, volume=500, time=at(9, 31, 6))
    frame = feed.download_history(SPDB, "20240305", "20240305", period="tick", progress=False)
    assert list(frame.columns) == ["stock_code", "stock_name", "time", "price", "prev_close", "volume", "amount"]
    assert frame["time"].tolist() == [pd.Timestamp("2024-03-05 09:31:03"), pd.Timestamp("2024-03-05 09:31:06")]
    assert frame["price"].tolist() == [10.1, 10.2]
    assert frame["volume"].tolist() == [300, 800]  # the day's running volume in shares
    with pytest.raises(ValueError, match="'tick' cannot be stored"):
        feed.download_history(SPDB, "20240305", period="tick", store=RecordingStore(":memory:"))


def test_a_store_needs_traded_prices_and_the_stores_methods(qmt, feed, tmp_path):
    with pytest.raises(ValueError, match="keeps traded prices"):
        feed.download_history(SPDB, "20240304", dividend_type="front", store=RecordingStore(":memory:"))
    with pytest.raises(TypeError, match=r"pass BarStore\(path\)"):
        feed.download_history(SPDB, "20240304", store=tmp_path / "bars.duckdb")
    assert qmt.xtdata.calls == []


def test_corporate_actions_of_a_day(qmt, feed):
    qmt.market.add_action(SPDB, "2024-03-05", interest=0.5, allot_num=0.1, allot_price=8.0)
    qmt.market.add_action(PINGAN, "2024-03-06", stock_gift=0.4)
    actions = feed.corporate_actions([SPDB, PINGAN], dt.date(2024, 3, 5))
    assert actions.to_dict("records") == [{
        "stock_code": SPDB, "ex_date": pd.Timestamp("2024-03-05"), "cash_dividend": 0.5, "bonus_ratio": 0.0,
        "rights_ratio": 0.1, "rights_price": 8.0,
    }]
    assert feed.corporate_actions(SPDB, "2024-03-06").empty
    assert list(feed.corporate_actions(PINGAN, "2024-03-06")["bonus_ratio"]) == [0.4]


def test_actions_and_instruments_from_xt():
    factors = pd.DataFrame({
        "time": [int(dt.datetime(2024, 6, 14, tzinfo=mkt.SHANGHAI).timestamp() * 1000)] * 2,
        "interest": [0.25, 0.0], "stockBonus": [0.2, 0.0], "stockGift": [0.2, 0.0], "allotNum": [0.0, 0.0],
        "allotPrice": [0.0, 0.0], "gugai": [0.0, 0.0], "dr": [1.45, 1.0],
    }, index=["20240614", "20240614"])
    [row] = actions_from_xt(SPDB, factors).to_dict("records")  # the factor-only row changes nothing
    assert row == {"stock_code": SPDB, "ex_date": pd.Timestamp("2024-06-14"), "cash_dividend": 0.25,
                   "bonus_ratio": 0.4, "rights_ratio": 0.0, "rights_price": 0.0}
    by_index = actions_from_xt(SPDB, factors.drop(columns="time").iloc[:1])
    assert by_index["ex_date"].tolist() == [pd.Timestamp("2024-06-14")]
    assert actions_from_xt(SPDB, None).empty and list(actions_from_xt(SPDB, None).columns) == list(ACTION_COLUMNS)

    instruments = instruments_from_xt({
        SPDB: {"InstrumentName": "浦发银行", "OpenDate": "19991110"},
        PINGAN: {"InstrumentName": "平安银行", "OpenDate": 19910403},
        MOUTAI: {"InstrumentName": "贵州茅台", "OpenDate": "0"},
        "300750.SZ": None,
    })
    assert instruments.to_dict("records") == [
        {"stock_code": SPDB, "stock_name": "浦发银行", "listing_date": pd.Timestamp("1999-11-10")},
        {"stock_code": PINGAN, "stock_name": "平安银行", "listing_date": pd.Timestamp("1991-04-03")},
        {"stock_code": MOUTAI, "stock_name": "贵州茅台", "listing_date": pd.NaT},
    ]


def test_download_without_progress_returns_the_frame(qmt, feed, capsys):
    qmt.market.add_bars(daily_bars())
    frame = feed.download_history(SPDB, "20240304", progress=False)
    assert len(frame) == 5
    assert capsys.readouterr().err == ""


def test_download_refuses_a_period_the_store_cannot_keep_before_downloading(qmt, feed):
    with pytest.raises(ValueError, match="'5m' cannot be stored"):
        feed.download_history(SPDB, "20240304", period="5m", store=RecordingStore(":memory:"))
    with pytest.raises(ValueError, match="period must be one of"):
        feed.download_history(SPDB, "20240304", period="2d")
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


def test_a_stale_snapshot_is_not_a_price_of_today(qmt, caplog):
    caplog.set_level(logging.WARNING, logger="miniqmt_lab.qmt.feed")
    now = [at(9, 20)]
    feed = QmtFeed(Settings(), modules=qmt, poll_interval=0.01, clock=lambda: now[0])
    qmt.market.set_price(SPDB, 10.2, time=at(15, 0) - dt.timedelta(days=1))  # yesterday's last tick
    qmt.market.set_price(PINGAN, 12.3, time=at(9, 25))  # today's call auction
    feed.watch([SPDB, PINGAN])
    [tick] = feed.next_round(0.5).ticks
    assert tick.code == PINGAN
    assert "tick of 600000.SH dropped: stale snapshot of 2024-03-04 15:00, not a price of 2024-03-05" in caplog.text
    assert feed.next_round(0.05) is None
    assert caplog.text.count("600000.SH dropped") == 1  # logged once while it stays stale
    now[0] = at(9, 31)
    qmt.market.set_price(SPDB, 10.3, time=at(9, 30, 3))
    assert [(t.code, t.price) for t in feed.next_round(0.5).ticks] == [(SPDB, 10.3)]


def test_xtdata_is_imported_when_the_feed_is_built_and_its_banner_is_off(capsys):
    qmt = FakeQmt(import_delay=0.3)
    qmt.market.set_price(SPDB, 10.0)
    feed = QmtFeed(Settings(), modules=qmt, poll_interval=0.01)
    assert qmt.imported_on == ["MainThread"]  # paid here, not in the engine's first timed poll
    assert qmt.xtdata.enable_hello is False
    feed.watch([SPDB])
    started = time.monotonic()
    feed.next_round(0.2)
    assert time.monotonic() - started < 0.3
    assert "xtdata连接成功" not in capsys.readouterr().out


def test_a_new_listing_trades_without_limits_on_its_first_five_days(qmt, feed):
    qmt.market.set_instrument("301000.SZ", "新股份", prev_close=30.0, open_date="2024-02-28")  # day 5 on 03-05
    qmt.market.set_instrument("301001.SZ", "次新股", prev_close=30.0, open_date="2024-02-27")  # day 6
    for code in ("301000.SZ", "301001.SZ", SPDB):
        qmt.market.set_price(code, 31.0, time=at(10, 0))
    feed.watch(["301000.SZ", "301001.SZ", SPDB])
    limits = {t.code: t.limits for t in feed.next_round(0.5).ticks}
    assert limits == {"301000.SZ": False, "301001.SZ": True, SPDB: True}  # SPDB: listing date unknown
    assert feed.instrument("301000.SZ").listing_date == dt.date(2024, 2, 28)


def test_a_hung_poll_costs_rounds_and_one_thread_never_the_caller(qmt, feed, caplog):
    caplog.set_level(logging.WARNING, logger="miniqmt_lab.qmt.feed")
    qmt.market.set_price(SPDB, 10.1, time=at(10, 0))
    feed.watch([SPDB])
    qmt.hang("get_full_tick")  # xtdata calls have no timeout
    for _ in range(5):
        started = time.monotonic()
        assert feed.next_round(0.1) is None
        assert time.monotonic() - started < 0.5
    assert qmt.hung("get_full_tick") == 1  # one poll waits for the client; no second one was started
    assert feed.last_error == "get_full_tick has not answered"
    assert caplog.text.count("get_full_tick has not answered") == 1
    feed.close()
    started = time.monotonic()
    assert feed.next_round(5.0) is None  # a close ends the wait at once
    assert time.monotonic() - started < 0.5
    feed.open()
    qmt.release()
    assert [t.price for t in feed.next_round(1.0).ticks] == [10.1]
    assert feed.last_error == ""


def test_refresh_history_brings_the_last_days_into_the_store(qmt, feed, tmp_path):
    qmt.market.add_bars(daily_bars())
    store = RecordingStore(tmp_path / "bars.duckdb")
    feed.refresh_history([SPDB], store, days=10)  # the engine's daily refresh: up to the feed's today
    stored = store.bars.query([SPDB], freq="1d")
    assert stored["date"].max() <= pd.Timestamp(at(10, 0).date()) and len(stored) > 0
    assert qmt.xtdata.calls[0] == "download_history_data2"


def test_actions_on_a_day_are_those_of_the_watched_stocks(qmt, feed):
    qmt.market.add_action(SPDB, "2024-03-05", interest=0.3, stock_bonus=0.2, stock_gift=0.2)
    qmt.market.add_action(PINGAN, "2024-03-05", interest=0.1)
    assert feed.actions_on(dt.date(2024, 3, 5)) == []  # nothing watched yet
    feed.watch([SPDB])
    assert feed.actions_on(dt.date(2024, 3, 5)) == [(SPDB, 0.3, 0.4)]
    assert feed.actions_on(dt.date(2024, 3, 6)) == []
