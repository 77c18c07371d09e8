"""run_backtest on small crafted price paths against hand-computed trade lists.

The whole file also runs as plain Python (``test_same_trades_without_numba`` reruns it in a
subprocess with ``NUMBA_DISABLE_JIT=1``): the loop and the kernel decide the same either way.

Default rules (stop -7.5%, first take-profit +6% selling 60%, dynamic tiers, grid at 93% / 86% of the
first buy, 20,000 yuan per buy, 50,000 cap) and default fees (commission 0.025% min 5, stamp duty
0.05% on sells, transfer 0.001%, each rounded to the cent). Every expected fee below is worked out
in the comment next to it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from miniqmt_lab.backtest import prepare_bars, run_backtest
from miniqmt_lab.backtest.prepare import entry_signals
from miniqmt_lab.config import FeeSettings

Bar = float | tuple[float, float, float, float] | None
DAYS = pd.bdate_range("2024-03-04", periods=30)


def make_bars(paths: dict[str, list[Bar]]) -> pd.DataFrame:
    """Daily bars from ``{code: [bar, ...]}``; a bar is (open, high, low, close), one flat price, or None."""
    rows = []
    for code, bars in paths.items():
        for day, bar in zip(DAYS, bars, strict=False):
            if bar is None:
                continue
            o, h, lo, c = (bar, bar, bar, bar) if isinstance(bar, float | int) else bar
            rows.append({"stock_code": code, "stock_name": "", "date": day, "open": o, "high": h, "low": lo,
                         "close": c, "volume": 1e6, "amount": 1e7})
    return pd.DataFrame(rows)


def entries_on(paths: dict[str, list[Bar]], signals: dict[str, list[int]]) -> pd.DataFrame:
    n = max(len(v) for v in paths.values())
    frame = pd.DataFrame(False, index=DAYS[:n], columns=list(paths))
    for code, days in signals.items():
        frame.loc[DAYS[days], code] = True
    return frame


def trade_list(result) -> list[tuple]:
    t = result.trades
    return [
        (int(DAYS.get_loc(row.time.normalize())), row.stock_code, row.side, round(row.price, 4), row.volume,
         round(row.commission, 2), row.rule)
        for row in t.itertuples()
    ]


def cash_from_trades(result, init_cash: float = 1_000_000.0) -> float:
    t = result.trades
    sign = np.where(t["side"] == "BUY", -1.0, 1.0)
    return init_cash + float((sign * t["amount"]).sum() - t["commission"].sum())


def test_trade_schema_and_stamps():
    paths = {"600000.SH": [10.0, 10.0]}
    result = run_backtest(make_bars(paths), entries="always")
    t = result.trades
    assert list(t.columns) == ["time", "stock_code", "side", "price", "volume", "amount", "commission", "rule"]
    # a daily bar's trades are stamped at 15:00 of its date
    assert t.loc[0, "time"] == pd.Timestamp("2024-03-04 15:00")
    assert t.loc[0, "amount"] == 20_000.0


def test_stop_loss_then_reentry_with_always():
    paths = {"600000.SH": [10.0, (9.5, 9.6, 9.2, 9.3)]}
    result = run_backtest(make_bars(paths), entries="always")
    assert trade_list(result) == [
        # 2000 x 10 = 20000: commission 5.00 (the minimum), transfer 0.20
        (0, "600000.SH", "BUY", 10.0, 2000, 5.20, "entry"),
        # falling bar ticks O 9.5, H 9.6, L 9.2 (-8% <= -7.5%), C 9.3; 18400: 5.00 + stamp 9.20 + transfer 0.18
        (1, "600000.SH", "SELL", 9.2, 2000, 14.38, "stop_loss"),
        # flat again at the close: 'always' buys floor(20000 / 9.3 / 100) lots; 19530: 5.00 + 0.20
        (1, "600000.SH", "BUY", 9.3, 2100, 5.20, "entry"),
    ]
    assert result.cash == pytest.approx(1_000_000 - 20_005.20 + 18_400 - 14.38 - 19_535.20, abs=1e-6)
    assert result.cash == pytest.approx(cash_from_trades(result), abs=1e-6)


def test_take_profit_initial_then_dynamic():
    paths = {
        "600000.SH": [
            10.0,
            (10.2, 10.8, 10.1, 10.7),  # rising: O 10.2, L 10.1, H 10.8 (+8%: first take-profit), C 10.7
            (11.0, 11.5, 10.9, 11.2),  # high 11.5 (+15%): keep 90% -> exit level 10.35
            (10.5, 10.6, 10.3, 10.4),  # falling: O 10.5, H 10.6, L 10.3 <= 10.35 sells the rest
        ]
    }
    result = run_backtest(make_bars(paths), entries=entries_on(paths, {"600000.SH": [0]}))
    assert trade_list(result) == [
        (0, "600000.SH", "BUY", 10.0, 2000, 5.20, "entry"),
        # 60% of 2000 = 1200; 12960: 5.00 + stamp 6.48 + transfer 0.13
        (1, "600000.SH", "SELL", 10.8, 1200, 11.61, "take_profit_initial"),
        # 800 x 10.3 = 8240: 5.00 + stamp 4.12 + transfer 0.08
        (3, "600000.SH", "SELL", 10.3, 800, 9.20, "take_profit_dynamic"),
    ]
    assert result.summary["trades"] == 1 and result.summary["win_rate"] == 1.0


def test_grid_buys_capped_by_max_position_then_exhausted():
    paths = {"600000.SH": [10.0, 9.3, 8.6, 8.0, 8.0]}
    result = run_backtest(make_bars(paths), {"stop_loss_ratio": -0.5}, entries=entries_on(paths, {"600000.SH": [0]}))
    assert trade_list(result) == [
        (0, "600000.SH", "BUY", 10.0, 2000, 5.20, "entry"),
        # 9.3 = 93% of the first buy; 2100 lots, (2000 + 2100) x 9.3 = 38130 <= 50000; 19530: 5.00 + 0.20
        (1, "600000.SH", "BUY", 9.3, 2100, 5.20, "grid_buy"),
        # 8.6 = 86%; 2300 would hold 6400 x 8.6 = 55040 > 50000: lowered to 1700 (49880); 14620: 5.00 + 0.15
        (2, "600000.SH", "BUY", 8.6, 1700, 5.15, "grid_buy"),
        # both levels used: 8.0 buys nothing
    ]


def test_stop_loss_preempts_a_grid_level():
    # at 8.6 the loss is -10.8% on the averaged cost (20000 + 19530) / 4100: the stop decides, not the grid
    paths = {"300001.SZ": [10.0, 9.3, 8.6]}
    result = run_backtest(make_bars(paths), entries=entries_on(paths, {"300001.SZ": [0]}))
    assert [t[-1] for t in trade_list(result)] == ["entry", "grid_buy", "stop_loss"]
    assert result.trades["volume"].tolist() == [2000, 2100, 4100]


def test_t_plus_one_sells_only_shares_bought_before_today():
    # ChiNext (+-20%), so the day's stop price is inside the limits
    paths = {"300001.SZ": [10.0, (9.3, 9.3, 8.9, 8.9), 8.9]}
    result = run_backtest(make_bars(paths), entries=entries_on(paths, {"300001.SZ": [0]}))
    assert trade_list(result) == [
        (0, "300001.SZ", "BUY", 10.0, 2000, 5.20, "entry"),
        (1, "300001.SZ", "BUY", 9.3, 2100, 5.20, "grid_buy"),
        # cost (20000 + 19530) / 4100 = 9.6415; 8.9 is -7.7%: only yesterday's 2000 are available;
        # 17800: 5.00 + stamp 8.90 + transfer 0.18. The close tick fires the stop again and sells nothing.
        (1, "300001.SZ", "SELL", 8.9, 2000, 14.08, "stop_loss"),
        # next day the 2100 bought yesterday are available; 18690: 5.00 + stamp 9.345 -> 9.35 (half up) + 0.19
        (2, "300001.SZ", "SELL", 8.9, 2100, 14.54, "stop_loss"),
    ]


def test_t_plus_one_with_minute_bars_waits_for_the_next_day():
    times = pd.to_datetime(["2024-03-04 09:31", "2024-03-04 09:32", "2024-03-05 09:31"])
    frame = pd.DataFrame({"stock_code": "600000.SH", "time": times, "open": [10.0, 9.2, 9.2], "high": [10.0, 9.2, 9.2],
                          "low": [10.0, 9.2, 9.2], "close": [10.0, 9.2, 9.2]})
    entries = pd.DataFrame({"600000.SH": [True, False, False]}, index=times)
    result = run_backtest(frame, entries=entries)
    # bought at 09:31, -8% at 09:32 the same day: nothing is available; sold at the next day's first bar
    assert [(str(t.time), t.side, t.volume, t.rule) for t in result.trades.itertuples()] == [
        ("2024-03-04 09:31:00", "BUY", 2000, "entry"),
        ("2024-03-05 09:31:00", "SELL", 2000, "stop_loss"),
    ]


def test_limit_down_blocks_the_sell_until_the_price_leaves_the_limit():
    paths = {"600000.SH": [10.0, 9.0, 8.5]}  # 9.0 is the down-limit from 10.0; 8.5 is above 8.1
    entries = entries_on(paths, {"600000.SH": [0]})
    with_limits = run_backtest(make_bars(paths), entries=entries)
    assert trade_list(with_limits)[1:] == [(2, "600000.SH", "SELL", 8.5, 2000, 13.67, "stop_loss")]  # 5 + 8.5 + 0.17
    without = run_backtest(make_bars(paths), entries=entries, realism=False)
    assert trade_list(without)[1:] == [(1, "600000.SH", "SELL", 9.0, 2000, 14.18, "stop_loss")]  # 5 + 9 + 0.18
    # the settings switch turns the limits off as well
    off = run_backtest(make_bars(paths), {"price_limits": False}, entries=entries)
    assert trade_list(off) == trade_list(without)


def test_limit_up_blocks_an_entry():
    paths = {"600000.SH": [10.0, 11.0, 11.0]}  # 11.0 is the up-limit from 10.0, then 12.1 from 11.0
    entries = entries_on(paths, {"600000.SH": [1]})
    assert run_backtest(make_bars(paths), entries=entries).trades.empty
    assert trade_list(run_backtest(make_bars(paths), entries=entries, realism=False)) == [
        (1, "600000.SH", "BUY", 11.0, 1800, 5.20, "entry")  # floor(20000 / 11 / 100) = 18 lots; 19800: 5 + 0.20
    ]


def test_st_name_narrows_the_limit():
    paths = {"600000.SH": [10.0, 9.25, 9.25]}  # 9.25 is the -7.5% stop
    entries = entries_on(paths, {"600000.SH": [0]})
    main_board = run_backtest(make_bars(paths), entries=entries)
    assert [t[0] for t in trade_list(main_board)] == [0, 1]  # above the 10% down-limit 9.00
    frame = make_bars(paths)
    frame["stock_name"] = "*ST Sample"
    st = run_backtest(frame, entries=entries)
    assert [t[0] for t in trade_list(st)] == [0, 2]  # ST: 5% limit, 9.50; next day 8.79 lets it sell


def test_tick_order_depends_on_the_bar_direction():
    entries = entries_on({"600000.SH": [0, 0]}, {"600000.SH": [0]})
    # falling bar: O 10.0, H 10.7 (+7%: take-profit 1200), L 9.2 (-8%: stop sells the other 800), C 9.5
    falling = run_backtest(make_bars({"600000.SH": [10.0, (10.0, 10.7, 9.2, 9.5)]}), entries=entries)
    assert [(t[2], t[3], t[4], t[6]) for t in trade_list(falling)[1:]] == [
        ("SELL", 10.7, 1200, "take_profit_initial"),
        ("SELL", 9.2, 800, "stop_loss"),
    ]
    # rising bar: O 10.0, L 9.2 (stop sells all 2000), H 10.7, C 10.5
    rising = run_backtest(make_bars({"600000.SH": [10.0, (10.0, 10.7, 9.2, 10.5)]}), entries=entries)
    assert [(t[2], t[3], t[4], t[6]) for t in trade_list(rising)[1:]] == [("SELL", 9.2, 2000, "stop_loss")]
    # close-only mode sees 9.5 (-5%) and does nothing
    close_only = run_backtest(make_bars({"600000.SH": [10.0, (10.0, 10.7, 9.2, 9.5)]}), entries=entries,
                              tick_mode="close")
    assert len(close_only.trades) == 1


@pytest.mark.parametrize(("seller", "buyer", "buys_same_day"), [("000001.SZ", "000002.SZ", True),
                                                                 ("000002.SZ", "000001.SZ", False)])
def test_shared_cash_a_sell_pays_for_a_later_buy_in_the_same_round(seller, buyer, buys_same_day):
    paths = {seller: [10.0, 9.2], buyer: [10.0, 10.0]}
    result = run_backtest(make_bars(paths), entries=entries_on(paths, {seller: [0], buyer: [1]}),
                          init_cash=20_010.0, tick_mode="close")
    expected = [
        (0, seller, "BUY", 10.0, 2000, 5.20, "entry"),  # leaves 4.80 yuan
        (1, seller, "SELL", 9.2, 2000, 14.38, "stop_loss"),  # cash 4.80 + 18400 - 14.38 = 18390.42
    ]
    if buys_same_day:
        # 2000 lots do not fit 18390.42; lowered lot by lot to 1800: 18000 + 5.00 + 0.18
        expected.append((1, buyer, "BUY", 10.0, 1800, 5.18, "entry"))
    # otherwise the buyer's code comes first: its entry meets 4.80 yuan, before the sell frees cash
    assert trade_list(result) == expected


def test_a_missing_bar_gives_no_tick_and_values_at_the_last_close():
    paths = {"600000.SH": [10.0, None, 8.5]}  # suspended on day 1
    result = run_backtest(make_bars(paths), entries="always", tick_mode="close")
    assert result.bars.shape == (2, 1)  # the day has no bar at all
    paths = {"600000.SH": [10.0, None, 9.6], "600004.SH": [5.0, 5.0, 5.0]}
    result = run_backtest(make_bars(paths), entries=entries_on(paths, {"600000.SH": [0]}), tick_mode="close")
    equity = result.equity.to_numpy()
    assert equity[1] == pytest.approx(1_000_000 - 20_005.20 + 2000 * 10.0)
    assert equity[2] == pytest.approx(1_000_000 - 20_005.20 + 2000 * 9.6)
    assert len(result.trades) == 1


def test_entries_frame_buys_at_the_signal_close_only_when_not_held():
    paths = {"600000.SH": [10.0, 10.1, 10.2, 10.3, 10.2]}
    result = run_backtest(make_bars(paths), entries=entries_on(paths, {"600000.SH": [1, 2, 4]}))
    # day 2 and day 4: already held, the signal is ignored
    assert trade_list(result) == [(1, "600000.SH", "BUY", 10.1, 1900, 5.19, "entry")]  # 19190: 5 + 0.19


def test_entries_frame_accepts_dates_bare_codes_and_extra_columns():
    paths = {"600000.SH": [10.0, 10.1]}
    frame = pd.DataFrame({"600000": [False, True], "600004": [True, True]}, index=DAYS[:2].date)
    assert entry_signals(prepare_bars(make_bars(paths)), frame).tolist() == [False, True]  # one per bar row


def test_macd_entries_act_on_golden_crosses_at_the_close():
    closes = [10.0 - 0.1 * i for i in range(20)] + [8.0 + 0.12 * i for i in range(10)]
    closes = [round(c, 2) for c in closes]
    result = run_backtest(make_bars({"600000.SH": closes}), {"stop_loss_ratio": -0.5}, entries="macd",
                          tick_mode="close")
    # the cross computed independently with pandas (EMA seeded with the first value)
    s = pd.Series(closes)
    dif = s.ewm(span=12, adjust=False).mean() - s.ewm(span=26, adjust=False).mean()
    dea = dif.ewm(span=9, adjust=False).mean()
    crosses = [t for t in range(1, len(s)) if dif[t - 1] <= dea[t - 1] and dif[t] > dea[t]]
    assert crosses, "the path must contain a golden cross"
    first = trade_list(result)[0]
    assert first[0] == crosses[0] and first[3] == closes[crosses[0]] and first[6] == "entry"
    entry_days = [t[0] for t in trade_list(result) if t[6] == "entry"]
    assert set(entry_days) <= set(crosses)


def test_custom_fees_apply_to_every_trade():
    paths = {"600000.SH": [10.0, (9.5, 9.6, 9.2, 9.3)]}
    fees = FeeSettings(commission_rate=0.0003, min_commission=0.0, stamp_duty_schedule=(("1990-12-19", 0.001),),
                       transfer_fee_schedule=(("1990-12-19", 0.0),))
    result = run_backtest(make_bars(paths), entries=entries_on(paths, {"600000.SH": [0]}), fees=fees)
    # buy 20000: 6.00; sell 18400: commission 5.52 + stamp 18.40
    assert result.trades["commission"].tolist() == [6.0, pytest.approx(23.92)]
    assert result.cash == pytest.approx(1_000_000 - 20_006.0 + 18_400 - 23.92, abs=1e-6)


def test_star_market_buys_at_least_200_shares():
    # position_unit 20000 at 150 yuan is one lot of 100: below the STAR minimum of 200, so no entry
    paths = {"688001.SH": [150.0, 150.0], "600000.SH": [150.0, 150.0]}
    result = run_backtest(make_bars(paths), entries="always")
    assert result.trades["stock_code"].tolist() == ["600000.SH"]
    assert result.trades["volume"].tolist() == [100]


def test_summary_counts_closed_holdings_and_their_results():
    paths = {"600000.SH": [10.0, (9.5, 9.6, 9.2, 9.3), 9.3]}
    result = run_backtest(make_bars(paths), entries="always")
    s = result.summary
    assert s["trades"] == 1 and s["win_rate"] == 0.0
    equity = result.equity.to_numpy()
    assert s["total_return"] == pytest.approx(equity[-1] / 1_000_000 - 1)
    assert s["max_drawdown"] == pytest.approx(min(0.0, *(equity / np.maximum.accumulate(equity) - 1)))
    assert math.isfinite(s["sharpe"])


def test_bad_arguments_are_refused_with_a_clear_message():
    bars = make_bars({"600000.SH": [10.0, 10.0]})
    with pytest.raises(ValueError, match="tick_mode"):
        run_backtest(bars, tick_mode="minute")
    with pytest.raises(ValueError, match="entries"):
        run_backtest(bars, entries="sometimes")
    with pytest.raises(ValueError, match="RuleSettings"):
        run_backtest(bars, {"simulation_balance": 1.0})
    with pytest.raises(ValueError, match="more than one row"):
        run_backtest(pd.concat([bars, bars]))


def test_same_trades_without_numba():
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        pytest.skip("this run is the plain-Python one")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:cacheprovider"],
        env={**os.environ, "NUMBA_DISABLE_JIT": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
