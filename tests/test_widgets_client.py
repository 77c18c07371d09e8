"""The control panel on a served engine: ``EngineControlPanel(EngineClient(url, token))`` over a real
socket, with the same clicks and the same typed refusals as on an engine in the kernel."""

from __future__ import annotations

import pytest
from engine_support import fast_settings
from service_support import TOKEN, live_engine, serving
from widgets_support import wait_until

from miniqmt_lab.bars import sample_bars
from miniqmt_lab.factory import build_engine
from miniqmt_lab.schema import TradingState
from miniqmt_lab.service import EngineClient
from miniqmt_lab.widgets import EngineControlPanel

pytestmark = pytest.mark.timeout(120)


def test_panel_controls_a_served_paper_engine(tmp_path) -> None:
    settings = fast_settings(tmp_path, auto_trading=True)
    engine = build_engine(settings, replay=sample_bars(n_stocks=3, n_days=40, seed=4), pace=0.005)
    with serving(engine, tmp_path / "data") as web:
        panel = EngineControlPanel(EngineClient(f"http://127.0.0.1:{web.port}", TOKEN), poll_interval=0.05)
        watch = panel.watch
        try:
            wait_until(lambda: "PAPER" in panel.banner.value and "STOPPED" in panel.status.value, watch)
            assert str(engine.database_path) in panel.database.value

            panel.start_button.click()
            assert panel.runner.wait(30)
            assert engine.running
            assert engine.wait_idle(60)
            code = engine.positions()["stock_code"].iloc[0]
            wait_until(lambda: code in panel.positions.html.value and "entry" in panel.trades.html.value, watch)

            panel.state_reason.value = "from the notebook"
            panel.trading_state.value = "halted"
            assert panel.runner.wait(10)
            assert engine.trading_state is TradingState.HALTED
            wait_until(lambda: "HALTED" in panel.state_line.value and "from the notebook" in panel.state_line.value,
                       watch)
            form = panel.order_form
            form.code.value, form.volume.value = code, 100
            form.submit.click()
            assert panel.runner.wait(20)
            assert "TradingHalted (trading_halted)" in form.message.value  # the served refusal, typed as here

            panel.trading_state.value = "active"  # paper: no question
            assert panel.runner.wait(10)
            assert engine.trading_state is TradingState.ACTIVE

            panel.stop_button.click()
            assert panel.runner.wait(30)
            assert not engine.running
            wait_until(lambda: "STOPPED" in panel.status.value, watch)
        finally:
            panel.close()
            engine.stop()


def test_panel_on_a_served_live_engine_asks_and_the_client_confirms(tmp_path, userdata) -> None:
    engine, qmt = live_engine(tmp_path, userdata)
    with serving(engine, tmp_path / "data") as web:
        url = f"http://127.0.0.1:{web.port}"
        plain = EngineControlPanel(EngineClient(url, TOKEN), poll_interval=0.05)
        confirming = EngineControlPanel(EngineClient(url, TOKEN, confirm_live=True), poll_interval=0.05)
        try:
            for panel in (plain, confirming):
                wait_until(lambda p=panel: "LIVE" in p.banner.value and p.trading_state.value == "active",
                           panel.watch)
            confirming.trading_state.value = "halted"  # halting: at once, and the server takes it unconfirmed
            assert confirming.runner.wait(10)
            assert engine.trading_state is TradingState.HALTED

            # a client built without confirm_live: the panel asks, Yes, and the server still says no
            wait_until(lambda: plain.trading_state.value == "halted", plain.watch)
            plain.trading_state.value = "active"
            assert plain.state_confirm.asking
            plain.state_confirm.yes.click()
            assert plain.runner.wait(10)
            assert engine.trading_state is TradingState.HALTED
            refused = plain.message.value
            assert "switch trading to active failed: ConfirmationRequired" in refused and "LIVE" in refused, refused
            wait_until(lambda: plain.trading_state.value == "halted", plain.trading_state)  # put back

            # with confirm_live=True the panel's own question is the confirmation the server gets
            wait_until(lambda: confirming.trading_state.value == "halted", confirming.watch)
            confirming.trading_state.value = "active"
            assert confirming.state_confirm.asking and engine.trading_state is TradingState.HALTED
            confirming.state_confirm.yes.click()
            assert confirming.runner.wait(10)
            assert engine.trading_state is TradingState.ACTIVE
        finally:
            plain.close()
            confirming.close()
            engine.stop()
    assert qmt.order_requests == []
