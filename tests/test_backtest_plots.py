"""Backtest figures: the drawdown axis labels ticks it can tell apart, the sweep heatmap is red for gains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.colors import hex_to_rgb, unlabel_rgb

from miniqmt_lab.backtest.plots import equity_figure, sweep_heatmap

CHROMIUM = Path("/usr/bin/chromium")


def shallow_drawdown_figure() -> go.Figure:
    """Equity that never falls more than 2.3%: the axis steps by 0.5%, which ".0%" printed as -1%, -1%, -2%."""
    index = pd.date_range("2024-01-02 15:00", periods=120, freq="B")
    equity = pd.Series(1_000_000.0 * (1.0 - 0.023 * np.abs(np.sin(np.arange(120) / 9.0))), index=index)
    drawdown = equity / equity.cummax() - 1.0
    no_trades = pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns]")})
    return equity_figure(equity, drawdown, no_trades)


def rendered_tick_labels(fig: go.Figure, axis: str) -> list[str]:
    """The tick labels Chromium draws for ``axis`` ("y2": the drawdown axis), plotly.js inlined (offline)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.set_content(fig.to_html(include_plotlyjs=True, full_html=True))
            ticks = page.locator(f"g.{axis}tick text")
            ticks.first.wait_for(timeout=30_000)
            return ticks.evaluate_all("nodes => nodes.map(node => node.textContent)")
        finally:
            browser.close()


def colour_at(colorscale: tuple | list, position: float) -> tuple[float, float, float]:
    """The colour a plotly colorscale gives to ``position`` in [0, 1] (its nearest stop)."""
    stops = [float(stop) for stop, _ in colorscale]
    colour = colorscale[int(np.argmin(np.abs(np.array(stops) - position)))][1]
    return tuple(hex_to_rgb(colour) if colour.startswith("#") else unlabel_rgb(colour))


def test_drawdown_axis_format_follows_the_tick_step():
    fig = shallow_drawdown_figure()
    assert fig.layout.yaxis2.tickformat == "~%"  # no fixed number of decimals


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium")
def test_drawdown_axis_labels_do_not_repeat_in_a_browser():
    labels = rendered_tick_labels(shallow_drawdown_figure(), "y2")
    assert len(labels) >= 4, labels
    assert len(set(labels)) == len(labels), labels
    assert any("." in label for label in labels), labels  # half-percent steps are printed as such
    assert all(label.endswith("%") for label in labels), labels


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stop_loss_ratio": [-0.05, -0.05, -0.1, -0.1],
            "initial_take_profit_ratio": [0.04, 0.08, 0.04, 0.08],
            "total_return": [0.12, -0.04, 0.02, -0.30],
            "max_drawdown": [-0.05, -0.10, -0.02, -0.40],
            "trades": [10, 20, 30, 40],
            "win_rate": [0.6, 0.4, 0.5, 0.3],
        }
    )


def test_heatmap_is_red_for_gains_and_green_for_losses(table):
    fig = sweep_heatmap(table, "stop_loss_ratio", "initial_take_profit_ratio")
    heat = fig.data[0]
    assert heat.zmid == 0.0  # a loss is green however bad the other cells are
    top, bottom = colour_at(heat.colorscale, 1.0), colour_at(heat.colorscale, 0.0)
    assert top[0] > 2 * top[1]  # highest values red
    assert bottom[1] > 2 * bottom[0]  # lowest values green
    assert sweep_heatmap(table, "stop_loss_ratio", "initial_take_profit_ratio", "win_rate").data[0].zmid == 0.5
    assert sweep_heatmap(table, "stop_loss_ratio", "initial_take_profit_ratio", "max_drawdown").data[0].zmid == 0.0
    assert sweep_heatmap(table, "stop_loss_ratio", "initial_take_profit_ratio", "trades").data[0].zmid is None
