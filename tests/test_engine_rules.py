"""The engine on crafted price paths: every rule fires, lands in SQLite, and the guards hold."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3

import pandas as pd
import pytest
from engine_support import (
    DelayedBroker,
    GatedFeed,
    close_bars,
    entry_days,
    fast_settings,
    run_replay,
    wait_for,
)

from miniqmt_lab.bars import sample_bars
from miniqmt_lab.engine import Engine, ReplayClock, ReplayFeed
from miniqmt_lab.errors import InsufficientPosition
from miniqmt_lab.market import order_fees
from miniqmt_lab.schema import LOT

pytestmark = pytest.mark.timeout(120)

CODE = "600000.SH"
UNIT = 20_000.0  # the default position_unit


def lots(amount: float, price: float) -> int:
    return int(math.floor(amount / price / LOT)) * LOT


def stored(db, sql):
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def test_stop_loss_lands_in_sqlite(tmp_path):
    bars = close_bars({CODE: [10.0, 9.5, 9.2, 9.1]})
    settings = fast_settings(tmp_path)
    engine = run_replay(settings, ReplayFeed.from_bars(bars, tick_mode="close"), entry_days(bars, {CODE: [0]}))

    trades = engine.trades()
    bought = lots(UNIT, 10.0)
    assert trades["rule"].tolist() == ["entry", "stop_loss"]
    assert trades["volume"].tolist() == [bought, bought]
    assert trades["price"].tolist() == [10.0, 9.2]  # -5% holds, -8% is past the -7.5% stop
    assert trades["commission"].tolist() == pytest.approx(
        [order_fees(bought * 10.0, "BUY").total, order_fees(bought * 9.2, "SELL").total]
    )
    assert trades["time"].tolist() == [pd.Timestamp(d) + pd.Timedelta(hours=15) for d in bars["date"].iloc[[0, 2]]]

    db = settings.database_path
    assert stored(db, "SELECT rule, volume FROM trade_records ORDER BY seq") == [
        ("entry", bought), ("stop_loss", bought)
    ]
    assert stored(db, "SELECT COUNT(*) FROM positions") == [(0,)]
    assert stored(db, "SELECT rule, outcome FROM signals ORDER BY seq") == [
        ("entry", "executed"), ("stop_loss", "executed")
    ]
    cash = float(stored(db, "SELECT value FROM meta WHERE key = 'cash'")[0][0])
    fees = trades["commission"].sum()
    assert cash == pytest.approx(settings.engine.simulation_balance + bought * (9.2 - 10.0) - fees, abs=1e-6)


def test_first_take_profit_then_dynamic_take_profit(tmp_path):
    bars = close_bars({CODE: [10.0, 10.7, 10.2]})
    engine = run_replay(fast_settings(tmp_path), ReplayFeed.from_bars(bars, tick_mode="close"),
                        entry_days(bars, {CODE: [0]}))

    trades = engine.trades()
    bought = lots(UNIT, 10.0)
    first = int(math.floor(bought * 0.6 / LOT)) * LOT
    assert trades["rule"].tolist() == ["entry", "take_profit_initial", "take_profit_dynamic"]
    assert trades["volume"].tolist() == [bought, first, bought - first]
    # +7% reached: the 5% tier keeps 96% of the high, 10.7 * 0.96 = 10.272, so 10.2 exits
    assert trades["price"].tolist() == [10.0, 10.7, 10.2]
    assert engine.positions().empty


def test_grid_buy_steps_the_grid_and_is_stored(tmp_path):
    bars = close_bars({CODE: [10.0, 9.3, 9.6]})
    settings = fast_settings(tmp_path)
    engine = run_replay(settings, ReplayFeed.from_bars(bars, tick_mode="close"), entry_days(bars, {CODE: [0]}))

    trades = engine.trades()
    assert trades["rule"].tolist() == ["entry", "grid_buy"]
    assert trades["volume"].tolist() == [lots(UNIT, 10.0), lots(UNIT, 9.3)]
    pos = engine.positions().set_index("stock_code").loc[CODE]
    assert pos["grid_k"] == 1 and pos["base_cost"] == 10.0
    assert pos["next_grid_price"] == pytest.approx(10.0 * 0.86)
    assert stored(settings.database_path, "SELECT grid_k, volume FROM positions") == [(1, int(trades["volume"].sum()))]


def test_restart_restores_the_book_and_continues(tmp_path):
    bars = close_bars({CODE: [10.0, 10.7, 10.9, 10.2]})
    settings = fast_settings(tmp_path)
    entries = entry_days(bars, {CODE: [0]})
    first = run_replay(settings, ReplayFeed.from_bars(bars.iloc[:2], tick_mode="close"), entries)
    before = first.positions()
    assert first.trades()["rule"].tolist() == ["entry", "take_profit_initial"]

    second = Engine(settings, feed=ReplayFeed.from_bars(bars, tick_mode="close"), entries=entries)
    restored = second.positions()
    # the last price comes back with its time: holdings are not valued at cost until the next tick
    pd.testing.assert_frame_equal(restored, before)
    assert restored["price"].iloc[0] == 10.7 and restored["price"].iloc[0] != restored["cost"].iloc[0]
    assert second.snapshot().cash == first.snapshot().cash
    second.start()
    try:
        assert second.wait_idle(30)
    finally:
        second.stop()
    # the days already processed are skipped; the holding goes on with tp_done and its high
    assert second.trades()["rule"].tolist() == ["entry", "take_profit_initial", "take_profit_dynamic"]
    assert second.status()["monitor"]["skipped_ticks"] == 2


def test_auto_trading_off_records_every_signal_and_executes_none(tmp_path):
    bars = close_bars({CODE: [10.0, 9.2, 9.0], "000001.SZ": [5.0, 5.1, 5.2]})
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    engine = Engine(fast_settings(tmp_path, auto_trading=False), feed=feed,
                    entries=entry_days(bars, {CODE: [0], "000001.SZ": [0, 2]}))
    engine.start()
    try:
        feed.step(engine)  # day 1: two entry signals
        engine.buy(CODE, 1000)  # manual orders work with auto trading off
        feed.step(engine, 2)  # day 2: a stop loss on the manual holding; day 3: an entry, the stop loss again
    finally:
        engine.stop()
    signals = engine.signals()
    rules = signals[signals["rule"] != "manual"]
    assert rules[["stock_code", "rule"]].values.tolist() == [
        ["000001.SZ", "entry"], [CODE, "entry"], [CODE, "stop_loss"], ["000001.SZ", "entry"], [CODE, "stop_loss"]
    ]
    assert set(rules["outcome"]) == {"not_executed"}
    assert (rules["message"] == "auto trading is off").all()
    assert engine.trades()["rule"].tolist() == ["manual"]


def test_t_plus_1_blocks_a_same_day_sell(tmp_path):
    # one day in ohlc: ticks at 09:30 (10.0), 10:30 (high 10.1), 13:30 (low 9.0), 14:57 (close 9.1)
    bars = close_bars({CODE: [10.0, 9.1]})
    bars.loc[0, ["open", "high", "low", "close"]] = [10.0, 10.1, 9.0, 9.1]
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="ohlc"))
    engine = Engine(fast_settings(tmp_path), feed=feed)
    engine.start()
    try:
        feed.step(engine)  # 09:30 at 10.0
        engine.buy(CODE, 2000)
        feed.step(engine, 2)  # 10:30 at 10.1, 13:30 at 9.0: the stop loss fires, nothing is available
        with pytest.raises(InsufficientPosition):
            engine.sell(CODE, 2000)
        feed.step(engine, 2)  # the close, then the next day's open at 9.1: sold
    finally:
        engine.stop()
    signals = engine.signals().set_index("rule")
    blocked = signals.loc["stop_loss"].iloc[0]
    assert blocked["outcome"] == "nothing_available" and blocked["volume"] == 0
    trades = engine.trades()
    assert trades["rule"].tolist() == ["manual", "stop_loss"]
    assert trades["time"].iloc[1].date() > trades["time"].iloc[0].date()


class DriftingClock(ReplayClock):
    """Replay time that runs 61 s ahead on every reading: every signal is stale at execution."""

    def __init__(self) -> None:
        super().__init__()
        self.drift = dt.timedelta()

    def now(self) -> dt.datetime:
        self.drift += dt.timedelta(seconds=61)
        return super().now() + self.drift


def test_stale_signals_are_dropped_and_recorded(tmp_path):
    bars = close_bars({CODE: [10.0, 10.1]})
    feed = ReplayFeed.from_bars(bars, tick_mode="close", clock=DriftingClock())
    engine = run_replay(fast_settings(tmp_path), feed, entry_days(bars, {CODE: [0, 1]}))
    assert engine.trades().empty
    signals = engine.signals()
    assert signals["outcome"].tolist() == ["stale", "stale"]
    assert signals["message"].str.contains("between detection and execution").all()


def test_duplicate_signals_are_refused_while_an_order_is_in_flight(tmp_path):
    bars = close_bars({CODE: [10.0, 10.1, 10.2]})
    settings = fast_settings(tmp_path, call_timeout=0.3, signal_repeat_seconds=30 * 86400.0)
    broker = DelayedBroker(settings)
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    engine = Engine(settings, broker=broker, feed=feed, entries=entry_days(bars, {CODE: [0, 1]}))
    engine.start()
    try:
        feed.step(engine)  # the entry is at the broker, its fill held back
        feed.step(engine)  # the same entry again for the same (empty) holding: refused
        assert len(broker.submitted) == 1
        broker.release()
        wait_for(lambda: len(engine.trades()) == 1, what="the held fill")
        feed.step(engine)
    finally:
        engine.stop()
    assert engine.signals()["outcome"].tolist() == ["executed", "duplicate"]
    assert engine.trades()["rule"].tolist() == ["entry"]


def test_price_limit_blocks_a_rule_and_the_signal_says_so(tmp_path):
    # a ChiNext stock (20% limits) falls 20% to its down-limit: the stop loss fires but may not sell
    code = "300001.SZ"
    bars = close_bars({code: [10.0, 8.0, 7.9]})
    engine = run_replay(fast_settings(tmp_path), ReplayFeed.from_bars(bars, tick_mode="close"),
                        entry_days(bars, {code: [0]}))
    signals = engine.signals()
    assert signals[["rule", "outcome"]].values.tolist() == [
        ["entry", "executed"], ["stop_loss", "price_limit"], ["stop_loss", "executed"]
    ]
    assert engine.trades()["price"].tolist() == [10.0, 7.9]


@pytest.mark.parametrize(("tick_mode", "entries"), [("ohlc", "macd"), ("close", "macd"), ("close", "always")])
def test_replay_matches_the_backtest_trade_for_trade(tmp_path, tick_mode, entries):
    from miniqmt_lab.backtest import run_backtest

    bars = sample_bars(8, 160, seed=11)
    settings = fast_settings(tmp_path)
    engine = run_replay(settings, ReplayFeed.from_bars(bars, tick_mode=tick_mode), entries)
    expected = run_backtest(bars, settings.rules, entries=entries, init_cash=settings.engine.simulation_balance,
                            tick_mode=tick_mode, fees=settings.fees).trades
    assert len(expected) > 20 and set(expected["rule"]) >= {"entry", "stop_loss", "take_profit_initial"}
    pd.testing.assert_frame_equal(engine.trades(), expected.reset_index(drop=True))
    wait_for(lambda: not engine.running)
    # the paper broker's own ledger agrees with the book
    assert engine.snapshot().cash == pytest.approx(engine.broker.asset().cash, abs=1e-9)
