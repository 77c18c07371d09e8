"""Sweeps: every combination equals its own run_backtest; the table, best row and heatmap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from miniqmt_lab.backtest import prepare_bars, run_backtest, sweep
from miniqmt_lab.bars import sample_bars

GRID = {"stop_loss_ratio": [-0.05, -0.1], "initial_take_profit_ratio": [0.04, 0.08], "grid_levels": [(0.93, 0.86), ()]}


@pytest.fixture(scope="module")
def bars():
    return prepare_bars(sample_bars(12, 160, seed=3))


@pytest.fixture(scope="module")
def result(bars):
    # chunks of 3 on two threads: combinations split across loop calls must not matter
    return sweep(bars, GRID, entries="always", init_cash=200_000.0, progress=False, chunk_size=3, n_jobs=2)


def test_table_has_one_row_per_combination(result):
    assert len(result.table) == 8
    assert list(result.table.columns) == [*GRID, "total_return", "max_drawdown", "sharpe", "trades", "win_rate"]
    assert result.table[list(GRID)].drop_duplicates().shape[0] == 8
    assert result.equity.shape == (160, 8)
    assert result.params == list(GRID)


def test_every_combination_equals_its_own_run(bars, result):
    for i, row in result.table.iterrows():
        params = {name: row[name] for name in GRID}
        single = run_backtest(bars, params, entries="always", init_cash=200_000.0)
        np.testing.assert_array_equal(result.equity[i].to_numpy(), single.equity.to_numpy())
        for metric in ("total_return", "max_drawdown", "sharpe", "trades", "win_rate"):
            assert row[metric] == pytest.approx(single.summary[metric], rel=1e-12, nan_ok=True), metric
        assert len(single.trades) > 0


def test_combinations_differ(result):
    # the grid matters: not every combination ends with the same equity
    assert result.equity.iloc[-1].nunique() > 1


def test_run_replays_a_combination_with_trades(bars, result):
    best = result.best("sharpe")
    assert best["sharpe"] == result.table["sharpe"].max()
    replay = result.run(best.name)
    assert replay.summary["sharpe"] == pytest.approx(best["sharpe"], rel=1e-12)
    assert replay.params.stop_loss_ratio == best["stop_loss_ratio"]


def test_heatmap_averages_over_the_other_fields(result):
    fig = result.heatmap("stop_loss_ratio", "initial_take_profit_ratio")
    z = np.array(fig.data[0].z)
    assert z.shape == (2, 2)
    t = result.table
    expected = t[(t.stop_loss_ratio == -0.05) & (t.initial_take_profit_ratio == 0.04)]["total_return"].mean()
    assert z[0, 0] == pytest.approx(expected)


def test_sweep_over_a_base_setting_and_refusals(bars):
    base = {"position_unit": 10_000.0, "max_position_value": 30_000.0}
    one = sweep(bars, {"stop_loss_ratio": [-0.05]}, entries="always", base=base, progress=False)
    single = run_backtest(bars, {**base, "stop_loss_ratio": -0.05}, entries="always")
    assert one.table.loc[0, "total_return"] == pytest.approx(single.summary["total_return"], rel=1e-12)
    with pytest.raises(ValueError, match="RuleSettings"):
        sweep(bars, {"simulation_balance": [1.0]}, progress=False)
    with pytest.raises(ValueError, match="list of values"):
        sweep(bars, {"stop_loss_ratio": -0.05}, progress=False)
    with pytest.raises(Exception, match="stop_loss_ratio"):
        sweep(bars, {"stop_loss_ratio": [0.5]}, progress=False)


def test_progress_counts_combinations_not_chunks(bars):
    seen = []
    grid = {"stop_loss_ratio": [-0.05, -0.06, -0.07, -0.08, -0.09]}
    sweep(bars, grid, entries="always", progress=lambda *a: seen.append(a), chunk_size=2, n_jobs=1)
    assert seen == [(2, 5), (4, 5), (5, 5)]


def test_progress_bar_counts_combinations(bars, capsys):
    sweep(bars, {"stop_loss_ratio": [-0.05, -0.06, -0.07]}, entries="always", chunk_size=2, n_jobs=1)
    bar = capsys.readouterr().err.strip().splitlines()[-1]
    assert "3/3" in bar and "combination" in bar, bar


def test_processes_give_the_table_of_threads(bars, result):
    # two fresh processes, each sent the prepared bars once; chunks of 3 finish in any order
    on_processes = sweep(bars, GRID, entries="always", init_cash=200_000.0, progress=False, chunk_size=3, n_jobs=2,
                         scheduler="processes")
    pd.testing.assert_frame_equal(on_processes.table, result.table)
    pd.testing.assert_frame_equal(on_processes.equity, result.equity)


def test_unknown_schedulers_are_refused_before_any_work(bars):
    with pytest.raises(ValueError, match="scheduler must be"):
        sweep(bars, GRID, progress=False, scheduler="gpu")
    with pytest.raises(TypeError, match=r"distributed\.Client"):
        sweep(bars, GRID, progress=False, scheduler=4)
