"""Backtest tuning panel: rule sliders, run with progress, equity and drawdown, stats, sweep heatmap,
and "apply to engine" (writes the chosen parameters to the config file).

The panel's data (parameters, last result, last sweep) lives in :class:`TuningState`; the widgets
observe it. Jobs run on a command worker so clicks never block the kernel; ``miniqmt_lab.backtest``
loads on the first run, and vectorbt only when its full statistics are asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import traitlets
from plotly.subplots import make_subplots

from miniqmt_lab import config
from miniqmt_lab.config import Settings
from miniqmt_lab.errors import ConfigError
from miniqmt_lab.widgets._html import GAIN_SCALE, LOSS, gain_colour, message_html, plural, render_mapping
from miniqmt_lab.widgets._runner import CommandRunner
from miniqmt_lab.widgets.params import SWEEPABLE, RuleParamsForm, rule_values, validated_rules

METRICS = ("total_return", "max_drawdown", "sharpe", "trades", "win_rate")


class TuningState(traitlets.HasTraits):
    params = traitlets.Dict()  # flat RuleSettings fields
    tick_mode = traitlets.Enum(("ohlc", "close"), default_value="ohlc")
    init_cash = traitlets.Float(1_000_000.0)
    result = traitlets.Any(None, allow_none=True)  # last BacktestResult
    sweep = traitlets.Any(None, allow_none=True)  # last SweepResult
    sweep_axes = traitlets.Tuple(("", ""))  # (x, y) parameter names of the last sweep
    progress = traitlets.Float(0.0)  # 0..1 of the running job


def _parse_values(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(";", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"sweep values must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise ValueError("give at least one sweep value")
    return values


def _format_stat(value: Any) -> str:
    if isinstance(value, float | np.floating):
        # counts arrive as floats in a float Series
        return f"{value:,.0f}" if float(value).is_integer() and value != 0 else f"{value:,.4f}"
    return str(value)


COUNTING_NOTE = (
    '<div class="mq-counting-note" style="font-size: 12px; color: #666; max-width: 36em; line-height: 1.4">'
    "Why the counts differ: <i>trades</i> and <i>win_rate</i> on the left count closed holdings (first buy to "
    "the last share sold) and the share of them that made money after all fees; vectorbt counts every sell "
    "that closes part of a holding as a trade of its own, and a holding still open as one more.</div>"
)
"""Shown under vectorbt's statistics: the two trade counts answer different questions."""

RETURN_KEYS = ("total_return", "Total Return [%]", "Benchmark Return [%]")  # ours, and vectorbt's stats


def stats_html(stats: pd.Series, *, css_class: str) -> str:
    styles = {key: gain_colour(stats[key]) for key in RETURN_KEYS if key in stats.index}
    return render_mapping([(str(k), _format_stat(v)) for k, v in stats.items()], css_class=css_class,
                          styles=styles)


class BacktestTuningPanel(w.VBox):
    """Tune the rule set on ``bars`` (the bar store's long format, e.g. ``sample_bars()``).

    ``settings`` gives the starting parameters and the fees; ``init_cash`` defaults to its
    ``engine.simulation_balance``. "Apply to engine config" writes to ``config_path``.
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        *,
        settings: Settings | None = None,
        config_path: str | os.PathLike[str] = "config.toml",
        entries: Any = "macd",
        init_cash: float | None = None,
    ) -> None:
        self.bars = bars
        self.settings = settings or Settings()
        self.entries = entries
        self.state = TuningState(
            params=rule_values(self.settings.rules),
            init_cash=self.settings.engine.simulation_balance if init_cash is None else init_cash,
        )
        self.runner = CommandRunner(name="miniqmt-backtest")

        self.form = RuleParamsForm(self.state)
        self.tick_mode = w.Dropdown(options=["ohlc", "close"], description="ticks")
        self.init_cash = w.FloatText(description="init cash ¥")
        self._links = [
            w.link((self.state, "tick_mode"), (self.tick_mode, "value")),
            w.link((self.state, "init_cash"), (self.init_cash, "value")),
        ]
        self.run_button = w.Button(description="Run backtest", button_style="primary", icon="play")
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress")
        self.message = w.HTML("")
        self.equity_figure = go.FigureWidget(
            make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
        )
        self.equity_figure.add_scatter(name="equity", row=1, col=1, line={"color": "#1f77b4"})
        self.equity_figure.add_scatter(
            name="drawdown", row=2, col=1, fill="tozeroy", line={"color": LOSS}
        )
        # no fixed width: the chart takes the width of the output area and follows it when it changes
        self.equity_figure.update_yaxes(tickformat=",.0f", row=1, col=1)
        self.equity_figure.update_yaxes(tickformat=".1%", row=2, col=1)  # drawdown: -0.5%, -1.0%, -1.5%
        self.equity_figure.update_layout(autosize=True, height=420, margin={"l": 50, "r": 20, "t": 30, "b": 30},
                                         showlegend=False)
        self.stats = w.HTML("")

        names = list(SWEEPABLE)
        self.sweep_x = w.Dropdown(options=names, value=names[0], description="x")
        self.sweep_y = w.Dropdown(options=names, value=names[1], description="y")
        self.sweep_x_values = w.Text(description="x values")
        self.sweep_y_values = w.Text(description="y values")
        self.sweep_metric = w.Dropdown(options=METRICS, value="total_return", description="metric")
        self.sweep_button = w.Button(description="Run sweep", button_style="primary", icon="th")
        self.best_button = w.Button(description="Use best", icon="check", disabled=True)
        self.heatmap_box = w.VBox([])  # holds the sweep's heatmap FigureWidget once there is one
        self.vbt_stats_button = w.Button(description="vectorbt stats", icon="table", disabled=True)
        self.full_stats = w.HTML("")

        self.config_path = w.Text(value=str(config_path), description="config file", layout=w.Layout(width="520px"))
        self.apply_button = w.Button(description="Apply to engine config", button_style="warning", icon="save",
                                     layout=w.Layout(width="auto"))

        for widget, css in (
            (self.run_button, "mq-run-backtest"),
            (self.progress, "mq-progress"),
            (self.message, "mq-tuning-message"),
            (self.stats, "mq-stats"),
            (self.vbt_stats_button, "mq-vbt-stats"),
            (self.full_stats, "mq-vbt-stats-table"),
            (self.sweep_button, "mq-run-sweep"),
            (self.best_button, "mq-use-best"),
            (self.apply_button, "mq-apply-config"),
        ):
            widget.add_class(css)

        self.run_button.on_click(self._clicked(self.run))
        self.sweep_button.on_click(self._clicked(self.run_sweep))
        self.best_button.on_click(self._clicked(self.use_best))
        self.apply_button.on_click(self._clicked(self.apply_to_config))
        self.vbt_stats_button.on_click(self._clicked(self.show_vectorbt_stats))
        self.sweep_x.observe(self._axis_changed(self.sweep_x_values), names="value")
        self.sweep_y.observe(self._axis_changed(self.sweep_y_values), names="value")
        self.sweep_metric.observe(lambda _: self._show_sweep(self.state.sweep), names="value")
        self.state.observe(lambda c: self._show_result(c["new"]), names="result")
        self.state.observe(lambda c: self._show_sweep(c["new"]), names="sweep")
        self.state.observe(self._progress_changed, names="progress")
        self.sweep_x_values.value = self._default_values(self.sweep_x.value)
        self.sweep_y_values.value = self._default_values(self.sweep_y.value)

        super().__init__(
            [
                w.HBox(
                    [
                        self.form,
                        w.VBox([self.tick_mode, self.init_cash, self.run_button, self.progress, self.message]),
                    ]
                ),
                self.equity_figure,
                w.HTML("<b>Statistics</b>"),
                w.HBox([self.stats, w.VBox([self.vbt_stats_button, self.full_stats])]),
                w.HTML("<b>Parameter sweep</b>"),
                w.HBox([self.sweep_x, self.sweep_x_values]),
                w.HBox([self.sweep_y, self.sweep_y_values]),
                w.HBox([self.sweep_metric, self.sweep_button, self.best_button]),
                self.heatmap_box,
                w.HBox([self.config_path, self.apply_button]),
            ]
        )
        self.add_class("mq-tuning-panel")

    # -- helpers -----------------------------------------------------------------------------------

    def _report(self, level: str, text: str) -> None:
        self.message.value = message_html(level, text)

    def _clicked(self, action: Callable[[], Any]) -> Callable[[Any], None]:
        """A button callback: bad input (a ConfigError naming the key) is shown, not raised."""

        def on_click(_: Any) -> None:
            try:
                action()
            except (ConfigError, ValueError) as exc:
                self._report("error", str(exc))

        return on_click

    @staticmethod
    def _default_values(name: str) -> str:
        return ", ".join(f"{v:g}" for v in SWEEPABLE[name].sweep)

    def _axis_changed(self, target: w.Text) -> Any:
        def changed(change: dict[str, Any]) -> None:
            target.value = self._default_values(change["new"])

        return changed

    def _progress_changed(self, change: dict[str, Any]) -> None:
        value = float(change["new"])
        self.progress.value = value
        self.progress.bar_style = "success" if value >= 1.0 else "info"

    # -- actions (each returns the Future of its job; notebooks may ``.result()`` it) ---------------

    def run(self) -> Future[Any]:
        """Backtest the current parameters on the command worker."""
        rules = validated_rules(self.settings, self.state.params)
        tick_mode, init_cash = self.state.tick_mode, self.state.init_cash
        self.state.progress = 0.0

        def job() -> Any:
            from miniqmt_lab.backtest import run_backtest  # loaded on the first run, not with the panel

            result = run_backtest(
                self.bars, rules, entries=self.entries, init_cash=init_cash, tick_mode=tick_mode,
                fees=self.settings.fees,
            )
            self.state.result = result
            self.state.progress = 1.0
            return result

        return self.runner.submit("backtest", job, self._report,
                                  done=lambda r: f"backtest: {plural(len(r.trades), 'trade')}")

    def run_sweep(self) -> Future[Any]:
        """Sweep the two chosen parameters over the given values, the other parameters as set."""
        x, y = self.sweep_x.value, self.sweep_y.value
        if x == y:
            raise ValueError("choose two different parameters for the sweep axes")
        grid = {x: _parse_values(self.sweep_x_values.value), y: _parse_values(self.sweep_y_values.value)}
        fixed = {k: v for k, v in self.state.params.items() if k not in grid}
        validated_rules(self.settings, fixed)
        tick_mode, init_cash = self.state.tick_mode, self.state.init_cash
        self.state.progress = 0.0

        def job() -> Any:
            from miniqmt_lab.backtest import sweep

            result = sweep(
                self.bars, grid, base=fixed, entries=self.entries, init_cash=init_cash, tick_mode=tick_mode,
                fees=self.settings.fees, progress=lambda done, total: setattr(self.state, "progress", done / total),
            )
            with self.state.hold_trait_notifications():
                self.state.sweep_axes = (x, y)
                self.state.sweep = result
            self.state.progress = 1.0
            return result

        n = len(grid[x]) * len(grid[y])
        return self.runner.submit(f"sweep of {n} combinations", job, self._report)

    def choose(self, **values: float) -> None:
        """Set some parameters (a heatmap cell, the best combination) into the state and sliders."""
        self.state.params = {**self.state.params, **{k: float(v) for k, v in values.items()}}

    def use_best(self) -> None:
        """Take the sweep's best combination for the chosen metric into the sliders."""
        result = self.state.sweep
        if result is None:
            return
        x, y = self.state.sweep_axes
        metric = self.sweep_metric.value
        best = result.best(metric)
        self.choose(**{x: best[x], y: best[y]})
        self._report("ok", f"best {metric} = {_format_stat(best[metric])} at {x}={best[x]:g}, {y}={best[y]:g}")

    def show_vectorbt_stats(self) -> Future[Any]:
        """vectorbt's full portfolio statistics of the last run (the first call imports vectorbt)."""
        result = self.state.result
        if result is None:
            raise ValueError("run a backtest first")

        def job() -> Any:
            stats = result.stats()
            self.full_stats.value = stats_html(stats, css_class="mq-vbt-stats-table") + COUNTING_NOTE
            return stats

        return self.runner.submit("vectorbt stats", job, self._report)

    def apply_to_config(self) -> Settings | None:
        """Write the current parameters to the config file the engine loads (``config.update_file``)."""
        path = Path(self.config_path.value).expanduser()
        try:
            saved = config.update_file(path, **self.state.params)
        except (ConfigError, OSError) as exc:
            self._report("error", f"not written: {exc}")
            return None
        self._report("ok", f"wrote {len(self.state.params)} rule settings to {path}; restart the engine to use them")
        return saved

    # -- model → view ------------------------------------------------------------------------------

    def _show_result(self, result: Any) -> None:
        if result is None:
            return
        with self.equity_figure.batch_update():
            self.equity_figure.data[0].update(x=result.equity.index, y=result.equity.to_numpy())
            self.equity_figure.data[1].update(x=result.drawdown.index, y=result.drawdown.to_numpy())
        self.stats.value = stats_html(result.summary, css_class="mq-stats-table")
        self.full_stats.value = ""
        self.vbt_stats_button.disabled = False

    def _show_sweep(self, result: Any) -> None:
        self.best_button.disabled = result is None
        if result is None:
            return
        x, y = self.state.sweep_axes
        figure = go.FigureWidget(result.heatmap(x, y, self.sweep_metric.value))
        figure.update_traces(colorscale=GAIN_SCALE)  # high red, low green, as every panel colours gains
        figure.update_layout(height=380, autosize=True, width=None)
        figure.layout.title.text = f"{figure.layout.title.text or ''} (click a cell to use it)"
        for trace in figure.data:
            trace.on_click(self._heatmap_clicked)
        old = self.heatmap_box.children
        self.heatmap_box.children = [figure]
        for widget in old:
            widget.close()

    def _heatmap_clicked(self, trace: Any, points: Any, selector: Any) -> None:
        if points.xs:
            x, y = self.state.sweep_axes
            self.choose(**{x: float(points.xs[0]), y: float(points.ys[0])})

    def close(self) -> None:
        if self.comm is not None:  # ipywidgets calls close() again on garbage collection
            for link in self._links:
                link.unlink()
            self.runner.shutdown()
            self.form.close()
        super().close()
