"""Signal replay panel: step or scrub through a session of one stock, see every signal and trade
marked by rule, the position at the cursor, and trade the same session again with other parameters
to compare the trades side by side.

The session, the stock's bars and position path, and the rerun live in :class:`ReplayState`; the
widgets observe it. The backtest and the engine's journal reader load on the first session built,
never with the panel; reruns run on a command worker.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import traitlets

from miniqmt_lab.config import Settings
from miniqmt_lab.schema import RULE_NAMES
from miniqmt_lab.widgets._html import (
    GAIN,
    LOSS,
    RULE_COLOURS,
    TABLE_CSS,
    Column,
    fmt_int,
    fmt_number,
    fmt_ratio,
    fmt_time,
    message_html,
    plural,
    render_table,
    side_colour,
)
from miniqmt_lab.widgets._runner import CommandRunner
from miniqmt_lab.widgets.params import RuleParamsForm, rule_values, validated_rules
from miniqmt_lab.widgets.sessions import ReplaySession, bars_session, holding_path

RULES = tuple(name for name in RULE_NAMES if name)
SIGNAL_TRACE = len(RULES) + 1  # trace order: candles, one per rule, signals not executed, rerun buys, sells
RERUN_BUY, RERUN_SELL = SIGNAL_TRACE + 1, SIGNAL_TRACE + 2

COMPARE_COLUMNS = (
    Column("time", "time", fmt_time, left=True),
    Column("side", "side", str, side_colour, left=True),
    Column("rule", "rule", left=True),
    Column("price_recorded", "price", fmt_number),
    Column("volume_recorded", "volume", fmt_int),
    Column("price_rerun", "rerun price", fmt_number),
    Column("volume_rerun", "rerun volume", fmt_int),
)


class ReplayState(traitlets.HasTraits):
    sessions = traitlets.List()  # ReplaySession objects to pick from
    session = traitlets.Any(None, allow_none=True)
    code = traitlets.Unicode("")
    bars = traitlets.Instance(pd.DataFrame, allow_none=True)  # OHLC of ``code`` by bar stamp
    trades = traitlets.Instance(pd.DataFrame, allow_none=True)  # the session's trades of ``code``
    signals = traitlets.Instance(pd.DataFrame, allow_none=True)
    path = traitlets.Instance(pd.DataFrame, allow_none=True)  # position after each bar
    cursor = traitlets.Int(0)  # bar index
    params = traitlets.Dict()  # rule parameters of the next rerun
    rerun_trades = traitlets.Instance(pd.DataFrame, allow_none=True)  # of ``code``
    rerun_path = traitlets.Instance(pd.DataFrame, allow_none=True)
    rerun_all = traitlets.Instance(pd.DataFrame, allow_none=True)  # every stock: a new code reuses it

    def select(self, code: str) -> None:
        """Show ``code`` of the current session: its bars, trades, signals and position path."""
        session = self.session
        if session is None or not code:
            return
        bars = session.bars(code)
        trades = session.trades[session.trades["stock_code"] == code].reset_index(drop=True)
        signals = session.signals[session.signals["stock_code"] == code].reset_index(drop=True)
        path = holding_path(session.ticks[session.ticks["stock_code"] == code], trades, session.fees)
        with self.hold_trait_notifications():
            self.code = code
            self.bars, self.trades, self.signals = bars, trades, signals
            self.path = path.reindex(bars.index)
            self.cursor = 0
            self.rerun_trades = self.rerun_path = None
            if self.rerun_all is not None:
                self._select_rerun(self.rerun_all)

    def _select_rerun(self, all_trades: pd.DataFrame) -> None:
        session = self.session
        trades = all_trades[all_trades["stock_code"] == self.code].reset_index(drop=True)
        ticks = session.ticks[session.ticks["stock_code"] == self.code]
        self.rerun_trades = trades
        self.rerun_path = holding_path(ticks, trades, session.fees).reindex(self.bars.index)

    def set_rerun(self, all_trades: pd.DataFrame | None) -> None:
        with self.hold_trait_notifications():
            self.rerun_all = all_trades
            if all_trades is None:
                self.rerun_trades = self.rerun_path = None
            else:
                self._select_rerun(all_trades)


def compare_trades(recorded: pd.DataFrame, rerun: pd.DataFrame | None) -> pd.DataFrame:
    """Recorded and rerun trades of one stock side by side, matched on (time, side, rule)."""
    keys = ["time", "side", "rule"]
    left = recorded.assign(n=recorded.groupby(keys).cumcount())
    if rerun is None:
        rerun = recorded.iloc[0:0]
    right = rerun.assign(n=rerun.groupby(keys).cumcount())
    merged = left[[*keys, "n", "price", "volume"]].merge(
        right[[*keys, "n", "price", "volume"]], on=[*keys, "n"], how="outer", suffixes=("_recorded", "_rerun")
    )
    return merged.sort_values(["time", "n"], kind="stable").drop(columns="n").reset_index(drop=True)


def _same(row: pd.Series) -> bool:
    return bool(row["price_recorded"] == row["price_rerun"] and row["volume_recorded"] == row["volume_rerun"])


class SignalReplayPanel(w.VBox):
    """Replay ``sessions`` (recorded engine sessions or backtests of stored bars).

    With a ``store`` (a ``BarStore``) the panel also builds sessions from stored bars: pick a stock
    and a date range, then "Load bars". ``settings`` gives the rules of those backtests and the
    starting parameters of reruns.
    """

    def __init__(
        self,
        sessions: Sequence[ReplaySession] = (),
        *,
        store: Any = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            settings = Settings(rules=sessions[0].rules, fees=sessions[0].fees) if sessions else Settings()
        self.settings = settings
        self.store = store
        self.state = ReplayState(sessions=list(sessions), params=rule_values(self.settings.rules))
        self.runner = CommandRunner(name="miniqmt-replay")

        self.session_pick = w.Dropdown(description="session", layout=w.Layout(width="520px"))
        self.code_pick = w.Dropdown(description="stock")
        # no readout: the cursor label below says which bar (1-based) and when
        self.slider = w.IntSlider(min=0, max=0, description="bar", continuous_update=True, readout=False,
                                  layout=w.Layout(width="520px"))
        self.play = w.Play(interval=300, min=0, max=0, step=1)
        self.prev_button = w.Button(icon="step-backward", tooltip="previous bar", layout=w.Layout(width="40px"))
        self.next_button = w.Button(icon="step-forward", tooltip="next bar", layout=w.Layout(width="40px"))
        self.next_trade_button = w.Button(description="next trade", icon="forward")
        self.cursor_label = w.HTML("")
        self.figure = self._new_figure()
        self.position = w.HTML("")
        self.form = RuleParamsForm(self.state)
        self.rerun_button = w.Button(description="Rerun with these parameters", button_style="primary",
                                     icon="refresh", layout=w.Layout(width="auto"))
        self.compare = w.HTML("")
        self.message = w.HTML("")
        store_box = self._store_controls() if store is not None else w.VBox([])

        for widget, css in (
            (self.session_pick, "mq-replay-session"),
            (self.code_pick, "mq-replay-code"),
            (self.slider, "mq-replay-slider"),
            (self.next_button, "mq-replay-next"),
            (self.prev_button, "mq-replay-prev"),
            (self.next_trade_button, "mq-replay-next-trade"),
            (self.position, "mq-replay-position"),
            (self.rerun_button, "mq-replay-rerun"),
            (self.compare, "mq-replay-compare"),
            (self.message, "mq-replay-message"),
        ):
            widget.add_class(css)

        self._links = [
            w.link((self.state, "cursor"), (self.slider, "value")),
            w.jslink((self.play, "value"), (self.slider, "value")),
        ]
        self.session_pick.observe(self._session_picked, names="value")
        self.code_pick.observe(self._code_picked, names="value")
        self.prev_button.on_click(lambda _: self.step(-1))
        self.next_button.on_click(lambda _: self.step(1))
        self.next_trade_button.on_click(lambda _: self.next_trade())
        self.rerun_button.on_click(self._rerun_clicked)
        self.state.observe(self._sessions_changed, names="sessions")
        self.state.observe(self._stock_changed, names="bars")
        self.state.observe(self._cursor_moved, names="cursor")
        self.state.observe(self._rerun_changed, names="rerun_trades")

        super().__init__(
            [
                store_box,
                w.HBox([self.session_pick, self.code_pick]),
                w.HBox([self.play, self.prev_button, self.slider, self.next_button, self.next_trade_button]),
                self.cursor_label,
                self.figure,
                w.HBox([w.VBox([w.HTML("<b>Position at the cursor</b>"), self.position]),
                        w.VBox([w.HTML("<b>Rerun parameters</b>"), self.form, self.rerun_button, self.message])]),
                w.HTML("<b>Trades: recorded vs rerun</b>"),
                self.compare,
            ]
        )
        self.add_class("mq-replay-panel")
        self._sessions_changed({"new": self.state.sessions})

    # -- building ------------------------------------------------------------------------------------

    @staticmethod
    def _new_figure() -> go.FigureWidget:
        fig = go.FigureWidget()
        fig.add_candlestick(name="price", increasing_line_color=GAIN, decreasing_line_color=LOSS)
        for rule in RULES:
            fig.add_scatter(mode="markers", name=rule, marker={"color": RULE_COLOURS[rule], "size": 12,
                                                               "line": {"width": 1, "color": "#000"}})
        fig.add_scatter(mode="markers", name="signal, not executed",
                        marker={"symbol": "x", "color": "#888", "size": 9})
        fig.add_scatter(mode="markers", name="rerun buy",
                        marker={"symbol": "diamond-open", "color": GAIN, "size": 13, "line": {"width": 2}})
        fig.add_scatter(mode="markers", name="rerun sell",
                        marker={"symbol": "diamond-open", "color": LOSS, "size": 13, "line": {"width": 2}})
        # no fixed width: the chart takes the width of the output area and follows it when it changes
        fig.update_layout(autosize=True, height=450, xaxis_rangeslider_visible=False,
                          margin={"l": 50, "r": 20, "t": 40, "b": 30}, legend={"orientation": "h"})
        return fig

    def _store_controls(self) -> w.VBox:
        codes = self.store.codes()
        self.store_code = w.Dropdown(options=codes, description="stored", value=codes[0] if codes else None)
        self.store_start = w.DatePicker(description="from")
        self.store_end = w.DatePicker(description="to")
        self.load_button = w.Button(description="Load bars", icon="download")
        self.load_button.add_class("mq-replay-load")
        self.load_button.on_click(self._load_clicked)
        return w.VBox([w.HBox([self.store_code, self.store_start, self.store_end, self.load_button])])

    # -- actions -------------------------------------------------------------------------------------

    def _report(self, level: str, text: str) -> None:
        self.message.value = message_html(level, text)

    def add_session(self, session: ReplaySession) -> None:
        """Offer ``session`` and select it."""
        self.state.sessions = [*self.state.sessions, session]
        self.session_pick.value = len(self.state.sessions) - 1

    def load_stored(self) -> Future[Any]:
        """Backtest the stored bars of the chosen stock and dates into a new session (on the worker)."""
        code, start, end = self.store_code.value, self.store_start.value, self.store_end.value
        if code is None:
            raise ValueError("the bar store holds no stocks")
        if start is not None and end is not None and start > end:
            raise ValueError(f"the date range is empty: {start} is after {end}")

        def job() -> ReplaySession | None:
            bars = self.store.query(code, start, end)
            if bars.empty:
                self._report("error", f"no stored bars of {code} in that date range")
                return None
            session = bars_session(bars, self.settings)
            self.add_session(session)
            return session

        return self.runner.submit(
            f"load {code}", job, self._report, done=lambda s: f"loaded {s.name}" if s is not None else None
        )

    def _load_clicked(self, _: Any) -> None:
        try:
            self.load_stored()
        except ValueError as exc:
            self._report("error", str(exc))

    def step(self, delta: int) -> None:
        self.state.cursor = int(np.clip(self.state.cursor + delta, 0, self.slider.max))

    def next_trade(self) -> None:
        """Move the cursor to the next bar with a recorded or rerun trade."""
        bars = self.state.bars
        if bars is None:
            return
        times = [t for t in (self.state.trades, self.state.rerun_trades) if t is not None and not t.empty]
        if not times:
            return
        stamps = pd.DatetimeIndex(pd.concat([t["time"] for t in times]).unique())
        positions = np.flatnonzero(bars.index.isin(stamps))
        later = positions[positions > self.state.cursor]
        if later.size:
            self.state.cursor = int(later[0])

    def rerun(self) -> Future[Any]:
        """Trade the session again with the form's parameters (on the command worker)."""
        session = self.state.session
        if session is None:
            raise ValueError("pick a session first")
        rules = validated_rules(self.settings, self.state.params)

        def job() -> pd.DataFrame:
            trades = session.rerun(rules)
            if self.state.session is session:  # the user may have moved on meanwhile
                self.state.set_rerun(trades)
            return trades

        return self.runner.submit("rerun", job, self._report,
                                  done=lambda t: f"rerun: {plural(len(t), 'trade')} (recorded: {len(session.trades)})")

    def _rerun_clicked(self, _: Any) -> None:
        try:
            self.rerun()
        except ValueError as exc:  # ConfigError included: the message names the key
            self._report("error", str(exc))

    # -- view → state --------------------------------------------------------------------------------

    def _session_picked(self, change: dict[str, Any]) -> None:
        index = change["new"]
        session = None if index is None else self.state.sessions[index]
        self.state.session = session
        self.state.set_rerun(None)
        codes = session.codes() if session is not None else []
        traded = set(session.trades["stock_code"]) if session is not None else set()
        # a traded stock first: it has something to show
        options = sorted(codes, key=lambda c: (c not in traded, c))
        self.code_pick.options = options
        if options:
            if self.code_pick.value == options[0]:
                self._code_picked({"new": options[0]})  # same stock, new session: reload anyway
            else:
                self.code_pick.value = options[0]

    def _code_picked(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.state.select(change["new"])

    # -- state → view --------------------------------------------------------------------------------

    def _sessions_changed(self, change: dict[str, Any]) -> None:
        options = [(s.name, i) for i, s in enumerate(change["new"])]
        current = self.session_pick.value
        self.session_pick.options = options
        if options and current is None:
            self.session_pick.value = 0

    def _stock_changed(self, change: dict[str, Any]) -> None:
        bars = change["new"]
        if bars is None:
            return
        last = max(len(bars) - 1, 0)
        self.slider.max = self.play.max = last
        trades, signals = self.state.trades, self.state.signals
        with self.figure.batch_update():
            # no per-trace key (such as name) set for only some traces: a batched restyle would blank
            # that key on the others
            self.figure.data[0].update(x=bars.index, open=bars["open"], high=bars["high"], low=bars["low"],
                                       close=bars["close"])
            for i, rule in enumerate(RULES, start=1):
                mine = trades[trades["rule"] == rule]
                symbols = np.where(mine["side"] == "BUY", "triangle-up", "triangle-down")
                self.figure.data[i].update(
                    x=mine["time"], y=mine["price"], marker={"symbol": list(symbols)},
                    text=[f"{s} {v} @ {p:.2f}" for s, v, p in zip(mine["side"], mine["volume"], mine["price"],
                                                                   strict=True)],
                )
            done = ["executed", "partially_executed"]
            missed = signals[~signals["outcome"].isin(done)] if not signals.empty else signals
            self.figure.data[SIGNAL_TRACE].update(
                x=missed["time"], y=missed["price"],
                text=[f"{r}: {o} {m}" for r, o, m in zip(missed["rule"], missed["outcome"], missed["message"],
                                                          strict=True)],
            )
            self.figure.layout.title = f"{self.state.code} — {html.escape(self.state.session.name)}"
        self._rerun_changed({"new": self.state.rerun_trades})
        self._cursor_moved({"new": self.state.cursor})

    def _rerun_changed(self, change: dict[str, Any]) -> None:
        trades = change["new"]
        empty = pd.DataFrame({"time": [], "price": [], "side": []})
        trades = empty if trades is None else trades
        with self.figure.batch_update():
            for index, side in ((RERUN_BUY, "BUY"), (RERUN_SELL, "SELL")):
                mine = trades[trades["side"] == side]
                self.figure.data[index].update(x=mine["time"], y=mine["price"])
        if self.state.trades is not None:
            self.compare.value = self._compare_html()
        self._cursor_moved({"new": self.state.cursor})

    def _compare_html(self) -> str:
        table = compare_trades(self.state.trades, self.state.rerun_trades)
        rerun = self.state.rerun_trades
        rows = render_table(
            table, COMPARE_COLUMNS, empty="no trades of this stock", css_class="mq-compare-table", height=360,
            row_style=None if rerun is None else (lambda r: "" if _same(r) else "background: #fff4d6"),
        )
        if rerun is None:
            return rows
        changed = int((~table.apply(_same, axis=1)).sum()) if not table.empty else 0
        differ = "trade differs" if len(table) == 1 else "trades differ"
        return f"<div>{changed} of {len(table)} {differ} (highlighted)</div>{rows}"

    def _cursor_moved(self, change: dict[str, Any]) -> None:
        bars = self.state.bars
        if bars is None or bars.empty:
            return
        i = int(np.clip(change["new"], 0, len(bars) - 1))
        stamp = bars.index[i]
        with self.figure.batch_update():
            self.figure.layout.shapes = [
                {"type": "line", "xref": "x", "yref": "paper", "x0": stamp, "x1": stamp, "y0": 0, "y1": 1,
                 "line": {"color": "#444", "width": 1, "dash": "dot"}}
            ]
        self.cursor_label.value = f"<b>{fmt_time(stamp)}</b> — bar {i + 1} of {len(bars)}"
        self.position.value = self._position_html(i)

    def _position_html(self, i: int) -> str:
        from miniqmt_lab.rules import dynamic_exit_level_nb, grid_trigger_price_nb, holding, stop_loss_price_nb
        from miniqmt_lab.rules.params import rule_params

        close = float(self.state.bars["close"].iloc[i])
        columns = [("recorded", self.state.path, self.state.session.rules)]
        if self.state.rerun_path is not None:
            columns.append(("rerun", self.state.rerun_path, validated_rules(self.settings, self.state.params)))
        header = "".join(f"<th>{name}</th>" for name, _, _ in columns)
        cells: dict[str, list[str]] = {}
        for _, path, rules in columns:
            row = path.iloc[i]
            held = not pd.isna(row["volume"]) and row["volume"] > 0
            params = rule_params(rules)
            state = holding(row["volume"], row["available"], row["cost"], row["base_cost"], row["high"],
                            bool(row["tp_done"]), row["grid_k"]) if held else None
            values = {
                "volume": fmt_int(row["volume"] if held else 0),
                "available": fmt_int(row["available"] if held else 0),
                "cost": fmt_number(row["cost"], 3) if held else "—",
                "profit at close": fmt_ratio(close / row["cost"] - 1) if held else "—",
                "high": fmt_number(row["high"]) if held else "—",
                "first TP done": ("yes" if row["tp_done"] else "no") if held else "—",
                "grid buys": fmt_int(row["grid_k"]) if held else "—",
                "stop-loss price": fmt_number(stop_loss_price_nb(row["cost"], params)) if held else "—",
                "dynamic exit": fmt_number(dynamic_exit_level_nb(row["high"], row["cost"], params))
                if held and row["tp_done"] else "—",
                "next grid buy": fmt_number(grid_trigger_price_nb(state, params)) if held else "—",
            }
            for key, text in values.items():
                cells.setdefault(key, []).append(text)
        body = "".join(
            f'<tr><td class="mq-left">{html.escape(k)}</td>' + "".join(f"<td>{html.escape(v)}</td>" for v in vs)
            + "</tr>"
            for k, vs in cells.items()
        )
        bar = self.state.bars.iloc[i]
        ohlc = " / ".join(fmt_number(bar[c]) for c in ("open", "high", "low", "close"))
        return (
            f'{TABLE_CSS}<div>O/H/L/C {ohlc}</div><table class="mq-table mq-position-table"><thead><tr><th></th>'
            f"{header}</tr></thead><tbody>{body}</tbody></table>"
        )

    def close(self) -> None:
        if self.comm is not None:  # ipywidgets calls close() again on garbage collection
            for link in self._links:
                link.unlink()
            self.runner.shutdown()
            self.form.close()
        super().close()
