"""The control panel on real engines built by the factory, seen only through ``EngineFace``: clicks reach
the engine, its state reaches the widgets. A paper engine on a replay, the same database reopened by a
new engine (prices come back with their time), and a live engine on the xtquant double."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from engine_support import fast_settings
from widgets_support import FaceOnly, wait_until

from miniqmt_lab.bars import sample_bars
from miniqmt_lab.factory import build_engine
from miniqmt_lab.schema import TradingState
from miniqmt_lab.widgets import EngineControlPanel
from miniqmt_lab.xtquant_double import FakeQmt

pytestmark = pytest.mark.timeout(90)

ACCOUNT = "8800004321"


def place(panel: EngineControlPanel, side: str, code: str, volume: int, price: float = 0.0) -> str:
    """Fill the order form, click, wait for the command; the form's message."""
    form = panel.order_form
    form.side.value, form.code.value, form.volume.value, form.price.value = side, code, volume, price
    form.submit.click()
    assert panel.runner.wait(20)
    return form.message.value


def test_start_trade_kill_switch_manual_orders_and_restart_through_the_panel(tmp_path) -> None:
    settings = fast_settings(tmp_path, auto_trading=False)
    engine = build_engine(settings, replay=sample_bars(n_stocks=4, n_days=60, seed=2), pace=0.005)
    panel = EngineControlPanel(FaceOnly(engine), poll_interval=0.05)
    watch = panel.watch
    try:
        wait_until(lambda: "PAPER" in panel.banner.value and "STOPPED" in panel.status.value, watch)
        assert str(engine.database_path) in panel.database.value and engine.database_path.is_absolute()
        assert panel.auto.value is False and panel.trading_state.value == "active"

        panel.auto.value = True  # paper: no confirmation
        panel.start_button.click()
        assert panel.runner.wait(30)
        assert engine.running and engine.snapshot().auto_trading
        wait_until(lambda: "RUNNING" in panel.status.value and "monitor" in panel.threads.value, watch)
        assert "start engine: done" in panel.message.value

        assert engine.wait_idle(45)
        watch.refresh()
        code = engine.positions()["stock_code"].iloc[0]
        held = int(engine.positions().set_index("stock_code").loc[code, "volume"])
        assert code in panel.positions.html.value
        assert "entry" in panel.trades.html.value and "executed" in panel.signals.html.value

        assert "InvalidStockCode" in place(panel, "BUY", "12345", 100)
        assert "InvalidVolume (invalid_volume)" in place(panel, "BUY", code, 150)  # not a whole lot
        message = place(panel, "SELL", code, held + 1000)
        assert f"you hold {held}" in message and "available" in message  # not "must be a whole lot"

        trades_before = len(engine.trades())
        assert "sent" in place(panel, "BUY", code, 100)
        wait_until(lambda: len(watch.trades) == trades_before + 1 and "manual" in panel.trades.html.value, watch)
        assert watch.trades["rule"].iloc[-1] == "manual"

        # the kill switch, from the panel to the engine's pre-trade check
        panel.state_reason.value = "testing the switch"
        panel.trading_state.value = "halted"
        assert panel.runner.wait(10)
        assert engine.trading_state is TradingState.HALTED
        wait_until(lambda: "HALTED" in panel.state_line.value, watch)
        assert "testing the switch" in panel.state_line.value
        assert "TradingHalted (trading_halted)" in place(panel, "BUY", code, 100)
        assert "TradingHalted" in place(panel, "SELL", code, 100)

        panel.trading_state.value = "reducing"  # paper: loosening needs no question
        assert panel.runner.wait(10)
        assert engine.trading_state is TradingState.REDUCING
        assert "TradingHalted (trading_halted)" in place(panel, "BUY", code, 100)
        assert "sent" in place(panel, "SELL", code, 100)
        wait_until(lambda: len(watch.trades) == trades_before + 2, watch)

        panel.trading_state.value = "active"
        assert panel.runner.wait(10)
        assert engine.trading_state is TradingState.ACTIVE

        panel.stop_button.click()
        assert panel.runner.wait(30)
        assert not engine.running
        wait_until(lambda: "STOPPED" in panel.status.value and "disconnected" in panel.status.value, watch)
        assert not panel.start_button.disabled and panel.stop_button.disabled
        stopped_at = watch.version

        panel.start_button.click()  # the same engine runs again, its book restored from the database
        assert panel.runner.wait(30)
        assert engine.running
        wait_until(lambda: "RUNNING" in panel.status.value and watch.version > stopped_at, watch)
        assert panel.start_button.disabled and not panel.stop_button.disabled
        assert panel.auto.value is True and "disconnected" not in panel.status.value
        assert code in panel.positions.html.value and "manual" in panel.trades.html.value

        restored = engine.positions().set_index("stock_code").loc[code]
        assert restored["price_time"] is not None  # the last price came back with the book, not the cost
        trades_before = len(engine.trades())
        assert "sent" in place(panel, "BUY", code, 100, float(restored["price"]))  # orders work after a restart
        wait_until(lambda: len(watch.trades) == trades_before + 1, watch)

        panel.stop_button.click()
        assert panel.runner.wait(30)
        wait_until(lambda: "STOPPED" in panel.status.value, watch)
    finally:
        panel.close()
        engine.stop()


def test_a_reopened_database_shows_its_last_prices_with_their_time(tmp_path) -> None:
    """A new engine on yesterday's database values the holdings at the last prices seen, marked with when
    they were seen, until its own ticks come."""
    settings = fast_settings(tmp_path)
    bars = sample_bars(n_stocks=3, n_days=80, seed=5)
    days = sorted(bars["date"].unique())
    first = build_engine(settings, replay=bars[bars["date"] <= days[49]])
    first.start()
    assert first.wait_idle(45)
    first.stop()

    second = build_engine(settings, replay=bars[bars["date"] > days[49]])
    panel = EngineControlPanel(FaceOnly(second), poll_interval=0.05)
    try:
        wait_until(lambda: "<tbody>" in panel.positions.html.value, panel.watch)  # the restored book is drawn
        positions = panel.watch.positions
        assert not positions.empty
        html = panel.positions.html.value
        for _, row in positions.iterrows():
            seen = pd.Timestamp(row["price_time"])
            assert row["price"] != row["cost"] or row["profit_ratio"] == 0
            assert f"last price seen {seen:%Y-%m-%d %H:%M:%S}" in html
            assert f"@{seen:%m-%d %H:%M}" in html
        assert html.count('class="mq-stale"') == len(positions)

        panel.start_button.click()
        assert panel.runner.wait(30)
        assert second.wait_idle(45)
        panel.watch.refresh()
        snap = panel.watch.snapshot
        old = [t for t in panel.watch.positions["price_time"] if (snap.time - t).total_seconds() > 60]
        assert len(old) < len(positions)  # the new ticks replaced the restored prices
        assert panel.positions.html.value.count('class="mq-stale"') == len(old)
    finally:
        panel.close()
        second.stop()


def test_live_engine_switches_need_a_second_click(tmp_path, userdata) -> None:
    live = fast_settings(tmp_path, simulation=False, auto_trading=False, account_id=ACCOUNT,
                         qmt_userdata_path=str(userdata))
    engine = build_engine(live, modules=FakeQmt(account_id=ACCOUNT, userdata_path=userdata))
    panel = EngineControlPanel(FaceOnly(engine), poll_interval=0.05)
    try:
        wait_until(lambda: "LIVE" in panel.banner.value and panel.trading_state.value == "active", panel.watch)
        assert "88******21" in panel.banner.value and ACCOUNT not in panel.banner.value
        assert re.search(r"live\.sqlite</code>", panel.database.value)

        panel.trading_state.value = "halted"  # the kill switch acts at once
        assert panel.runner.wait(10)
        assert engine.trading_state is TradingState.HALTED and not panel.state_confirm.asking

        panel.trading_state.value = "active"  # trading again on a live account: asked first
        assert panel.state_confirm.asking and panel.trading_state.value == "halted"
        assert "88******21" in panel.state_confirm.question.value
        assert panel.runner.wait(10)
        assert engine.trading_state is TradingState.HALTED
        panel.state_confirm.yes.click()
        assert panel.runner.wait(10)
        assert engine.trading_state is TradingState.ACTIVE
        wait_until(lambda: "ACTIVE" in panel.state_line.value, panel.watch)

        panel.auto.value = True
        assert panel.confirm_box.asking and panel.auto.description == "Auto trading OFF"
        assert not engine.snapshot().auto_trading
        panel.confirm_yes.click()
        assert panel.runner.wait(10)
        assert engine.snapshot().auto_trading
        wait_until(lambda: panel.auto.description == "Auto trading ON", panel.auto)
        assert panel.auto.button_style == "danger"
    finally:
        panel.close()
        engine.stop()
