"""Headless round-trips of the control panel and tables against a contract-shaped engine double.

The double lets a test put the engine in any state (live mode, a dead thread, a broker outage)
and see every command the widgets send; tests/test_widgets_engine.py runs the real paper engine.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import pandas as pd
import pytest

from miniqmt_lab.errors import InsufficientCash, InvalidStockCode
from miniqmt_lab.market import SHANGHAI
from miniqmt_lab.schema import TRADE_COLUMNS, BrokerStatus, EngineSnapshot, ThreadHealth
from miniqmt_lab.widgets import EngineControlPanel, OrderForm
from miniqmt_lab.widgets._binding import Guard
from miniqmt_lab.widgets._poll import EngineWatch

pytestmark = pytest.mark.timeout(60)


def heartbeat(*hms: int) -> float:
    """Epoch seconds of a heartbeat at that Shanghai time of 2024-01-02, as the engine reports it."""
    return dt.datetime(2024, 1, 2, *hms, tzinfo=SHANGHAI).timestamp()


POSITION = {
    "stock_code": "600000.SH", "stock_name": "浦发银行", "volume": 1000, "available": 1000, "cost": 10.0,
    "base_cost": 10.0, "price": 10.8, "market_value": 10800.0, "profit_ratio": 0.08, "open_date": "2024-01-02",
    "tp_done": True, "high": 11.0, "stop_loss_price": 9.25, "dynamic_exit_level": 10.56,
    "next_grid_price": 9.3, "grid_k": 0,
}


class FakeEngine:
    """Contract-shaped engine: records commands, bumps ``version`` on every change."""

    def __init__(self, mode: str = "paper") -> None:
        self.mode = mode
        self.version = 1
        self.running = False
        self.auto_trading = False
        self.calls: list[tuple[object, ...]] = []
        self.snapshot_calls = 0
        self.fail_buy: Exception | None = None
        self.threads = (ThreadHealth("strategy", "RUNNING", True, heartbeat(10, 0, 5), 0),)
        self.broker = BrokerStatus(connected=True, name="SimBroker", account="12****78")
        self._positions = pd.DataFrame(columns=list(POSITION))
        self._trades = pd.DataFrame(columns=list(TRADE_COLUMNS))
        self._signals = pd.DataFrame(
            columns=["id", "time", "stock_code", "rule", "side", "price", "volume", "outcome", "message"]
        )

    def _changed(self) -> None:
        self.version += 1

    def start(self) -> None:
        self.calls.append(("start",))
        self.running = True
        self._changed()

    def stop(self, timeout: float = 10.0) -> None:
        self.calls.append(("stop",))
        self.running = False
        self._changed()

    def set_auto_trading(self, on: bool) -> None:
        self.calls.append(("auto", on))
        self.auto_trading = on
        self._changed()

    def buy(self, code: str, volume: int | None = None, *, amount: float | None = None,
            price: float | None = None) -> str:
        self.calls.append(("buy", code, volume, amount, price))
        if self.fail_buy is not None:
            raise self.fail_buy
        return "order-1"

    def sell(self, code: str, volume: int, *, price: float | None = None) -> str:
        self.calls.append(("sell", code, volume, price))
        return "order-2"

    def open_position(self) -> None:
        self._positions = pd.DataFrame([POSITION])
        self._trades = pd.DataFrame(
            [[pd.Timestamp("2024-01-02 15:00"), "600000.SH", "BUY", 10.0, 1000, 10000.0, 5.1, "entry"]],
            columns=list(TRADE_COLUMNS),
        )
        self._signals = pd.DataFrame(
            [
                [1, pd.Timestamp("2024-01-02 14:57"), "600000.SH", "entry", "BUY", 10.0, 1000, "executed", ""],
                [2, pd.Timestamp("2024-01-03 10:30"), "600000.SH", "stop_loss", "SELL", 9.2, 1000, "not_executed",
                 "auto trading is off"],
            ],
            columns=list(self._signals.columns),
        )
        self._changed()

    def snapshot(self) -> EngineSnapshot:
        self.snapshot_calls += 1
        return EngineSnapshot(self.version, dt.datetime(2024, 1, 2, 10, 0, 7, tzinfo=SHANGHAI), self.mode,
                              self.auto_trading, self.running, 990_000.0, 1_000_800.0, (), self.threads, self.broker,
                              "")

    def positions(self) -> pd.DataFrame:
        return self._positions

    def trades(self) -> pd.DataFrame:
        return self._trades

    def signals(self) -> pd.DataFrame:
        return self._signals


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def paper() -> FakeEngine:
    return FakeEngine("paper")


def shown(panel: EngineControlPanel) -> bool:
    """The first snapshot has reached the widgets (the thread table is drawn last)."""
    return "strategy" in panel.threads.value


@pytest.fixture
def panel(paper: FakeEngine):
    p = EngineControlPanel(paper, poll_interval=0.05)
    wait_for(lambda: shown(p))
    yield p
    p.close()


def test_panel_shows_paper_state_and_start_stop_reach_engine(panel: EngineControlPanel, paper: FakeEngine) -> None:
    assert "PAPER" in panel.banner.value and "LIVE" not in panel.banner.value
    assert "STOPPED" in panel.status.value and "SimBroker" in panel.status.value
    assert "strategy" in panel.threads.value and "10:00:05" in panel.threads.value
    assert not panel.start_button.disabled and panel.stop_button.disabled

    panel.start_button.click()
    assert panel.runner.wait(5)
    assert paper.calls == [("start",)]
    wait_for(lambda: "RUNNING" in panel.status.value)
    assert panel.start_button.disabled and not panel.stop_button.disabled

    panel.stop_button.click()
    assert panel.runner.wait(5)
    assert paper.calls[-1] == ("stop",)
    wait_for(lambda: "STOPPED" in panel.status.value)
    assert not panel.start_button.disabled and panel.stop_button.disabled

    panel.start_button.click()  # Stop then Start runs the same engine again
    assert panel.runner.wait(5)
    assert paper.calls == [("start",), ("stop",), ("start",)]
    wait_for(lambda: "RUNNING" in panel.status.value)
    assert panel.start_button.disabled and not panel.stop_button.disabled


def test_paper_auto_trading_toggle_needs_no_confirmation(panel: EngineControlPanel, paper: FakeEngine) -> None:
    panel.auto.value = True
    assert panel.runner.wait(5)
    assert paper.calls == [("auto", True)]
    assert panel.confirm_box.layout.display == "none"
    assert panel.auto.description == "Auto trading ON" and panel.auto.button_style == "success"
    wait_for(lambda: "auto trading: <b>on</b>" in panel.status.value)


def test_live_mode_banner_and_auto_trading_confirmation() -> None:
    live = FakeEngine("live")
    panel = EngineControlPanel(live, poll_interval=0.05)
    try:
        wait_for(lambda: shown(panel))
        assert "LIVE" in panel.banner.value and "mq-live" in panel.banner.value and "12****78" in panel.banner.value

        panel.auto.value = True  # the first click only asks
        assert panel.runner.wait(5)
        assert live.calls == []
        assert panel.auto.value is False
        assert panel.confirm_box.layout.display == "flex"

        panel.confirm_no.click()
        assert panel.confirm_box.layout.display == "none"
        assert live.calls == []

        panel.auto.value = True
        panel.confirm_yes.click()
        assert panel.runner.wait(5)
        assert live.calls == [("auto", True)]
        wait_for(lambda: panel.auto.value is True and "auto trading: <b>on</b>" in panel.status.value)
        assert panel.auto.button_style == "danger"

        panel.auto.value = False  # switching off never asks
        assert panel.runner.wait(5)
        assert live.calls[-1] == ("auto", False)
    finally:
        panel.close()


def test_engine_state_changes_reach_toggle_without_echo(panel: EngineControlPanel, paper: FakeEngine) -> None:
    paper.set_auto_trading(True)  # changed by someone else (another notebook, the config)
    wait_for(lambda: panel.auto.value is True)
    assert panel.runner.wait(5)
    assert paper.calls == [("auto", True)]  # the widget did not send it back


def test_tables_follow_engine_and_colour_profit(panel: EngineControlPanel, paper: FakeEngine) -> None:
    assert "no positions" in panel.positions.html.value
    paper.open_position()
    wait_for(lambda: "600000.SH" in panel.positions.html.value)
    html = panel.positions.html.value
    for text in ("浦发银行", "+8.00%", "#d62728", "✓", "10.56", "9.30", "9.25", "10,800.00"):
        assert text in html
    assert "entry" in panel.trades.html.value and "5.10" in panel.trades.html.value
    signals = panel.signals.html.value
    assert "not_executed" in signals and "auto trading is off" in signals
    assert signals.index("stop_loss") < signals.index("entry")  # latest first


def test_thread_health_and_broker_outage_are_shown(panel: EngineControlPanel, paper: FakeEngine) -> None:
    paper.threads = (ThreadHealth("quote", "FAULTED", False, heartbeat(9, 59, 0), 3),)
    paper.broker = BrokerStatus(connected=False, name="QmtBroker", message="client closed", outages=2)
    paper._changed()
    wait_for(lambda: "FAULTED" in panel.threads.value)
    assert "✖" in panel.threads.value and ">3<" in panel.threads.value
    assert "disconnected" in panel.status.value and "client closed" in panel.status.value
    assert "2 outage(s)" in panel.status.value


def test_manual_orders_reach_engine_and_errors_show_in_panel(panel: EngineControlPanel, paper: FakeEngine) -> None:
    form = panel.order_form
    form.code.value = "600000.SH"
    form.volume.value = 200
    form.submit.click()  # paper: sent at once, no question asked
    assert not form.confirm.asking
    assert panel.runner.wait(5)
    assert paper.calls[-1] == ("buy", "600000.SH", 200, None, None)
    assert "order-1" in form.message.value

    form.volume.value = 0
    form.amount.value = 20000
    form.price.value = 10.5
    form.submit.click()
    assert panel.runner.wait(5)
    assert paper.calls[-1] == ("buy", "600000.SH", None, 20000.0, 10.5)

    form.side.value = "SELL"
    assert form.amount.disabled
    form.volume.value = 100
    form.price.value = 0
    form.submit.click()
    assert panel.runner.wait(5)
    assert paper.calls[-1] == ("sell", "600000.SH", 100, None)
    assert "order-2" in form.message.value

    paper.fail_buy = InsufficientCash("cash 1,000.00 < 20,010.00 needed")
    form.side.value = "BUY"
    form.submit.click()
    assert panel.runner.wait(5)
    assert "InsufficientCash (insufficient_cash)" in form.message.value
    assert "Traceback" not in form.message.value

    paper.fail_buy = InvalidStockCode("'12345' is not an A-share code")
    form.submit.click()
    assert panel.runner.wait(5)
    assert "InvalidStockCode" in form.message.value

    n = len(paper.calls)
    form.code.value = " "
    form.submit.click()
    assert len(paper.calls) == n and "enter a stock code" in form.message.value


@pytest.fixture
def live_panel():
    live = FakeEngine("live")
    live.broker = BrokerStatus(connected=True, name="QmtBroker", account="8800012345")  # unmasked: masked on show
    p = EngineControlPanel(live, poll_interval=0.05)
    wait_for(lambda: shown(p))
    yield p, live
    p.close()


def test_live_manual_order_is_sent_only_after_yes(live_panel: tuple[EngineControlPanel, FakeEngine]) -> None:
    panel, live = live_panel
    form = panel.order_form
    assert "mq-order-confirm-box" in form.confirm._dom_classes
    assert "mq-order-confirm" in form.confirm.yes._dom_classes and "mq-order-cancel" in form.confirm.no._dom_classes
    assert form.confirm.yes.description == "Yes, send to the LIVE account"
    assert form.confirm.no.description == "Cancel"
    assert not form.confirm.asking

    form.code.value = "600000.SH"
    form.volume.value = 200
    form.price.value = 10.5
    assert form.place() is None
    assert panel.runner.wait(5)
    assert live.calls == []
    assert form.confirm.asking and form.confirm.layout.display == "flex"
    question = form.confirm.question.value
    for text in ("BUY", "600000.SH", "200 shares", "¥10.50", "LIVE", "88******45"):
        assert text in question, text
    assert "8800012345" not in question
    assert "confirm the LIVE order" in form.message.value

    form.confirm.yes.click()
    assert panel.runner.wait(5)
    assert live.calls == [("buy", "600000.SH", 200, None, 10.5)]
    assert not form.confirm.asking
    assert "order-1" in form.message.value
    form.confirm.yes.click()  # a second click on the hidden button sends nothing more
    assert panel.runner.wait(5)
    assert live.calls == [("buy", "600000.SH", 200, None, 10.5)]

    form.volume.value = 0  # a buy by amount at the latest price
    form.amount.value = 20000
    form.price.value = 0
    form.submit.click()
    assert "for ¥20,000.00" in form.confirm.question.value
    assert "latest price" in form.confirm.question.value
    form.confirm.yes.click()
    assert panel.runner.wait(5)
    assert live.calls[-1] == ("buy", "600000.SH", None, 20000.0, None)
    assert len(live.calls) == 2


def test_live_manual_order_cancel_or_edit_sends_nothing(live_panel: tuple[EngineControlPanel, FakeEngine]) -> None:
    panel, live = live_panel
    form = panel.order_form
    form.code.value = "600000.SH"
    form.side.value = "SELL"
    form.volume.value = 300
    form.submit.click()
    question = form.confirm.question.value
    for text in ("SELL", "600000.SH", "300 shares", "at the latest price", "88******45"):
        assert text in question, text

    form.confirm.no.click()
    assert panel.runner.wait(5)
    assert live.calls == []
    assert not form.confirm.asking and form.confirm.layout.display == "none"
    assert "nothing sent" in form.message.value

    form.submit.click()  # asked again, then the form is edited: Yes must not send either order
    assert form.confirm.asking
    form.volume.value = 3000
    assert not form.confirm.asking
    assert "nothing sent" in form.message.value
    form.confirm.yes.click()
    assert panel.runner.wait(5)
    assert live.calls == []

    form.submit.click()  # the edited order, confirmed, is the one sent
    assert "3,000 shares" in form.confirm.question.value
    form.confirm.yes.click()
    assert panel.runner.wait(5)
    assert live.calls == [("sell", "600000.SH", 3000, None)]


def test_order_form_without_a_known_mode_asks_first(paper: FakeEngine) -> None:
    """A form with no watch (mode unknown) treats the engine as live."""
    from miniqmt_lab.widgets._runner import CommandRunner

    runner = CommandRunner()
    form = OrderForm(paper, runner)
    try:
        form.code.value = "<b>600000.SH"
        form.volume.value = 100
        form.submit.click()
        assert runner.wait(5)
        assert paper.calls == [] and form.confirm.asking
        assert "not known" in form.confirm.question.value
        assert "&lt;b&gt;600000.SH" in form.confirm.question.value  # user input is escaped
        form.confirm.yes.click()
        assert runner.wait(5)
        assert paper.calls == [("buy", "<b>600000.SH", 100, None, None)]
    finally:
        runner.shutdown()
        form.close()


def test_live_start_with_auto_trading_on_asks_first() -> None:
    live = FakeEngine("live")
    live.auto_trading = True
    panel = EngineControlPanel(live, poll_interval=0.05)
    try:
        wait_for(lambda: shown(panel) and panel.auto.value is True)
        box = panel.start_confirm
        assert "mq-start-confirm-box" in box._dom_classes
        assert "mq-start-confirm" in box.yes._dom_classes and "mq-start-cancel" in box.no._dom_classes

        panel.start_button.click()
        assert panel.runner.wait(5)
        assert live.calls == []
        assert box.asking
        assert "Auto trading is ON" in box.question.value and "12****78" in box.question.value

        box.no.click()
        assert panel.runner.wait(5)
        assert live.calls == [] and not box.asking

        panel.start_button.click()
        box.yes.click()
        assert panel.runner.wait(5)
        assert live.calls == [("start",)]
        wait_for(lambda: "RUNNING" in panel.status.value)
        assert not box.asking and panel.start_button.disabled

        panel.stop_button.click()  # with auto trading off, a live start needs no question
        panel.auto.value = False
        assert panel.runner.wait(5)
        wait_for(lambda: "STOPPED" in panel.status.value and "auto trading: <b>off</b>" in panel.status.value)
        panel.start_button.click()
        assert not box.asking
        assert panel.runner.wait(5)
        assert live.calls == [("start",), ("stop",), ("auto", False), ("start",)]
    finally:
        panel.close()


def test_paper_start_with_auto_trading_on_needs_no_confirmation(paper: FakeEngine) -> None:
    paper.auto_trading = True
    panel = EngineControlPanel(paper, poll_interval=0.05)
    try:
        wait_for(lambda: shown(panel) and panel.auto.value is True)
        panel.start_button.click()
        assert not panel.start_confirm.asking
        assert panel.runner.wait(5)
        assert paper.calls == [("start",)]
    finally:
        panel.close()


def test_watch_reads_only_version_until_it_moves(paper: FakeEngine) -> None:
    watch = EngineWatch(paper, interval=0.01, start=False)
    assert watch.refresh() is True
    calls = paper.snapshot_calls
    assert watch.refresh() is False and paper.snapshot_calls == calls
    paper.start()
    assert watch.refresh() is True and paper.snapshot_calls == calls + 1
    assert watch.snapshot.running is True


def test_slow_widget_does_not_slow_the_engine(paper: FakeEngine) -> None:
    """A view taking 0.3 s per render delays only the poll thread: the engine's changes never wait for it."""
    watch = EngineWatch(paper, interval=0.01)
    rendered: list[int] = []

    def slow_view(change: dict[str, object]) -> None:
        time.sleep(0.3)
        rendered.append(watch.version)

    watch.observe(slow_view, names="snapshot")
    try:
        t0 = time.perf_counter()
        for _ in range(20):  # 20 changes, 20 ms apart: coupled to the view they would take 6 s
            paper._changed()
            time.sleep(0.02)
        assert time.perf_counter() - t0 < 2.0
        wait_for(lambda: bool(rendered) and rendered[-1] == paper.version)
        assert len(rendered) < 10  # bursts coalesce into a few refreshes of the latest state
    finally:
        watch.stop()


def test_failing_engine_read_is_reported_and_polling_continues(paper: FakeEngine) -> None:
    panel = EngineControlPanel(paper, poll_interval=0.02)
    broken = threading.Event()
    real_snapshot = paper.snapshot

    def snapshot() -> EngineSnapshot:
        if broken.is_set():
            raise RuntimeError("database locked")
        return real_snapshot()

    paper.snapshot = snapshot  # type: ignore[method-assign]
    try:
        wait_for(lambda: shown(panel))
        broken.set()
        paper.start()
        wait_for(lambda: "database locked" in panel.message.value)
        broken.clear()
        wait_for(lambda: "RUNNING" in panel.status.value)
    finally:
        panel.close()


def test_guard_is_per_thread() -> None:
    guard = Guard()
    seen: list[bool] = []
    with guard:
        assert guard
        t = threading.Thread(target=lambda: seen.append(bool(guard)))
        t.start()
        t.join()
    assert seen == [False] and not guard
