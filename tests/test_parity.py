"""The core promise: the live engine (replay clock, paper broker) and the backtest make the same trades.

Same tick streams through both sides — crafted paths that fire each rule, and seeded random bars across
several stocks, boards and days — must give identical trade lists: time, code, side, price, volume,
fees and rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from miniqmt_lab.backtest import run_backtest
from miniqmt_lab.bars import sample_bars, trading_days
from miniqmt_lab.config import Settings
from miniqmt_lab.engine import Engine, ReplayFeed
from miniqmt_lab.schema import TRADE_COLUMNS

pytestmark = [pytest.mark.timeout(300)]

FAST = {
    "auto_trading": True,
    "monitor_interval": 0.01,
    "strategy_interval": 0.05,
    "data_update_interval": 0.5,
    "call_timeout": 5.0,
    "position_query_interval": 0.05,
    "sqlite_sync_interval": 0.5,
    "thread_check_interval": 0.5,
    "restart_cooldown": 0.0,
    "idle_sleep": 0.05,
}


def engine_trades(tmp_path: Path, bars: pd.DataFrame, entries, tick_mode: str, **rule_values) -> pd.DataFrame:
    settings = Settings().with_values(
        data_dir=str(tmp_path / "data"), log_dir=str(tmp_path / "logs"), **FAST, **rule_values
    )
    engine = Engine(settings, feed=ReplayFeed.from_bars(bars, tick_mode=tick_mode), entries=entries)
    engine.start()
    try:
        assert engine.wait_idle(180), "the replay did not finish"
    finally:
        engine.stop()
    return engine.trades()


def backtest_trades(bars: pd.DataFrame, entries, tick_mode: str, **rule_values) -> pd.DataFrame:
    settings = Settings().with_values(**rule_values)
    return run_backtest(
        bars, settings.rules, entries=entries, init_cash=settings.engine.simulation_balance, tick_mode=tick_mode
    ).trades


def normalised(trades: pd.DataFrame) -> pd.DataFrame:
    out = trades.loc[:, list(TRADE_COLUMNS)].reset_index(drop=True).copy()
    out["time"] = pd.to_datetime(out["time"]).dt.tz_localize(None).astype("datetime64[us]")
    out["volume"] = out["volume"].astype(np.int64)
    for col in ("price", "amount", "commission"):
        out[col] = out[col].astype(float).round(6)
    out["side"] = out["side"].astype(str)
    out["rule"] = out["rule"].astype(str)
    return out


def assert_parity(tmp_path, bars, entries, tick_mode="ohlc", min_trades=1, **rule_values) -> pd.DataFrame:
    live = normalised(engine_trades(tmp_path, bars, entries, tick_mode, **rule_values))
    research = normalised(backtest_trades(bars, entries, tick_mode, **rule_values))
    pd.testing.assert_frame_equal(live, research, check_dtype=False)
    assert len(live) >= min_trades
    return live


def path_bars(paths: dict[str, list[tuple[float, float, float, float]]], start: str = "2024-03-04") -> pd.DataFrame:
    """Daily OHLC bars from explicit (open, high, low, close) tuples per code."""
    n = max(len(p) for p in paths.values())
    days = trading_days(start, n)
    rows = [
        (code, "", day, o, h, lo, c, 1e6, 1e6 * c)
        for code, path in paths.items()
        for day, (o, h, lo, c) in zip(days, path, strict=False)
    ]
    return pd.DataFrame(
        rows, columns=["stock_code", "stock_name", "date", "open", "high", "low", "close", "volume", "amount"]
    )


def first_day_entries(bars: pd.DataFrame) -> pd.DataFrame:
    dates = pd.DatetimeIndex(sorted(pd.to_datetime(bars["date"]).unique()))
    codes = sorted(bars["stock_code"].unique())
    frame = pd.DataFrame(False, index=dates, columns=codes)
    frame.iloc[0] = True
    return frame


def flat(price: float) -> tuple[float, float, float, float]:
    return (price, price, price, price)


def test_crafted_stop_loss_take_profits_and_grid(tmp_path):
    bars = path_bars(
        {
            # entry 10 -> grid buy at 9.3 -> stop loss below 9.64 * 0.925
            "000001.SZ": [flat(10.0), (9.8, 9.9, 9.3, 9.5), flat(9.4), (9.2, 9.3, 8.8, 8.9), flat(8.9)],
            # entry 20 -> first take-profit at the high 21.3 -> high 23 -> dynamic exit below 20.7
            "600000.SH": [flat(20.0), (20.5, 21.3, 20.4, 21.2), (21.5, 23.0, 21.4, 22.8), (22.0, 22.1, 20.6, 20.8),
                          flat(21.0)],
            # STAR board (minimum buy 200): 300 shares bought, the first take-profit sells 60% rounded down: 100
            "688981.SH": [flat(60.0), flat(61.0), (62.0, 64.0, 62.0, 63.9), flat(63.0), flat(63.0)],
        }
    )
    live = assert_parity(tmp_path, bars, first_day_entries(bars), min_trades=8)
    assert {"entry", "grid_buy", "stop_loss", "take_profit_initial", "take_profit_dynamic"} <= set(live["rule"])


def test_crafted_limit_down_blocks_stop_loss_and_t_plus_one(tmp_path):
    bars = path_bars(
        {
            # bought at the close of day 1; day 2 opens limit-down (9.0): no sell at the limit, sold at 9.1
            "600000.SH": [flat(10.0), (9.0, 9.1, 9.0, 9.1), flat(9.1)],
            # ChiNext (20% limits): a grid buy at the open of day 2, then the stop loss that day may only
            # sell the 2000 shares held since day 1 (T+1); the 2100 bought that day go on day 3
            "300001.SZ": [flat(10.0), (9.3, 9.3, 8.8, 8.9), flat(8.9)],
        }
    )
    live = assert_parity(tmp_path, bars, first_day_entries(bars), min_trades=6)
    sells = live[live["side"] == "SELL"]
    limited = sells[sells["stock_code"] == "600000.SH"]
    assert list(limited["price"]) == [9.1]
    t1 = sells[sells["stock_code"] == "300001.SZ"]
    assert list(t1["volume"]) == [2000, 2100] and t1["time"].nunique() == 2


def test_crafted_close_mode_and_cash_freed_within_a_round(tmp_path):
    # little cash: the stop loss of the lower code frees cash for the entry of the higher code in one round
    bars = path_bars(
        {
            "000001.SZ": [flat(10.0), flat(9.2), flat(9.2)],
            "600000.SH": [flat(10.0), flat(10.0), flat(10.0)],
        }
    )
    entries = first_day_entries(bars)
    entries.iloc[1, entries.columns.get_loc("600000.SH")] = True
    live = assert_parity(
        tmp_path, bars, entries, tick_mode="close", min_trades=3, position_unit=20000.0, simulation_balance=21000.0
    )
    assert list(live["rule"]) == ["entry", "stop_loss", "entry"]
    assert live["time"].iloc[1] == live["time"].iloc[2]  # the same round


@pytest.mark.parametrize("seed", [3, 11])
def test_seeded_random_sessions(tmp_path, seed):
    bars = sample_bars(n_stocks=6, n_days=80, seed=seed)
    live = assert_parity(tmp_path, bars, "macd", min_trades=4)
    assert live["stock_code"].nunique() >= 2


def test_seeded_random_close_mode_with_changed_rules(tmp_path):
    bars = sample_bars(n_stocks=5, n_days=60, seed=5)
    rng = np.random.default_rng(5)
    entries = pd.DataFrame(
        rng.random((bars["date"].nunique(), bars["stock_code"].nunique())) < 0.15,
        index=pd.DatetimeIndex(sorted(pd.to_datetime(bars["date"]).unique())),
        columns=sorted(bars["stock_code"].unique()),
    )
    assert_parity(
        tmp_path,
        bars,
        entries,
        tick_mode="close",
        min_trades=4,
        stop_loss_ratio=-0.04,
        initial_take_profit_ratio=0.03,
        grid_levels=(0.97, 0.94, 0.91),
    )
