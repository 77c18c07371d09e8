"""The backtest on real-data-shaped cases (rules.md, "Real market data" and "Fills, fees and A-share rules").

Ex-dates with a holding and limits that day, cash dividends, rights, vendor suspension rows, MACD on each
stock's own days, new listings, bad ticks, board order sizes, dated fees and blocked signals: each worked
out by hand in the comments. The file also runs as plain Python (``test_same_without_numba``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from miniqmt_lab.backtest import prepare_bars, run_backtest, sweep
from miniqmt_lab.bars import sample_bars
from miniqmt_lab.indicators import golden_cross_nb, macd_nb
from miniqmt_lab.market import InvalidMarketData
from miniqmt_lab.schema import EVENT_COLUMNS, SIGNAL_COLUMNS

DAYS = pd.bdate_range("2024-03-04", periods=30)  # no holiday in range: every weekday trades
BIG = {"position_unit": 60_000.0, "max_position_value": 100_000.0, "grid_enabled": False}


def bars_of(paths: dict[str, list], days: pd.DatetimeIndex = DAYS) -> pd.DataFrame:
    """Daily bars from ``{code: [bar, ...]}``: a flat price, (open, high, low, close), a dict of columns
    (a vendor row as it comes), or None (no row)."""
    rows = []
    for code, bars in paths.items():
        for day, bar in zip(days, bars, strict=False):
            if bar is None:
                continue
            row = {"stock_code": code, "stock_name": "", "date": day, "volume": 1e6, "amount": 1e7}
            if isinstance(bar, dict):
                row.update(bar)
            else:
                o, h, lo, c = (bar, bar, bar, bar) if isinstance(bar, float | int) else bar
                row.update(open=o, high=h, low=lo, close=c)
            rows.append(row)
    return pd.DataFrame(rows)


def first_day(paths: dict[str, list], days: pd.DatetimeIndex = DAYS) -> pd.DataFrame:
    frame = pd.DataFrame(False, index=days[: max(len(v) for v in paths.values())], columns=list(paths))
    frame.iloc[0] = True
    return frame


def trades_of(result) -> list[tuple]:
    return [(int(DAYS.get_loc(t.time.normalize())), t.stock_code, t.side, round(t.price, 4), int(t.volume),
             round(t.commission, 2), t.rule) for t in result.trades.itertuples()]


# -- corporate actions ----------------------------------------------------------------------------


def ex_date_bars() -> dict[str, list]:
    # day 0 bought at 30.00; day 2 is a 10-for-4 bonus and 0.35 dividend ex-date: reference price
    # (30 - 0.35) / 1.4 = 21.18, band 19.06 .. 23.30; the day opens at the down-limit
    return {"605389.SH": [30.0, 30.0, (19.06, 19.6, 19.06, 19.5), 19.5]}


EX_ACTIONS = pd.DataFrame({"stock_code": ["605389.SH"], "ex_date": [DAYS[2]], "cash_dividend": [0.35],
                           "bonus_ratio": [0.4], "rights_ratio": [0.0], "rights_price": [0.0]})


def test_bonus_share_ex_date_with_a_holding_and_limits_that_day():
    paths = ex_date_bars()
    result = run_backtest(bars_of(paths), BIG, entries=first_day(paths), actions=EX_ACTIONS)
    # cost 30 -> (30 - 0.35) / 1.4 = 21.1786: stop level 19.59. Open and low 19.06 sit on the down-limit:
    # the stop fires and is blocked; the high 19.60 is above the stop; the close 19.50 sells the 2000
    # shares held before the ex-date (the 800 bonus shares are available the next day, sold then).
    assert trades_of(result) == [
        (0, "605389.SH", "BUY", 30.0, 2000, 15.6, "entry"),  # 60000: 15.00 + 0.60
        (2, "605389.SH", "SELL", 19.5, 2000, 29.64, "stop_loss"),  # 39000: 9.75 + 19.50 + 0.39
        (3, "605389.SH", "SELL", 19.5, 800, 12.96, "stop_loss"),  # 15600: 5.00 + 7.80 + 0.16
    ]
    events = result.events
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert events.to_dict("records") == [{
        "time": pd.Timestamp(DAYS[2]), "stock_code": "605389.SH", "kind": "ex_rights", "volume_before": 2000,
        "volume_after": 2800, "cash": 700.0,
        "message": "4 bonus shares per 10: 2000 -> 2800 shares; dividend 0.35 yuan per share: +700.00 yuan"}]
    blocked = result.signals
    assert list(blocked.columns) == [c for c in SIGNAL_COLUMNS if c != "id"]
    assert blocked[["time", "rule", "price", "outcome"]].to_dict("records") == [
        {"time": DAYS[2] + pd.Timedelta("09:30:00"), "rule": "stop_loss", "price": 19.06, "outcome": "price_limit"},
        {"time": DAYS[2] + pd.Timedelta("10:30:00"), "rule": "stop_loss", "price": 19.06, "outcome": "price_limit"},
    ]
    assert result.cash == pytest.approx(1_000_000 - 60_015.6 + 700 + 39_000 - 29.64 + 15_600 - 12.96)


def test_without_the_actions_table_the_ex_date_is_a_false_crash():
    paths = ex_date_bars()
    result = run_backtest(bars_of(paths), BIG, entries=first_day(paths))
    # every tick of day 2 lies below the band of the raw close 30 (27.00 .. 33.00): bad data, skipped;
    # day 3 (band from 19.50) sells at a 35% "loss" that is not real
    assert trades_of(result)[1:] == [(3, "605389.SH", "SELL", 19.5, 2000, 29.64, "stop_loss")]
    assert result.events.empty and result.signals.empty


def test_actions_come_from_the_frame_attrs_as_the_bar_store_sets_them():
    paths = ex_date_bars()
    bars = bars_of(paths)
    bars.attrs["actions"] = EX_ACTIONS
    assert trades_of(run_backtest(bars, BIG, entries=first_day(paths))) == trades_of(
        run_backtest(bars_of(paths), BIG, entries=first_day(paths), actions=EX_ACTIONS))


def test_sweeps_take_the_actions_too():
    paths = ex_date_bars()
    result = sweep(bars_of(paths), {"stop_loss_ratio": [-0.075, -0.5]}, entries=first_day(paths), progress=False,
                   base=BIG, actions=EX_ACTIONS)
    first = result.run(0)
    assert trades_of(first) == trades_of(run_backtest(bars_of(paths), BIG, entries=first_day(paths),
                                                      actions=EX_ACTIONS))
    assert len(first.events) == 1 and result.table["trades"].tolist() == [1, 0]


def test_cash_dividend_lowers_cost_and_pays_cash():
    paths = {"600000.SH": [10.0, 10.0, 9.5, 10.07]}
    actions = pd.DataFrame({"stock_code": ["600000"], "ex_date": [DAYS[2].date()], "cash_dividend": [0.5]})
    result = run_backtest(bars_of(paths), entries=first_day(paths), actions=actions, tick_mode="close")
    # 2000 bought at 10.00; ex-date: cost 9.50, +1000 yuan; 10.07 is +6% on 9.50: the first take-profit
    assert trades_of(result) == [
        (0, "600000.SH", "BUY", 10.0, 2000, 5.2, "entry"),
        (3, "600000.SH", "SELL", 10.07, 1200, 11.16, "take_profit_initial"),  # 12084: 5.00 + 6.04 + 0.12
    ]
    assert result.events[["volume_before", "volume_after", "cash"]].to_dict("records") == [
        {"volume_before": 2000, "volume_after": 2000, "cash": 1000.0}]
    without = run_backtest(bars_of(paths), entries=first_day(paths), tick_mode="close")
    assert len(without.trades) == 1  # 10.07 on a cost of 10.00 is +0.7%


def test_rights_change_only_the_base_price():
    # 3 rights per 10 at 8.00 on a close of 12.00: reference (12 + 2.4) / 1.3 = 11.08, band 9.97 .. 12.19
    paths = {"600000.SH": [12.0, 10.0]}
    actions = pd.DataFrame({"stock_code": ["600000.SH"], "ex_date": [DAYS[1]], "rights_ratio": [0.3],
                            "rights_price": [8.0]})
    result = run_backtest(bars_of(paths), entries=first_day(paths), actions=actions, tick_mode="close")
    # 10.00 is inside the ex-date's band: the stop loss (-16.7% on a cost of 12.00) sells
    assert [t[2:5] for t in trades_of(result)] == [("BUY", 12.0, 1600), ("SELL", 10.0, 1600)]
    assert result.events[["volume_before", "volume_after", "cash"]].to_dict("records") == [
        {"volume_before": 1600, "volume_after": 1600, "cash": 0.0}]
    # without the rights, 10.00 is below the band of 12.00 (10.80 .. 13.20): a bad tick
    assert len(run_backtest(bars_of(paths), entries=first_day(paths), tick_mode="close").trades) == 1


def test_bad_action_tables_are_refused_with_the_row():
    bars = bars_of({"600000.SH": [10.0, 10.0]})
    bad = pd.DataFrame({"stock_code": ["600000.SH"], "ex_date": [DAYS[1]], "bonus_ratio": [-0.1]})
    with pytest.raises(InvalidMarketData, match="bonus_ratio must be a number >= 0"):
        run_backtest(bars, actions=bad)
    with pytest.raises(InvalidMarketData, match="is a fund"):
        run_backtest(bars, actions=bad.assign(stock_code="510300.SH", bonus_ratio=0.1))
    with pytest.raises(InvalidMarketData, match="lack column"):
        run_backtest(bars, actions=pd.DataFrame({"stock_code": ["600000.SH"]}))


# -- suspensions and entries on each stock's own days ---------------------------------------------


def test_vendor_suspension_rows_give_no_tick_and_carry_the_close():
    placeholder = {"open": 0.0, "high": 0.0, "low": 0.0, "close": 5.0, "volume": 0.0, "amount": 0.0}
    paths = {"603003.SH": [10.0, placeholder, (9.0, 9.2, 9.0, 9.1)]}
    entries = pd.DataFrame({"603003.SH": [True, True, False]}, index=DAYS[:3])
    result = run_backtest(bars_of(paths), entries=entries)
    # no buy on the suspended day; day 2's base is the last traded close 10.00: down-limit 9.00 blocks the
    # open and the low, the high 9.20 (-8%) sells
    assert trades_of(result) == [(0, "603003.SH", "BUY", 10.0, 2000, 5.2, "entry"),
                                 (2, "603003.SH", "SELL", 9.2, 2000, 14.38, "stop_loss")]  # 18400: 5+9.2+0.18
    assert result.equity.iloc[1] == pytest.approx(1_000_000 - 20_005.2 + 2000 * 10.0)  # at 10.00, not 5.00
    zero_open = {"open": 0.0, "high": 10.5, "low": 9.5, "close": 10.2, "volume": 1e5}
    assert len(run_backtest(bars_of({"603003.SH": [zero_open, 10.0]}), entries="always").trades) == 1


def test_macd_runs_over_each_stock_own_traded_closes():
    rng = np.random.default_rng(4)
    closes = np.round(10 * np.exp(np.cumsum(rng.normal(0, 0.02, 120))), 2)
    days = pd.bdate_range("2024-01-01", periods=120)
    gap = np.zeros(120, dtype=bool)
    gap[50:58] = True
    stock = [None if g else float(c) for c, g in zip(closes, gap, strict=True)]
    other = [float(c) for c in np.round(20 * np.exp(np.cumsum(rng.normal(0, 0.02, 120))), 2)]
    alone = prepare_bars(bars_of({"605389.SH": stock}, days))
    crosses = golden_cross_nb(*macd_nb(closes[~gap])[:2])
    assert alone.macd_entries().tolist() == crosses.tolist()
    # vendor placeholder rows instead of missing rows, and another stock trading through the gap
    rows = [{"open": 0.0, "high": 0.0, "low": 0.0, "close": 0.0, "volume": 0.0} if g else float(c)
            for c, g in zip(closes, gap, strict=True)]
    both = prepare_bars(bars_of({"605389.SH": rows, "600000.SH": other}, days))
    mine = both.stream.col == both.codes.index("605389.SH")
    assert both.macd_entries()[mine & both.stream.traded].tolist() == crosses.tolist()


def test_a_stock_trades_the_same_alone_and_in_a_portfolio_with_cash_to_spare():
    bars = sample_bars(n_stocks=8, n_days=200, seed=3)  # one stock is suspended for a stretch
    suspended = bars["stock_code"].value_counts().idxmin()
    ample = {"init_cash": 1e9}
    portfolio = run_backtest(bars, **ample).trades
    alone = run_backtest(bars[bars["stock_code"] == suspended], **ample).trades
    mine = portfolio[portfolio["stock_code"] == suspended].reset_index(drop=True)
    assert len(alone) >= 2
    pd.testing.assert_frame_equal(mine, alone.reset_index(drop=True))


# -- new listings, bad ticks ------------------------------------------------------------------------


def test_new_listings_trade_without_limits_for_five_days():
    paths = {"301555.SZ": [20.0, 28.0, 27.0, 27.0, 27.0, 40.0]}
    listed = pd.DataFrame({"stock_code": ["301555.SZ"], "stock_name": ["新股"], "listing_date": [DAYS[0]]})
    result = run_backtest(bars_of(paths), entries=first_day(paths), instruments=listed, tick_mode="close")
    # day 1 (+40%) is no bad tick on a new listing: the first take-profit sells 60% of 1000
    assert [t[:5] for t in trades_of(result)] == [(0, "301555.SZ", "BUY", 20.0, 1000),
                                                  (1, "301555.SZ", "SELL", 28.0, 600)]
    # day 5 is the sixth trading day: limits again, +48% is outside the band of 27.00: skipped
    assert result.bars.band(5, "301555.SZ") == (32.4, 21.6) and np.isnan(result.bars.bases[4, 0])
    # unknown listing date: day 1 is outside the band of 20.00 (16.00 .. 24.00), skipped; day 2 (27.00,
    # band from the close 28.00) takes the profit
    unknown = run_backtest(bars_of(paths), entries=first_day(paths), tick_mode="close")
    assert [t[:5] for t in trades_of(unknown)][1:] == [(2, "301555.SZ", "SELL", 27.0, 600)]


def test_a_tick_outside_the_band_changes_nothing():
    # 600000 day 1: a fat-finger low of 0.50 (no stop loss); day 2: a high of 50.00 (no take-profit);
    # 600004 day 1: a close of 50.00 with an entry signal (no entry)
    paths = {"600000.SH": [10.0, (10.0, 10.2, 0.5, 10.1), (10.0, 50.0, 9.9, 10.0)],
             "600004.SH": [10.0, (10.0, 10.2, 9.9, 50.0), 50.0]}
    entries = pd.DataFrame({"600000.SH": [True, False, False], "600004.SH": [False, True, False]},
                           index=DAYS[:3])
    result = run_backtest(bars_of(paths), entries=entries)
    assert trades_of(result) == [(0, "600000.SH", "BUY", 10.0, 2000, 5.2, "entry")]
    assert result.signals.empty


# -- order sizes, fees, blocked signals ---------------------------------------------------------------


def test_star_and_bj_buy_in_one_share_steps_and_sell_what_the_board_allows():
    paths = {"688981.SH": [60.0, 63.6, 55.0], "830799.BJ": [20.0, 21.2, 21.2], "302132.SZ": [10.0, 10.6, 10.6]}
    result = run_backtest(bars_of(paths), entries=first_day(paths), tick_mode="close")
    volumes = [(t[0], t[1], t[2], t[4], t[6]) for t in trades_of(result)]
    assert volumes == [
        (0, "302132.SZ", "BUY", 2000, "entry"),
        (0, "688981.SH", "BUY", 333, "entry"),  # 20000 / 60 = 333.3 -> 333 (1-share steps)
        (0, "830799.BJ", "BUY", 1000, "entry"),
        (1, "302132.SZ", "SELL", 1200, "take_profit_initial"),
        (1, "688981.SH", "SELL", 200, "take_profit_initial"),  # 199.8 -> 199, raised to STAR's 200
        (1, "830799.BJ", "SELL", 600, "take_profit_initial"),
        (2, "688981.SH", "SELL", 133, "stop_loss"),  # the odd remainder goes whole
    ]


def test_each_trade_pays_the_stamp_duty_of_its_own_day():
    days = pd.DatetimeIndex(["2023-08-24", "2023-08-25", "2023-08-28"])
    paths = {"600000.SH": [10.0, 9.2, 9.2], "600004.SH": [10.0, 10.0, 9.2]}
    result = run_backtest(bars_of(paths, days), entries=first_day(paths, days), tick_mode="close")
    sells = result.trades[result.trades["side"] == "SELL"]
    # 18400 each: 5.00 commission + 0.18 transfer, and stamp duty 18.40 (0.1%) on 08-25, 9.20 (0.05%) on 08-28
    assert sells["commission"].tolist() == pytest.approx([23.58, 14.38])


def test_blocked_decisions_are_signals_with_the_kernel_outcome():
    paths = {"600000.SH": [10.0, 10.0], "600004.SH": [10.0, 10.0]}
    result = run_backtest(bars_of(paths), entries="always", init_cash=25_000.0, tick_mode="close")
    # 600000 buys 2000 (20005.20); 600004 meets 4994.80 yuan: 400 shares fit (4005.04); day 1 both are held
    assert result.trades["volume"].tolist() == [2000, 400] and result.signals.empty
    poor = run_backtest(bars_of(paths), entries="always", init_cash=1_000.0, tick_mode="close").signals
    assert poor[["stock_code", "rule", "outcome", "volume"]].drop_duplicates().to_dict("records") == [
        {"stock_code": "600000.SH", "rule": "entry", "outcome": "no_cash", "volume": 0},
        {"stock_code": "600004.SH", "rule": "entry", "outcome": "no_cash", "volume": 0},
    ]
    assert len(poor) == 4 and (poor["message"] == "cash does not cover the board's minimum buy with fees").all()


def test_same_without_numba():
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        pytest.skip("this run is the plain-Python one")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:cacheprovider"],
        env={**os.environ, "NUMBA_DISABLE_JIT": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
