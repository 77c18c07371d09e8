"""The control panel on the real paper engine: clicks reach the engine, its state reaches the widgets."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from miniqmt_lab.bars import sample_bars
from miniqmt_lab.config import Settings
from miniqmt_lab.engine import Engine, ReplayClock, ReplayFeed
from miniqmt_lab.widgets import EngineControlPanel

pytestmark = pytest.mark.timeout(60)


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_start_trade_manual_order_and_stop_through_the_panel(tmp_path) -> None:
    settings = Settings().with_values(data_dir=str(tmp_path))  # auto trading off, as by default
    bars = sample_bars(n_stocks=4, n_days=60, seed=2)
    engine = Engine(settings, feed=ReplayFeed.from_bars(bars, clock=ReplayClock(pace=0.005)))
    panel = EngineControlPanel(engine, poll_interval=0.05)
    try:
        wait_for(lambda: "PAPER" in panel.banner.value and "STOPPED" in panel.status.value)
        assert panel.auto.value is False

        panel.auto.value = True  # paper: no confirmation
        panel.start_button.click()
        assert panel.runner.wait(20)
        assert engine.running and engine.snapshot().auto_trading
        wait_for(lambda: "RUNNING" in panel.status.value and "monitor" in panel.threads.value)
        assert "start engine: done" in panel.message.value

        wait_for(lambda: "mq-positions-table" in panel.positions.html.value)
        assert engine.wait_idle(30)
        panel.watch.refresh()
        code = engine.positions()["stock_code"].iloc[0]
        assert code in panel.positions.html.value
        assert "entry" in panel.trades.html.value and "executed" in panel.signals.html.value

        form = panel.order_form
        form.code.value = "12345"
        form.volume.value = 100
        form.submit.click()
        assert panel.runner.wait(10)
        assert "InvalidStockCode" in form.message.value

        form.code.value = code
        form.volume.value = 150  # not a whole lot
        form.submit.click()
        assert panel.runner.wait(10)
        assert "InvalidVolume (invalid_volume)" in form.message.value

        trades_before = len(engine.trades())
        form.volume.value = 100
        form.submit.click()
        assert panel.runner.wait(10)
        assert "sent" in form.message.value, form.message.value
        wait_for(lambda: len(engine.trades()) == trades_before + 1)
        assert engine.trades()["rule"].iloc[-1] == "manual"
        wait_for(lambda: "manual" in panel.trades.html.value)

        panel.stop_button.click()
        assert panel.runner.wait(20)
        assert not engine.running
        wait_for(lambda: "STOPPED" in panel.status.value and "disconnected" in panel.status.value)
        assert not panel.start_button.disabled and panel.stop_button.disabled
        stopped_at = panel.watch.version

        panel.start_button.click()  # the same engine runs again, its book restored from the database
        assert panel.runner.wait(20)
        assert engine.running
        wait_for(lambda: "RUNNING" in panel.status.value and panel.watch.version > stopped_at)
        assert "start engine: done" in panel.message.value
        assert panel.start_button.disabled and not panel.stop_button.disabled
        assert panel.auto.value is True and "disconnected" not in panel.status.value
        assert code in panel.positions.html.value
        assert "manual" in panel.trades.html.value

        restored = engine.positions().set_index("stock_code").loc[code]
        assert restored["price_time"] is not None  # the last price came back with the book, not the cost
        form.price.value = float(restored["price"])
        form.submit.click()  # orders work on the restarted engine
        assert panel.runner.wait(10)
        assert "sent" in form.message.value, form.message.value
        wait_for(lambda: len(engine.trades()) == trades_before + 2)
        assert engine.trades()["rule"].iloc[-1] == "manual"

        panel.stop_button.click()
        assert panel.runner.wait(20)
        wait_for(lambda: "STOPPED" in panel.status.value)
    finally:
        panel.close()
        engine.stop()
