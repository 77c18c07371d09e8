"""The vectorbt Portfolio built from the loop's records agrees with the trade list and the loop's equity."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from miniqmt_lab.backtest import run_backtest
from miniqmt_lab.backtest.analytics import POSITIONS_NOTE, STATS_POSITION_ROWS, year_freq
from miniqmt_lab.bars import sample_bars


@pytest.fixture(scope="module")
def result():
    return run_backtest(sample_bars(15, 200, seed=11), entries="always", init_cash=300_000.0)


def test_importing_the_backtest_does_not_import_vectorbt():
    code = "import sys, miniqmt_lab.backtest; print('vectorbt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_orders_match_the_trade_list(result):
    orders = result.portfolio.orders.records_readable
    trades = result.trades
    assert len(orders) == len(trades) > 50
    assert set(trades["rule"]) == {"entry", "grid_buy", "stop_loss", "take_profit_initial", "take_profit_dynamic"}
    np.testing.assert_array_equal(orders["Size"].to_numpy(), trades["volume"].to_numpy())
    np.testing.assert_array_equal(orders["Price"].to_numpy(), trades["price"].to_numpy())
    np.testing.assert_array_equal(orders["Fees"].to_numpy(), trades["commission"].to_numpy())
    assert orders["Side"].str.upper().tolist() == trades["side"].tolist()
    assert orders["Column"].tolist() == trades["stock_code"].tolist()
    assert pd.DatetimeIndex(orders["Timestamp"]).equals(pd.DatetimeIndex(trades["time"]))


def test_cash_and_value_agree_with_the_loop(result):
    pf = result.portfolio
    trades = result.trades
    sign = np.where(trades["side"] == "BUY", -1.0, 1.0)
    from_trades = result.init_cash + (sign * trades["amount"]).sum() - trades["commission"].sum()
    assert pf.cash().iloc[-1] == pytest.approx(result.cash, abs=1e-6)
    assert result.cash == pytest.approx(from_trades, abs=1e-6)
    np.testing.assert_allclose(pf.value().to_numpy(), result.equity.to_numpy(), rtol=1e-12)
    assert pf.orders.fees.sum() == pytest.approx(trades["commission"].sum())
    assert (pf.cash() >= -1e-6).all()


def test_positions_and_stats_agree_with_the_summary(result):
    pf = result.portfolio
    summary = result.summary
    closed = pf.positions.closed
    assert closed.count() == summary["trades"]
    assert closed.win_rate() == pytest.approx(summary["win_rate"])
    stats = result.stats()
    assert stats["Sharpe Ratio"] == pytest.approx(summary["sharpe"], rel=1e-9)
    assert stats["Max Drawdown [%]"] == pytest.approx(-100 * summary["max_drawdown"], rel=1e-9)
    assert stats["Total Return [%]"] == pytest.approx(100 * summary["total_return"], rel=1e-9)


def test_stats_equal_vectorbts_own_and_say_why_positions_differ_from_trades(result):
    # vectorbt's own path rebuilds the group from per-stock arrays; stats() hands it the loop's group series
    own = result.portfolio.stats(settings={"year_freq": year_freq(result.bars)})
    stats = result.stats()
    assert list(stats.index) == [*own.index, *STATS_POSITION_ROWS]
    for name, expected in own.items():
        if isinstance(expected, float):
            assert stats[name] == pytest.approx(expected, rel=1e-9, abs=1e-9), name
        else:
            assert stats[name] == expected, name
    positions = result.portfolio.positions.closed
    assert stats["Closed Positions (summary trades)"] == positions.count() == result.summary["trades"]
    assert stats["Position Win Rate [%] (summary win_rate)"] == pytest.approx(100 * positions.win_rate())
    assert stats["Total Trades"] > stats["Closed Positions (summary trades)"]  # partial take-profits are trades
    assert stats["Trades vs Positions"] == POSITIONS_NOTE == result.summary.name
    assert "closed positions" in POSITIONS_NOTE and "exit trades" in POSITIONS_NOTE


def test_stats_emit_no_warning():
    fresh = run_backtest(sample_bars(6, 120, seed=5), entries="always", init_cash=100_000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = fresh.stats()
        assert stats["Period"] == pd.Timedelta(days=120)


def test_stats_of_minute_bars_use_a_minute_year():
    minute = run_backtest(sample_bars(4, 3, seed=2, freq="1m"), entries="always", init_cash=100_000.0)
    assert year_freq(minute.bars) == pd.Timedelta(minutes=252 * 240)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = minute.stats()
    assert stats["Period"] == pd.Timedelta(minutes=3 * 240)
    assert stats["Sharpe Ratio"] == pytest.approx(minute.summary["sharpe"], rel=1e-9)


def test_per_stock_stats_and_selected_metrics_are_vectorbts(result):
    code = result.trades["stock_code"].iloc[0]
    one = result.stats(group_by=False, column=code)
    mine = result.trades[result.trades["stock_code"] == code]
    assert one.name == code
    assert one["Total Fees Paid"] == pytest.approx(mine["commission"].sum())
    assert STATS_POSITION_ROWS[0] not in one.index
    # settings that change the group's series leave all of it to vectorbt
    asset_returns = {"year_freq": year_freq(result.bars), "use_asset_returns": True}
    ours = result.stats(settings=asset_returns).drop(list(STATS_POSITION_ROWS))
    assert ours.equals(result.portfolio.stats(settings=asset_returns))
    chosen = result.stats(metrics=["total_return", "max_dd"])
    assert list(chosen.index) == ["Total Return [%]", "Max Drawdown [%]"]
    assert chosen["Total Return [%]"] == pytest.approx(100 * result.summary["total_return"], rel=1e-9)


def test_holdings_never_go_short_and_sells_respect_t_plus_one(result):
    assets = result.portfolio.assets()
    assert (assets.to_numpy() >= 0).all()
    trades = result.trades
    for code, mine in trades.groupby("stock_code"):
        bought_today = 0
        held_before = 0
        day = None
        for row in mine.itertuples():
            if row.time != day:
                day, held_before, bought_today = row.time, held_before + bought_today, 0
            if row.side == "BUY":
                bought_today += row.volume
            else:
                assert row.volume <= held_before, (code, row)
                held_before -= row.volume


def test_figures(result):
    assert isinstance(result.plot_equity(), go.Figure)
    code = result.trades["stock_code"].iloc[0]
    fig = result.plot_trades(code)
    names = {trace.name for trace in fig.data}
    assert code in names and "entry" in names
    with pytest.raises(KeyError):
        result.plot_trades("600999.SH")
