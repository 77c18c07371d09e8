"""Engine control panel: mode banner, start/stop, auto trading, thread health, broker, live tables.

Model → view: the panel observes an :class:`EngineWatch`, which refreshes from the engine's
snapshot on a background thread whenever ``engine.version`` moves. View → model: every button
hands its engine call to a :class:`CommandRunner`, so nothing the engine does runs on the UI
thread. Whatever can trade real money unattended needs a second, explicit click unless the engine is
known to be on paper: turning auto trading on, and Start while auto trading is on (manual orders are
confirmed by the order form). Stop then Start runs the same engine again (its book restored from the
database); the panel keeps observing it.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as w
import pandas as pd

from miniqmt_lab.widgets._binding import Guard
from miniqmt_lab.widgets._confirm import ConfirmBox, account_label, live_or_unknown
from miniqmt_lab.widgets._html import (
    BAD,
    OK,
    Column,
    fmt_clock,
    fmt_int,
    fmt_number,
    fmt_time,
    message_html,
    render_table,
)
from miniqmt_lab.widgets._poll import EngineLike, EngineWatch
from miniqmt_lab.widgets._runner import CommandRunner
from miniqmt_lab.widgets.tables import OrderForm, PositionsView, SignalsView, TradesView

THREAD_COLUMNS = (
    Column("name", "thread", left=True),
    Column("state", "state", left=True),
    Column("alive", "alive", lambda v: "✓" if v else "✖", lambda v: f"color: {OK if v else BAD}"),
    Column("last_heartbeat", "last heartbeat", fmt_clock),
    Column("restarts", "restarts", fmt_int, lambda v: f"color: {BAD}; font-weight: 600" if v else ""),
)

_BANNER_STYLE = "padding: 6px 12px; border-radius: 4px; font-weight: 700; letter-spacing: 0.05em;"


def banner_html(snapshot: Any) -> str:
    if snapshot is None:
        return f'<div style="{_BANNER_STYLE} background: #eee; color: #555">waiting for the engine…</div>'
    account = getattr(snapshot.broker, "account", "")
    if snapshot.mode == "live":
        detail = f" on account {html.escape(account)}" if account else ""
        return (
            f'<div class="mq-live" style="{_BANNER_STYLE} background: #c00; color: white; font-size: 1.3em">'
            f"LIVE — real orders{detail}</div>"
        )
    return (
        f'<div class="mq-paper" style="{_BANNER_STYLE} background: #e3ecf7; color: #1f4e79">'
        f"PAPER — simulated broker, no real orders</div>"
    )


def status_html(snapshot: Any) -> str:
    if snapshot is None:
        return ""
    running = (
        f'<b style="color: {OK}">RUNNING</b>' if snapshot.running else '<b style="color: #555">STOPPED</b>'
    )
    broker = snapshot.broker
    if broker.connected:
        link = f'<span style="color: {OK}">connected</span>'
    else:
        link = f'<span style="color: {BAD}; font-weight: 600">disconnected</span>'
    broker_text = f"{html.escape(broker.name)} {link}"
    if broker.message:
        broker_text += f" ({html.escape(broker.message)})"
    if broker.outages:
        broker_text += f", {broker.outages} outage(s)"
    auto = "on" if snapshot.auto_trading else "off"
    parts = [
        running,
        f"broker: {broker_text}",
        f"auto trading: <b>{auto}</b>",
        f"cash ¥{fmt_number(snapshot.cash)}",
        f"total asset ¥{fmt_number(snapshot.total_asset)}",
        f"data version {snapshot.version}",
        f"as of {fmt_time(snapshot.time)}",
    ]
    text = " · ".join(parts)
    if snapshot.last_error:
        text += f'<br><span style="color: {BAD}">last error: {html.escape(str(snapshot.last_error))}</span>'
    return f'<div style="font-size: 13px">{text}</div>'


def threads_html(snapshot: Any) -> str:
    threads = () if snapshot is None else snapshot.threads
    frame = pd.DataFrame(
        [
            {
                "name": t.name,
                "state": str(t.state),
                "alive": t.alive,
                "last_heartbeat": t.last_heartbeat,
                "restarts": t.restarts,
            }
            for t in threads
        ]
    )
    return render_table(frame, THREAD_COLUMNS, empty="no engine threads", css_class="mq-threads-table")


class EngineControlPanel(w.VBox):
    """Everything needed to run one engine from a notebook.

    ``poll_interval`` is how often ``engine.version`` is read; the panel stops its poller and
    command worker on :meth:`close`.
    """

    def __init__(self, engine: EngineLike, *, poll_interval: float = 0.5) -> None:
        self.engine = engine
        self.watch = EngineWatch(engine, interval=poll_interval, start=False)
        self.runner = CommandRunner()
        self._guard = Guard()

        self.banner = w.HTML(banner_html(None))
        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.auto = w.ToggleButton(value=False, description="Auto trading OFF", icon="robot")
        self.confirm_box = ConfirmBox(
            "Yes, trade automatically on LIVE",
            css_prefix="mq-auto",
            question='<b style="color: #c00">Auto trading on a LIVE account sends real orders by itself.</b>',
        )
        self.confirm_yes, self.confirm_no = self.confirm_box.yes, self.confirm_box.no
        self.start_confirm = ConfirmBox("Yes, start on the LIVE account", css_prefix="mq-start")
        self.status = w.HTML("")
        self.threads = w.HTML(threads_html(None))
        self.message = w.HTML("")
        self.positions = PositionsView(self.watch)
        self.trades = TradesView(self.watch)
        self.signals = SignalsView(self.watch)
        self.order_form = OrderForm(engine, self.runner, self.watch)
        self.tabs = w.Tab(children=[self.positions, self.trades, self.signals, self.order_form])
        for i, title in enumerate(("Positions", "Trades", "Signals", "Manual order")):
            self.tabs.set_title(i, title)

        for widget, css in (
            (self.banner, "mq-mode-banner"),
            (self.start_button, "mq-start"),
            (self.stop_button, "mq-stop"),
            (self.auto, "mq-auto"),
            (self.status, "mq-status"),
            (self.threads, "mq-threads"),
            (self.message, "mq-message"),
        ):
            widget.add_class(css)

        self.start_button.on_click(lambda _: self._start_clicked())
        self.stop_button.on_click(lambda _: self._command("stop engine", self.engine.stop))
        self.auto.observe(self._auto_toggled, names="value")
        self.auto.observe(lambda change: self._style_auto(bool(change["new"])), names="value")
        self.watch.observe(self._snapshot_changed, names="snapshot")
        self.watch.observe(self._watch_error, names="error")

        super().__init__(
            [
                self.banner,
                w.HBox([self.start_button, self.stop_button, self.auto]),
                self.confirm_box,
                self.start_confirm,
                self.status,
                self.message,
                w.HTML("<b>Threads</b>"),
                self.threads,
                self.tabs,
            ]
        )
        self.add_class("mq-control-panel")
        self.watch.start()

    # -- view → model ------------------------------------------------------------------------------

    def _report(self, level: str, text: str) -> None:
        self.message.value = message_html(level, text)

    def _command(self, label: str, fn: Callable[[], object]) -> None:
        self.runner.submit(label, fn, self._report)

    def _start_clicked(self) -> None:
        snap = self.watch.snapshot
        if self._start_trades_unattended(snap):
            unknown = "The engine's mode is not known yet: treated as LIVE, with auto trading on. "
            detail = unknown if snap is None else "Auto trading is ON. "
            self.start_confirm.ask(
                lambda: self._command("start engine", self.engine.start),
                f'<b style="color: #c00">{detail}Once started, the engine sends real orders to the LIVE account '
                f"{account_label(snap)} by itself.</b>",
            )
            self._report("info", "confirm the start: auto trading on a LIVE account")
            return
        self._command("start engine", self.engine.start)

    @staticmethod
    def _start_trades_unattended(snap: Any) -> bool:
        # an unknown mode counts as live, an unknown auto trading flag as on
        return live_or_unknown(snap) and (snap is None or bool(snap.auto_trading))

    def _auto_toggled(self, change: dict[str, Any]) -> None:
        if self._guard:
            return
        want = bool(change["new"])
        # an unknown mode is treated as live: never switch on unattended trading unconfirmed
        if want and live_or_unknown(self.watch.snapshot):
            with self._guard:
                self.auto.value = False
            self.confirm_box.ask(self._live_auto_confirmed)
            return
        self._command(f"auto trading {'on' if want else 'off'}", lambda: self.engine.set_auto_trading(want))

    def _style_auto(self, on: bool) -> None:
        live = self.watch.snapshot is not None and self.watch.snapshot.mode == "live"
        self.auto.description = f"Auto trading {'ON' if on else 'OFF'}"
        self.auto.button_style = ("danger" if live else "success") if on else ""

    def _live_auto_confirmed(self) -> None:
        with self._guard:
            self.auto.value = True
        self._command("auto trading on (LIVE)", lambda: self.engine.set_auto_trading(True))

    # -- model → view ------------------------------------------------------------------------------

    def _snapshot_changed(self, change: dict[str, Any]) -> None:
        snap = change["new"]
        if snap is None:
            return
        with self._guard:
            self.auto.value = bool(snap.auto_trading)
        self._style_auto(bool(snap.auto_trading))  # the mode may have become known since the last toggle
        self.start_button.disabled = bool(snap.running)
        self.stop_button.disabled = not snap.running
        self.banner.value = banner_html(snap)
        self.status.value = status_html(snap)
        self.threads.value = threads_html(snap)
        if not live_or_unknown(snap) or snap.auto_trading:
            self.confirm_box.dismiss()
        if snap.running or not self._start_trades_unattended(snap):
            self.start_confirm.dismiss()

    def _watch_error(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._report("error", f"cannot read the engine: {change['new']}")

    def close(self) -> None:
        if self.comm is not None:  # ipywidgets calls close() again on garbage collection
            self.watch.stop()
            self.runner.shutdown()
            for child in (self.positions, self.trades, self.signals):
                child.close()
        super().close()
