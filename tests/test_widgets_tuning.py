"""Headless round-trips of the backtest tuning panel against the real backtest on sample bars."""

from __future__ import annotations

import pytest
from plotly.callbacks import Points

from miniqmt_lab import config
from miniqmt_lab.bars import sample_bars
from miniqmt_lab.config import Settings
from miniqmt_lab.widgets._html import GAIN_SCALE, LOSS, plural
from miniqmt_lab.widgets.tuning import BacktestTuningPanel

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def bars():
    return sample_bars(n_stocks=5, n_days=160, seed=3)


@pytest.fixture
def panel(bars, tmp_path):
    p = BacktestTuningPanel(bars, config_path=tmp_path / "config.toml")
    yield p
    p.close()


def test_sliders_and_state_round_trip(panel: BacktestTuningPanel) -> None:
    assert panel.form.sliders["stop_loss_ratio"].value == pytest.approx(-0.075)
    assert [s.value for s in panel.form.grid_sliders] == [pytest.approx(0.93), pytest.approx(0.86)]

    panel.form.sliders["stop_loss_ratio"].value = -0.05  # view → state
    assert panel.state.params["stop_loss_ratio"] == pytest.approx(-0.05)
    panel.form.grid_sliders[1].value = 0.8
    assert panel.state.params["grid_levels"] == (0.93, 0.8)
    panel.form.grid_enabled.value = False
    assert panel.state.params["grid_enabled"] is False

    panel.choose(initial_take_profit_ratio=0.1)  # state → view, without echo
    assert panel.form.sliders["initial_take_profit_ratio"].value == pytest.approx(0.1)
    assert panel.state.params["stop_loss_ratio"] == pytest.approx(-0.05)

    panel.tick_mode.value = "close"
    assert panel.state.tick_mode == "close"


def test_run_button_reaches_backtest_and_shows_results(panel: BacktestTuningPanel, bars) -> None:
    from miniqmt_lab.backtest import run_backtest

    panel.form.sliders["stop_loss_ratio"].value = -0.05
    panel.run_button.click()
    assert panel.runner.wait(30)
    result = panel.state.result
    assert result is not None and result.params.stop_loss_ratio == pytest.approx(-0.05)
    expected = run_backtest(bars, {"stop_loss_ratio": -0.05})
    assert result.trades.equals(expected.trades)
    assert panel.progress.value == 1.0 and panel.progress.bar_style == "success"
    assert f"backtest: {plural(len(expected.trades), 'trade')}" in panel.message.value
    assert list(panel.equity_figure.data[0].y) == pytest.approx(list(expected.equity))
    assert min(panel.equity_figure.data[1].y) == pytest.approx(expected.drawdown.min())
    assert panel.equity_figure.data[1].line.color == LOSS  # a drawdown is a loss: green
    assert panel.equity_figure.layout.width is None  # the chart takes the output's width
    assert "total_return" in panel.stats.value and "win_rate" in panel.stats.value
    assert not panel.vbt_stats_button.disabled


def test_invalid_parameters_are_reported_not_raised(panel: BacktestTuningPanel) -> None:
    panel.form.grid_sliders[1].value = 0.95  # above level 1: levels must descend
    panel.run_button.click()
    assert panel.runner.wait(5)
    assert panel.state.result is None
    assert "rules.grid_levels[1]" in panel.message.value


def test_sweep_heatmap_best_and_cell_click(panel: BacktestTuningPanel) -> None:
    panel.sweep_x.value = "stop_loss_ratio"
    panel.sweep_y.value = "initial_take_profit_ratio"
    panel.sweep_x_values.value = "-0.05, -0.1"
    panel.sweep_y_values.value = "0.04, 0.06, 0.08"
    seen: list[float] = []
    panel.state.observe(lambda c: seen.append(c["new"]), names="progress")
    panel.sweep_button.click()
    assert panel.runner.wait(30)
    result = panel.state.sweep
    assert result is not None and len(result.table) == 6
    assert seen[-1] == 1.0 and any(0 < v < 1 for v in seen)  # chunk by chunk
    assert seen == sorted(seen)
    assert panel.progress.value == 1.0
    (figure,) = panel.heatmap_box.children
    assert figure.data[0].type == "heatmap" and len(figure.data[0].z) == 3
    scale = figure.data[0].colorscale
    assert scale[0][1] == GAIN_SCALE[0][1] and scale[-1][1] == GAIN_SCALE[-1][1]  # low green, high red

    panel.sweep_metric.value = "sharpe"
    panel.best_button.click()
    best = result.best("sharpe")
    assert panel.state.params["stop_loss_ratio"] == pytest.approx(best["stop_loss_ratio"])
    assert panel.form.sliders["initial_take_profit_ratio"].value == pytest.approx(best["initial_take_profit_ratio"])

    # what the browser delivers for a click on the cell (x "-0.1", y "0.08")
    panel._heatmap_clicked(figure.data[0], Points(point_inds=[(2, 1)], xs=["-0.1"], ys=["0.08"]), None)
    assert panel.state.params["stop_loss_ratio"] == pytest.approx(-0.1)
    assert panel.form.sliders["initial_take_profit_ratio"].value == pytest.approx(0.08)


def test_bad_sweep_values_are_reported(panel: BacktestTuningPanel) -> None:
    panel.sweep_x_values.value = "-0.05, abc"
    panel.sweep_button.click()
    assert "numbers separated by commas" in panel.message.value
    assert panel.state.sweep is None


def test_apply_writes_the_config_file(panel: BacktestTuningPanel, tmp_path) -> None:
    path = tmp_path / "config.toml"
    config.save(Settings().with_values(simulation_balance=500_000.0), path)
    panel.form.sliders["stop_loss_ratio"].value = -0.06
    panel.form.sliders["position_unit"].value = 30_000
    panel.apply_button.click()
    saved = config.load(path, environ={})
    assert saved.rules.stop_loss_ratio == pytest.approx(-0.06)
    assert saved.rules.position_unit == pytest.approx(30_000)
    assert saved.engine.simulation_balance == pytest.approx(500_000.0)  # the rest of the file is kept
    assert str(path) in panel.message.value


def test_apply_reports_invalid_values(panel: BacktestTuningPanel, tmp_path) -> None:
    panel.form.sliders["max_position_value"].value = 5_000  # below position_unit
    panel.apply_button.click()
    assert "rules.max_position_value" in panel.message.value
    assert not (tmp_path / "config.toml").exists()


def test_vectorbt_stats_button_shows_full_statistics(panel: BacktestTuningPanel) -> None:
    assert panel.vbt_stats_button.disabled  # nothing to describe before a run
    panel.run().result(timeout=30)
    panel.vbt_stats_button.click()
    assert panel.runner.wait(50)
    assert "Sharpe Ratio" in panel.full_stats.value and "Total Trades" in panel.full_stats.value
    assert "Why the counts differ" in panel.full_stats.value
