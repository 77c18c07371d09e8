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
from miniqmt_lab.schema import EVENT_COLUMNS, TRADE_COLUMNS

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


def engine_run(tmp_path: Path, bars: pd.DataFrame, entries, tick_mode: str, **rule_values) -> Engine:
    settings = Settings().with_values(
        data_dir=str(tmp_path / "data"), log_dir=str(tmp_path / "logs"), **FAST, **rule_values
    )
    engine = Engine(settings, feed=ReplayFeed.from_bars(bars, tick_mode=tick_mode), entries=entries)
    engine.start()
    try:
        assert engine.wait_idle(180), "the replay did not finish"
    finally:
        engine.stop()
    return engine


def engine_trades(tmp_path: Path, bars: pd.DataFrame, entries, tick_mode: str, **rule_values) -> pd.DataFrame:
    return engine_run(tmp_path, bars, entries, tick_mode, **rule_values).trades()


def backtest_run(bars: pd.DataFrame, entries, tick_mode: str, **rule_values):
    settings = Settings().with_values(**rule_values)
    return run_backtest(
        bars, settings.rules, entries=entries, init_cash=settings.engine.simulation_balance, tick_mode=tick_mode
    )


def backtest_trades(bars: pd.DataFrame, entries, tick_mode: str, **rule_values) -> pd.DataFrame:
    return backtest_run(bars, entries, tick_mode, **rule_values).trades


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


SUSPENDED = (0.0, 0.0, 0.0, 0.0)  # a vendor's suspension row: no prices, no volume


def path_bars(paths: dict[str, list[tuple[float, float, float, float] | None]],
              start: str = "2024-03-04") -> pd.DataFrame:
    """Daily OHLC bars from explicit (open, high, low, close) tuples per code; None: no row that day,
    SUSPENDED: a vendor's suspension row (zero prices and volume)."""
    n = max(len(p) for p in paths.values())
    days = trading_days(start, n)
    rows = [
        (code, "", day, o, h, lo, c, 0.0 if bar == SUSPENDED else 1e6, 1e6 * c)
        for code, path in paths.items()
        for day, bar in zip(days, path, strict=False)
        if bar is not None
        for o, h, lo, c in [bar]
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
            # STAR board (minimum buy 200, 1-share steps): 333 shares bought, the first take-profit sells
            # 60% = 199.8 -> 199, raised to the board's minimum sell of 200
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


def test_star_bj_and_302_partial_sells_and_one_share_steps(tmp_path):
    bars = path_bars(
        {
            "302132.SZ": [flat(10.0), flat(10.6), (10.5, 10.6, 9.7, 9.8)],
            # STAR: 20000 / 61.3 = 326 shares; +6% sells 195.6 -> 195, raised to 200; the stop sells 126
            "688368.SH": [flat(61.3), (62.0, 65.0, 61.9, 64.98), (63.0, 63.0, 56.0, 56.5)],
            # BJ (30% limits): 20000 / 7.77 = 2574 shares; +6% sells 1544; the stop sells the 1030 left
            "920118.BJ": [flat(7.77), (7.9, 8.3, 7.8, 8.24), (7.5, 7.6, 7.1, 7.2)],
        }
    )
    live = assert_parity(tmp_path, bars, first_day_entries(bars), min_trades=8)
    volumes = {(row.stock_code, row.rule): row.volume for row in live.itertuples()}
    assert volumes[("688368.SH", "entry")] == 326 and volumes[("688368.SH", "take_profit_initial")] == 200
    assert volumes[("920118.BJ", "entry")] == 2574 and volumes[("920118.BJ", "take_profit_initial")] == 1544


def test_suspension_gaps_with_macd_entries(tmp_path):
    bars = sample_bars(n_stocks=6, n_days=120, seed=21)
    code = sorted(bars["stock_code"].unique())[1]
    gap = bars["stock_code"].eq(code) & bars["date"].isin(sorted(bars["date"].unique())[40:47])
    # vendor placeholder rows instead of missing ones: no prices, no volume
    bars.loc[gap, ["open", "high", "low", "volume", "amount"]] = 0.0
    live = assert_parity(tmp_path, bars, "macd", min_trades=4)
    assert live["stock_code"].nunique() >= 2


def test_new_listings_and_bad_ticks(tmp_path):
    bars = path_bars(
        {
            # listed on the first day: +40% on day 2 is a price, not bad data; the first take-profit sells
            "301555.SZ": [flat(20.0), flat(28.0), flat(27.0)],
            # a fat-finger low of 1.00 and high of 30.00 on day 2 (outside 9.00 .. 11.00): no stop, no high
            "600000.SH": [flat(10.0), (10.0, 30.0, 1.0, 10.2), (10.3, 10.7, 10.3, 10.7)],
        }
    )
    bars.attrs["instruments"] = pd.DataFrame({"stock_code": ["301555.SZ"], "listing_date": [bars["date"].min()]})
    live = assert_parity(tmp_path, bars, first_day_entries(bars), min_trades=4)
    sells = live[live["side"] == "SELL"]
    assert list(zip(sells["stock_code"], sells["price"], strict=True)) == [("301555.SZ", 28.0),
                                                                          ("600000.SH", 10.7)]


def normalised_events(events: pd.DataFrame) -> pd.DataFrame:
    out = events.loc[:, list(EVENT_COLUMNS)].reset_index(drop=True).copy()
    out["time"] = pd.to_datetime(out["time"]).dt.tz_localize(None).astype("datetime64[us]")
    return out.astype({"volume_before": np.int64, "volume_after": np.int64, "cash": float})


def assert_action_parity(tmp_path, bars, entries, tick_mode="ohlc", **rule_values) -> tuple[pd.DataFrame, pd.DataFrame]:
    engine = engine_run(tmp_path, bars, entries, tick_mode, **rule_values)
    research = backtest_run(bars, entries, tick_mode, **rule_values)
    live = normalised(engine.trades())
    pd.testing.assert_frame_equal(live, normalised(research.trades), check_dtype=False)
    events = normalised_events(engine.events())
    pd.testing.assert_frame_equal(events, normalised_events(research.events), check_dtype=False)
    assert len(events) >= 1
    return live, events


def test_bonus_share_ex_date_with_a_holding_and_limits_that_day(tmp_path):
    # bought at 30.00; day 3 is a 10-for-4 bonus and 0.35 dividend ex-date: reference (30 - 0.35) / 1.4 =
    # 21.18, band 19.06 .. 23.30. It opens on the down-limit (the stop is blocked), closes at 19.50 (sold).
    bars = path_bars({"605389.SH": [flat(30.0), flat(30.0), (19.06, 19.6, 19.06, 19.5), flat(19.5)],
                      # 10-for-3 bonus shares on day 4: reference 10.2 / 1.3 = 7.85
                      "600000.SH": [flat(10.0), flat(10.1), flat(10.2), flat(7.9)]})
    days = sorted(bars["date"].unique())
    bars.attrs["actions"] = pd.DataFrame({"stock_code": ["605389.SH", "600000.SH"], "ex_date": [days[2], days[3]],
                                          "cash_dividend": [0.35, 0.0], "bonus_ratio": [0.4, 0.3]})
    live, events = assert_action_parity(tmp_path, bars, first_day_entries(bars), position_unit=60_000.0,
                                        max_position_value=100_000.0, grid_enabled=False)
    assert events[["stock_code", "volume_before", "volume_after", "cash"]].values.tolist() == [
        ["605389.SH", 2000, 2800, 700.0], ["600000.SH", 6000, 7800, 0.0]]
    sells = live[live["stock_code"] == "605389.SH"].iloc[1:]
    assert list(zip(sells["volume"], sells["price"], strict=True)) == [(2000, 19.5), (800, 19.5)]


def test_cash_dividend_lowers_the_cost_on_both_sides(tmp_path):
    bars = path_bars({"600000.SH": [flat(10.0), flat(10.0), flat(9.5), flat(10.07)]})
    days = sorted(bars["date"].unique())
    bars.attrs["actions"] = pd.DataFrame({"stock_code": ["600000.SH"], "ex_date": [days[2]], "cash_dividend": [0.5]})
    live, events = assert_action_parity(tmp_path, bars, first_day_entries(bars), tick_mode="close")
    assert list(live["rule"]) == ["entry", "take_profit_initial"]  # +6% on the cost 9.50 after the dividend
    assert events["cash"].tolist() == [1000.0]
