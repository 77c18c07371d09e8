"""Engine control panel: mode banner, start/stop, auto trading, the kill switch, thread health, broker,
live tables.

Model → view: the panel observes an :class:`EngineWatch`, which refreshes from the engine's
snapshot on a background thread whenever ``engine.version`` moves. View → model: every button
hands its engine call to a :class:`CommandRunner`, so nothing the engine does runs on the UI
thread; a command that fails puts the switches back to what the engine says. The panel uses only
:class:`miniqmt_lab.protocols.EngineFace`, so it controls an ``Engine`` here or a served engine
through ``EngineClient`` alike.

Whatever can trade real money unattended needs a second, explicit click unless the engine is known to
be on paper: turning auto trading on, Start while auto trading is on, and loosening the kill switch
(halted → reducing → active); tightening it (halting) acts at once, as switching auto trading off does.
Manual orders are confirmed by the order form. Stop then Start runs the same engine again (its book
restored from the database); the panel keeps observing it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import ipywidgets as w

from miniqmt_lab.protocols import EngineFace
from miniqmt_lab.widgets._binding import Guard
from miniqmt_lab.widgets._confirm import ConfirmBox, account_label, live_or_unknown
from miniqmt_lab.widgets._html import message_html
from miniqmt_lab.widgets._poll import EngineWatch
from miniqmt_lab.widgets._runner import CommandRunner
from miniqmt_lab.widgets._status import (
    TRADING_STATES,
    banner_html,
    database_html,
    loosens,
    status_html,
    strictest,
    threads_html,
    trading_state_html,
)
from miniqmt_lab.widgets.tables import OrderForm, PositionsView, SignalsView, TradesView

STATE_LABELS = {"active": "active", "reducing": "reducing (sells only)", "halted": "halted"}

_WHAT_LOOSENING_SENDS = {
    "active": "rules, entries and manual orders send real buy and sell orders again",
    "reducing": "sell orders (stop loss, take profit, manual sells) reach the account again; buys stay refused",
}


class EngineControlPanel(w.VBox):
    """Everything needed to run one engine from a notebook.

    ``engine``: anything with :class:`~miniqmt_lab.protocols.EngineFace` (``build_engine(...)`` or
    ``EngineClient(url, token)``). ``poll_interval`` is how often ``engine.version`` is read; the panel
    stops its poller and command worker on :meth:`close`.
    """

    def __init__(self, engine: EngineFace, *, poll_interval: float = 0.5) -> None:
        self.engine = engine
        self.watch = EngineWatch(engine, interval=poll_interval, start=False)
        self.runner = CommandRunner()
        self._guard = Guard()
        self._state_asked_from: str | None = None  # the engine's state when a loosening was asked

        self.banner = w.HTML(banner_html(None))
        self.database = w.HTML("")
        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.auto = w.ToggleButton(value=False, description="Auto trading OFF", icon="robot",
                                   layout=w.Layout(width="auto", min_width="170px"))
        self.confirm_box = ConfirmBox(
            "Yes, trade automatically on LIVE",
            css_prefix="mq-auto",
            question='<b style="color: #c00">Auto trading on a LIVE account sends real orders by itself.</b>',
        )
        self.confirm_yes, self.confirm_no = self.confirm_box.yes, self.confirm_box.no
        self.start_confirm = ConfirmBox("Yes, start on the LIVE account", css_prefix="mq-start")
        self.trading_state = w.ToggleButtons(
            options=[(STATE_LABELS[s], s) for s in TRADING_STATES], value=None,  # none lit until the engine says
            tooltips=["trade: buys and sells", "sells only: no buy goes out", "no order goes out"],
            style={"button_width": "auto"},
        )
        self.state_reason = w.Text(placeholder="reason for the switch (optional)", layout=w.Layout(width="20em"))
        self.state_confirm = ConfirmBox("Yes, switch on the LIVE account", css_prefix="mq-state")
        self.state_line = w.HTML("")
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
            (self.database, "mq-database"),
            (self.start_button, "mq-start"),
            (self.stop_button, "mq-stop"),
            (self.auto, "mq-auto"),
            (self.trading_state, "mq-trading-state"),
            (self.state_reason, "mq-state-reason"),
            (self.state_line, "mq-state-line"),
            (self.status, "mq-status"),
            (self.threads, "mq-threads"),
            (self.message, "mq-message"),
        ):
            widget.add_class(css)

        self.start_button.on_click(lambda _: self._start_clicked())
        self.stop_button.on_click(lambda _: self._command("stop engine", self.engine.stop))
        self.auto.observe(self._auto_toggled, names="value")
        self.auto.observe(lambda _: self._style_auto(), names="value")
        self.trading_state.observe(self._state_picked, names="value")
        self.state_confirm.no.on_click(lambda _: self._report("info", "trading state unchanged"))
        self.watch.observe(self._snapshot_changed, names="snapshot")
        self.watch.observe(self._watch_error, names="error")

        row = w.Layout(align_items="center", flex_flow="row wrap")
        super().__init__(
            [
                self.banner,
                self.database,
                w.HBox([self.start_button, self.stop_button, self.auto], layout=row),
                self.confirm_box,
                self.start_confirm,
                w.HBox([w.HTML("<b>Trading</b>&nbsp;"), self.trading_state, self.state_reason], layout=row),
                self.state_confirm,
                self.state_line,
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

    def _command(self, label: str, fn: Callable[[], object], *, done: Callable[[Any], str | None] | None = None
                 ) -> Future[Any]:
        future = self.runner.submit(label, fn, self._report, done=done)
        future.add_done_callback(lambda f: self._resync() if f.exception() is not None else None)
        return future

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
                self.auto.value = False  # it reads OFF until Yes: nothing is on while the question is open
            self.confirm_box.ask(self._live_auto_confirmed)
            return
        self._command(f"auto trading {'on' if want else 'off'}", lambda: self.engine.set_auto_trading(want))

    def _style_auto(self) -> None:
        on = bool(self.auto.value)  # the value now, not the one notified: a LIVE "on" is put back at once
        snap = self.watch.snapshot
        live = snap is not None and snap.mode == "live"
        self.auto.description = f"Auto trading {'ON' if on else 'OFF'}"
        self.auto.button_style = ("danger" if live else "success") if on else ""

    def _live_auto_confirmed(self) -> None:
        with self._guard:
            self.auto.value = True
        self._command("auto trading on (LIVE)", lambda: self.engine.set_auto_trading(True))

    def _state_picked(self, change: dict[str, Any]) -> None:
        if self._guard:
            return
        want = str(change["new"])
        snap = self.watch.snapshot
        engine_says = None if snap is None else str(snap.trading_state)
        # the switch may be ahead of the last snapshot (a halt just sent): judge from the stricter of the two
        current = strictest(engine_says, change["old"])
        if loosens(current, want) and live_or_unknown(snap):
            with self._guard:  # the switch shows the state before the click until Yes
                self.trading_state.value = change["old"]
            self._state_asked_from = engine_says
            now = "not known yet (treated as LIVE and halted)" if snap is None else current.upper()
            self.state_confirm.ask(
                lambda: self._switch_state(want),
                f'<b style="color: #c00">Trading is {now} on the LIVE account {account_label(snap)}. Switch to '
                f"{want.upper()}: {_WHAT_LOOSENING_SENDS[want]}?</b>",
            )
            self._report("info", f"confirm the switch to {want} on the LIVE account")
            return
        self.state_confirm.dismiss()
        self._switch_state(want)

    def _switch_state(self, state: str) -> Future[Any]:
        reason = self.state_reason.value.strip()
        with self._guard:
            self.trading_state.value = state

        def switched(_: object) -> str:
            self.state_reason.value = ""
            return f"trading state: {state}" + (f" ({reason})" if reason else "")

        return self._command(f"switch trading to {state}", lambda: self.engine.set_trading_state(state, reason),
                             done=switched)

    # -- model → view ------------------------------------------------------------------------------

    def _resync(self) -> None:
        """Put the switches back to what the engine says (after a command failed)."""
        snap = self.watch.snapshot
        if snap is None:
            return
        with self._guard:
            self.auto.value = bool(snap.auto_trading)
            self.trading_state.value = str(snap.trading_state)
        self._style_auto()

    def _snapshot_changed(self, change: dict[str, Any]) -> None:
        snap = change["new"]
        if snap is None:
            return
        self._resync()  # the mode may have become known since the last toggle
        self.start_button.disabled = bool(snap.running)
        self.stop_button.disabled = not snap.running
        self.banner.value = banner_html(snap)
        self.database.value = database_html(snap)
        self.state_line.value = trading_state_html(snap)
        self.status.value = status_html(snap)
        self.threads.value = threads_html(snap)
        if not live_or_unknown(snap) or snap.auto_trading:
            self.confirm_box.dismiss()
        if snap.running or not self._start_trades_unattended(snap):
            self.start_confirm.dismiss()
        if self.state_confirm.asking and str(snap.trading_state) != self._state_asked_from:
            self.state_confirm.dismiss()  # the state moved on: the question asked about another one

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
