"""Replay: bars to ticks, the replay clock, the session journal and replaying it, snapshots."""

from __future__ import annotations

import datetime as dt
import threading
import time

import numpy as np
import pandas as pd
import pytest
from engine_support import close_bars, entry_days, fast_settings, run_replay

from miniqmt_lab.bars import sample_bars
from miniqmt_lab.engine import Engine, ReplayClock, ReplayFeed, read_journal
from miniqmt_lab.engine.replay import bars_to_ticks
from miniqmt_lab.market import SHANGHAI
from miniqmt_lab.schema import POSITION_COLUMNS

pytestmark = pytest.mark.timeout(120)


def rounds_of(feed: ReplayFeed) -> list:
    out = []
    while (rnd := feed.next_round(0.0)) is not None:
        out.append(rnd)
    return out


def test_daily_bars_tick_open_low_high_close_or_open_high_low_close():
    bars = pd.DataFrame(
        {
            "stock_code": ["600000.SH", "000001.SZ", "600000.SH"],
            "date": pd.to_datetime(["2024-03-04", "2024-03-04", "2024-03-05"]),
            "open": [10.0, 5.0, 10.5],
            "high": [10.8, 5.2, 10.6],
            "low": [9.9, 4.7, 9.8],
            "close": [10.5, 4.8, 10.0],
        }
    )
    rounds = rounds_of(ReplayFeed.from_bars(bars))
    assert [r.time.time() for r in rounds[:4]] == [dt.time(9, 30), dt.time(10, 30), dt.time(13, 30), dt.time(14, 57)]
    day1 = [[(t.code, t.price) for t in r.ticks] for r in rounds[:4]]
    # ascending codes; 600000 rose (open, low, high, close), 000001 fell (open, high, low, close)
    assert day1 == [
        [("000001.SZ", 5.0), ("600000.SH", 10.0)],
        [("000001.SZ", 5.2), ("600000.SH", 9.9)],
        [("000001.SZ", 4.7), ("600000.SH", 10.8)],
        [("000001.SZ", 4.8), ("600000.SH", 10.5)],
    ]
    assert [t.bar_close for r in rounds[:4] for t in r.ticks] == [False] * 6 + [True] * 2
    tick = rounds[4].ticks[0]
    assert tick.stamp == dt.datetime(2024, 3, 5, 15, 0, tzinfo=SHANGHAI) and tick.prev_close == 10.5
    assert np.isnan(rounds[0].ticks[0].prev_close)
    assert [t.price for r in rounds[4:] for t in r.ticks] == [10.5, 10.6, 9.8, 10.0]


def test_close_mode_and_minute_bars():
    bars = sample_bars(2, 2, freq="1m")
    close = bars_to_ticks(bars, "close")
    assert close.n_rounds == bars["time"].nunique()
    ohlc = bars_to_ticks(bars)
    first = ohlc.round_at(0)
    assert first.time.time() == dt.time(9, 30, 15) and first.ticks[0].stamp.time() == dt.time(9, 31)
    assert ohlc.round_at(3).time.time() == dt.time(9, 31)
    # minute bars: the limits' reference is the previous day's last close
    day2 = bars[bars["time"].dt.date == bars["time"].dt.date.max()]
    code = day2["stock_code"].iloc[0]
    last_close = bars[(bars["stock_code"] == code) & (bars["time"] < day2["time"].min())]["close"].iloc[-1]
    tick = next(t for t in ohlc.round_at(4 * 240).ticks if t.code == code)
    assert tick.prev_close == last_close


def test_bad_bars_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="'date' column"):
        bars_to_ticks(pd.DataFrame({"stock_code": ["600000.SH"], "close": [1.0]}))
    with pytest.raises(ValueError, match="lack column"):
        bars_to_ticks(pd.DataFrame({"stock_code": ["600000.SH"], "date": ["2024-03-04"], "close": [1.0]}))
    dup = close_bars({"600000.SH": [1.0]})
    with pytest.raises(ValueError, match="more than one row"):
        bars_to_ticks(pd.concat([dup, dup]))


def test_replay_clock_moves_with_the_stream_and_idles_once_drained():
    feed = ReplayFeed.from_bars(close_bars({"600000.SH": [10.0, 10.1]}), tick_mode="close")
    clock = feed.clock
    assert clock.now() == dt.datetime(2024, 3, 4, 14, 57, tzinfo=SHANGHAI)  # the first round, not yet delivered
    stop = threading.Event()
    answer: list[bool] = []
    sleeper = threading.Thread(target=lambda: answer.append(clock.sleep(60.0, stop)))
    sleeper.start()
    sleeper.join(10.0)  # rounds pending: no waiting (a 60 s wait would still be running)
    assert answer == [False]
    assert clock.seconds_to_next_session() == 0.0
    rounds_of(feed)
    assert clock.now() == dt.datetime(2024, 3, 5, 14, 57, tzinfo=SHANGHAI)
    assert clock.is_trading_time()
    started = time.monotonic()
    assert clock.sleep(0.2, stop) is False and time.monotonic() - started >= 0.19  # drained: real waiting
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance_to(dt.datetime(2024, 3, 4, 9, 30, tzinfo=SHANGHAI))


def test_replay_clock_outside_trading_time_waits_for_the_session():
    saturday = dt.datetime(2024, 3, 9, 12, 0, tzinfo=SHANGHAI)
    clock = ReplayClock(saturday)
    assert not clock.is_trading_time()
    monday_open = dt.datetime(2024, 3, 11, 9, 30, tzinfo=SHANGHAI)
    assert clock.seconds_to_next_session() == (monday_open - saturday).total_seconds()


def test_a_feed_with_its_own_clock_refuses_another_one(tmp_path):
    feed = ReplayFeed.from_bars(close_bars({"600000.SH": [10.0]}))
    with pytest.raises(ValueError, match=r"clock=feed\.clock"):
        Engine(fast_settings(tmp_path), feed=feed, clock=ReplayClock())


def test_the_journal_replays_to_the_same_trades(tmp_path):
    bars = sample_bars(6, 150, seed=5)
    first = run_replay(fast_settings(tmp_path / "a"), ReplayFeed.from_bars(bars), "macd")
    journal = read_journal(first.journal_path)
    assert list(journal.columns) == ["time", "stamp", "stock_code", "price", "bar_close", "prev_close"]
    assert len(journal) == 4 * len(bars)
    assert journal["time"].is_monotonic_increasing and journal["bar_close"].sum() == len(bars)
    assert str(journal["time"].dtype).startswith("datetime64") and journal["time"].dt.tz is None

    entries = first.signals().query("rule == 'entry'")
    entry_frame = pd.DataFrame({"stamp": pd.to_datetime(entries["time"]).dt.normalize(), "code": entries["stock_code"]})
    frame = pd.crosstab(entry_frame["stamp"], entry_frame["code"]).astype(bool)
    second = run_replay(fast_settings(tmp_path / "b"), ReplayFeed.from_journal(first.journal_path), frame)
    assert len(first.trades()) > 10
    pd.testing.assert_frame_equal(second.trades(), first.trades())


def test_snapshot_positions_and_masked_account(tmp_path):
    bars = close_bars({"600000.SH": [10.0, 10.4]})
    settings = fast_settings(tmp_path, account_id="8800001234")
    engine = run_replay(settings, ReplayFeed.from_bars(bars, tick_mode="close"), entry_days(bars, {"600000.SH": [0]}))
    snap = engine.snapshot()
    assert snap.mode == "paper" and not snap.running
    assert snap.broker.account == "88******34"
    assert "8800001234" not in repr(engine.status())
    positions = engine.positions()
    assert list(positions.columns) == list(POSITION_COLUMNS)
    row = positions.iloc[0]
    assert row["price"] == 10.4 and row["profit_ratio"] == pytest.approx(0.04)
    assert row["stop_loss_price"] == pytest.approx(10.0 * (1 + settings.rules.stop_loss_ratio))
    assert snap.total_asset == pytest.approx(snap.cash + row["market_value"])
    assert snap.positions[0].stock_code == "600000.SH"


class HistoryFeed(ReplayFeed):
    """A feed that can refresh the daily bars of the bar store, as the QMT feed does."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.refreshed: list[tuple[list[str], object]] = []

    def refresh_history(self, codes, store) -> None:
        self.refreshed.append((list(codes), store.path))


def test_the_daily_history_is_refreshed_once_a_day_for_the_watched_codes(tmp_path):
    from miniqmt_lab.engine.replay import bars_to_ticks

    bars = close_bars({"600000.SH": [10.0]})  # one day: the replay clock stays on it
    settings = fast_settings(tmp_path, stock_pool=("000001.SZ",))
    feed = HistoryFeed(bars_to_ticks(bars, "close"))
    engine = Engine(settings, feed=feed)
    engine.start()
    try:
        engine._data_step()  # the data thread's next turns on the same day refresh nothing
        engine._data_step()
    finally:
        engine.stop()
    assert feed.refreshed == [(["000001.SZ"], str(settings.data_path / "bars.duckdb"))]
