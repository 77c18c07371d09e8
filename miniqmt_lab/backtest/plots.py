"""Plotly figures of backtests, sweeps and drift reports (plain plotly: no vectorbt import needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from miniqmt_lab.backtest.prepare import BarData

HEATMAP_COLORS = "RdYlGn_r"
"""Heatmap colours by the A-share convention of the other panels: green low (losses), red high (gains)."""

METRIC_MIDPOINT = {"total_return": 0.0, "sharpe": 0.0, "max_drawdown": 0.0, "win_rate": 0.5}
"""The value of a metric that is neither gain nor loss: the heatmap's yellow (a drawdown is never a gain)."""

RULE_COLORS = {
    "entry": "#1f77b4",
    "grid_buy": "#17becf",
    "manual": "#7f7f7f",
    "stop_loss": "#d62728",
    "take_profit_initial": "#2ca02c",
    "take_profit_dynamic": "#98df8a",
}


def equity_figure(equity: pd.Series, drawdown: pd.Series, trades: pd.DataFrame) -> go.Figure:
    """Equity on top, drawdown below, the number of trades per bar as hover context."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    per_bar = trades.groupby("time").size().reindex(equity.index, fill_value=0)
    fig.add_trace(
        go.Scatter(x=equity.index, y=equity, name="equity", customdata=per_bar,
                   hovertemplate="%{x}<br>equity %{y:,.2f}<br>trades %{customdata}<extra></extra>"),
        row=1, col=1,
    )
    fig.add_trace(
        go.Scatter(x=drawdown.index, y=drawdown, name="drawdown", fill="tozeroy", line={"color": "#d62728"},
                   hovertemplate="%{x}<br>drawdown %{y:.2%}<extra></extra>"),
        row=2, col=1,
    )
    fig.update_yaxes(title_text="yuan", row=1, col=1)
    # "~%": as many decimals as the tick step needs (a fixed ".0%" shows -1%, -1%, -2% for steps of 0.5%)
    fig.update_yaxes(title_text="drawdown", tickformat="~%", row=2, col=1)
    fig.update_layout(title="Backtest equity", hovermode="x unified", showlegend=False)
    return fig


def trades_figure(bars: BarData, trades: pd.DataFrame, code: str) -> go.Figure:
    """One stock's bars as candles with its trades marked by rule (buys up, sells down)."""
    from miniqmt_lab.market import normalize_code

    code = normalize_code(code)
    if code not in bars.codes:
        raise KeyError(f"{code} is not in the backtest's bars")
    s = bars.codes.index(code)
    has_bar = bars.close[:, s] > 0
    fig = go.Figure(
        go.Candlestick(x=bars.index[has_bar], open=bars.open[has_bar, s], high=bars.high[has_bar, s],
                       low=bars.low[has_bar, s], close=bars.close[has_bar, s], name=code,
                       increasing_line_color="#d62728", decreasing_line_color="#2ca02c")  # A-share colours
    )
    mine = trades[trades["stock_code"] == code]
    for rule, group in mine.groupby("rule", sort=False):
        buy = group["side"].iloc[0] == "BUY"
        fig.add_trace(
            go.Scatter(
                x=group["time"], y=group["price"], mode="markers", name=str(rule),
                marker={"symbol": "triangle-up" if buy else "triangle-down", "size": 11,
                        "color": RULE_COLORS.get(str(rule), "#000000"), "line": {"width": 1, "color": "#000"}},
                customdata=group[["volume", "commission"]],
                hovertemplate="%{x}<br>%{y:.2f} x %{customdata[0]}<br>fees %{customdata[1]:.2f}<extra>"
                + str(rule) + "</extra>",
            )
        )
    name = bars.names[s]
    fig.update_layout(title=f"{code} {name}".strip(), xaxis_rangeslider_visible=False, yaxis_title="price")
    return fig


def sweep_heatmap(table: pd.DataFrame, x: str, y: str, metric: str = "total_return") -> go.Figure:
    """``metric`` over two swept fields, averaged over the other fields of the grid.

    Red is better and green worse, as gains and losses everywhere else; a metric with a neutral value
    (:data:`METRIC_MIDPOINT`) is yellow there, so a losing cell is green however the others did.
    """
    for name in (x, y, metric):
        if name not in table.columns:
            raise KeyError(f"{name!r} is not a column of the sweep table: {list(table.columns)}")
    labels = table[[x, y]].map(str)
    pivot = (
        pd.concat([labels, table[metric]], axis=1)
        .pivot_table(index=y, columns=x, values=metric, aggfunc="mean", sort=False)
    )
    fig = go.Figure(
        go.Heatmap(z=pivot.to_numpy(), x=list(pivot.columns), y=list(pivot.index), colorscale=HEATMAP_COLORS,
                   zmid=METRIC_MIDPOINT.get(metric), colorbar={"title": metric},
                   hovertemplate=f"{x} %{{x}}<br>{y} %{{y}}<br>{metric} %{{z:.4f}}<extra></extra>")
    )
    fig.update_layout(title=f"{metric} by {x} and {y}", xaxis_title=x, yaxis_title=y)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig


CAUSE_COLORS = {
    "match": "#c7c7c7",
    "parameter_change": "#9467bd",
    "late_order": "#ff7f0e",
    "early_order": "#ffbb78",
    "volume_difference": "#8c564b",
    "price_slippage": "#e377c2",
    "rejected_order": "#d62728",
    "missed_tick": "#1f77b4",
    "extra_trade": "#2ca02c",
    "manual_order": "#7f7f7f",
}


def drift_figure(table: pd.DataFrame, summary: pd.DataFrame) -> go.Figure:
    """Every paired trade on a time x stock map coloured by cause, and the count of each cause."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.72, 0.28], horizontal_spacing=0.08,
                        subplot_titles=("trades by cause", "count per cause"))
    for cause, group in table.groupby("cause", sort=False):
        fig.add_trace(
            go.Scatter(
                x=group["time"], y=group["stock_code"], mode="markers", name=str(cause), legendgroup=str(cause),
                marker={"color": CAUSE_COLORS.get(str(cause), "#000000"), "size": 9,
                        "symbol": ["triangle-up" if s == "BUY" else "triangle-down" for s in group["side"]]},
                customdata=group[["detail"]], hovertemplate="%{x}<br>%{y}<br>%{customdata[0]}<extra>" + str(cause)
                + "</extra>",
            ),
            row=1, col=1,
        )
    fig.add_trace(
        go.Bar(x=summary["count"], y=list(summary.index), orientation="h", showlegend=False,
               marker_color=[CAUSE_COLORS.get(str(c), "#000000") for c in summary.index],
               customdata=summary[["cash_effect"]],
               hovertemplate="%{y}: %{x}<br>cash effect %{customdata[0]:,.2f}<extra></extra>"),
        row=1, col=2,
    )
    fig.update_yaxes(type="category", row=1, col=1)
    fig.update_layout(title="Engine vs backtest trades")
    return fig
