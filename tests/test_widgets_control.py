"""Headless round-trips of the control panel against an engine-faced double: change the engine, see the
widgets; change a widget, see the command the engine gets. tests/test_widgets_engine.py runs real engines."""

from __future__ import annotations

import threading

import pytest
from widgets_support import FaceOnly, FakeEngine, heartbeat, open_panel, wait_until

from miniqmt_lab.protocols import EngineFace
from miniqmt_lab.schema import BrokerStatus, EngineSnapshot, ThreadHealth
from miniqmt_lab.widgets import EngineControlPanel
from miniqmt_lab.widgets._binding import Guard
from miniqmt_lab.widgets._poll import EngineWatch

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def paper() -> FakeEngine:
    return FakeEngine("paper")


@pytest.fixture
def panel(paper: FakeEngine):
    p = open_panel(paper)
    yield p
    p.close()


@pytest.fixture
def live():
    engine = FakeEngine("live")
    engine.database = "/srv/miniqmt/data/live.sqlite"
    p = open_panel(engine)
    yield p, engine
    p.close()


def test_the_double_has_the_engine_face() -> None:
    assert isinstance(FakeEngine(), EngineFace) and isinstance(FaceOnly(FakeEngine()), EngineFace)
    with pytest.raises(AttributeError, match="not part of EngineFace"):
        FaceOnly(FakeEngine()).calls  # noqa: B018


def test_panel_shows_paper_state_and_start_stop_reach_engine(panel: EngineControlPanel, paper: FakeEngine) -> None:
    assert "PAPER" in panel.banner.value and "LIVE" not in panel.banner.value
    assert "STOPPED" in panel.status.value and "SimBroker" in panel.status.value
    assert "strategy" in panel.threads.value and "10:00:05" in panel.threads.value
    assert "/srv/miniqmt/data/paper.sqlite" in panel.database.value
    assert not panel.start_button.disabled and panel.stop_button.disabled

    panel.start_button.click()
    assert panel.runner.wait(5)
    assert paper.calls == [("start",)]
    wait_until(lambda: "RUNNING" in panel.status.value, panel.status)
    assert panel.start_button.disabled and not panel.stop_button.disabled

    panel.stop_button.click()
    assert panel.runner.wait(5)
    assert paper.calls[-1] == ("stop",)
    wait_until(lambda: "STOPPED" in panel.status.value, panel.status)
    assert not panel.start_button.disabled and panel.stop_button.disabled

    panel.start_button.click()  # Stop then Start runs the same engine again
    assert panel.runner.wait(5)
    assert paper.calls == [("start",), ("stop",), ("start",)]
    wait_until(lambda: "RUNNING" in panel.status.value, panel.status)


def test_paper_auto_trading_toggle_needs_no_confirmation(panel: EngineControlPanel, paper: FakeEngine) -> None:
    assert panel.auto.description == "Auto trading OFF"
    assert panel.auto.layout.width == "auto"  # the label is never cut to "Auto trading ..."
    panel.auto.value = True
    assert panel.runner.wait(5)
    assert paper.calls == [("auto", True)]
    assert not panel.confirm_box.asking
    assert panel.auto.description == "Auto trading ON" and panel.auto.button_style == "success"
    wait_until(lambda: "auto trading: <b>on</b>" in panel.status.value, panel.status)


def test_live_auto_trading_reads_off_until_confirmed(live: tuple[EngineControlPanel, FakeEngine]) -> None:
    panel, engine = live
    assert "LIVE" in panel.banner.value and "mq-live" in panel.banner.value and "12****78" in panel.banner.value

    panel.auto.value = True  # the first click only asks
    assert panel.runner.wait(5)
    assert engine.calls == []
    assert panel.confirm_box.asking
    # while the question is open nothing is on, and the button says so
    assert panel.auto.value is False
    assert panel.auto.description == "Auto trading OFF" and panel.auto.button_style == ""

    panel.confirm_no.click()
    assert not panel.confirm_box.asking and engine.calls == []
    assert panel.auto.description == "Auto trading OFF"

    panel.auto.value = True
    panel.confirm_yes.click()
    assert panel.runner.wait(5)
    assert engine.calls == [("auto", True)]
    wait_until(lambda: "auto trading: <b>on</b>" in panel.status.value, panel.status)
    assert panel.auto.value is True
    assert panel.auto.description == "Auto trading ON" and panel.auto.button_style == "danger"

    panel.auto.value = False  # switching off never asks
    assert panel.runner.wait(5)
    assert engine.calls[-1] == ("auto", False)
    assert panel.auto.description == "Auto trading OFF"


def test_engine_state_changes_reach_toggle_without_echo(panel: EngineControlPanel, paper: FakeEngine) -> None:
    paper.set_auto_trading(True)  # changed by someone else (another notebook, the web page)
    wait_until(lambda: panel.auto.value is True and panel.auto.description == "Auto trading ON", panel.auto)
    assert panel.runner.wait(5)
    assert paper.calls == [("auto", True)]  # the widget did not send it back


def test_failed_auto_trading_command_puts_the_toggle_back(panel: EngineControlPanel, paper: FakeEngine) -> None:
    def refuse(on: bool) -> None:
        raise ConnectionError("served engine unreachable")

    paper.set_auto_trading = refuse  # type: ignore[method-assign]
    panel.auto.value = True
    assert panel.runner.wait(5)
    wait_until(lambda: panel.auto.value is False and panel.auto.description == "Auto trading OFF", panel.auto)
    assert "served engine unreachable" in panel.message.value


# -- the kill switch ----------------------------------------------------------------------------------


def test_trading_state_and_its_reason_are_shown(panel: EngineControlPanel, paper: FakeEngine) -> None:
    assert panel.trading_state.value == "active" and "ACTIVE" in panel.state_line.value
    paper.halt_itself("a fill could not be stored: database is locked")  # the engine halts itself
    wait_until(lambda: panel.trading_state.value == "halted" and "HALTED" in panel.state_line.value, panel.watch)
    line = panel.state_line.value
    assert "HALTED" in line and "no order goes out" in line and "database is locked" in line
    assert panel.runner.wait(5)
    assert paper.calls == []  # shown, not sent back


def test_paper_trading_state_switches_at_once(panel: EngineControlPanel, paper: FakeEngine) -> None:
    panel.state_reason.value = "lunch"
    panel.trading_state.value = "halted"
    assert panel.runner.wait(5)
    assert paper.calls == [("state", "halted", "lunch")]
    wait_until(lambda: "HALTED" in panel.state_line.value, panel.state_line)
    assert "lunch" in panel.state_line.value and panel.state_reason.value == ""
    assert "trading state: halted (lunch)" in panel.message.value

    panel.trading_state.value = "active"  # paper: loosening needs no question either
    assert panel.runner.wait(5)
    assert not panel.state_confirm.asking
    assert paper.calls[-1] == ("state", "active", "")
    wait_until(lambda: "ACTIVE" in panel.state_line.value, panel.state_line)


def test_live_halting_acts_at_once_and_loosening_asks(live: tuple[EngineControlPanel, FakeEngine]) -> None:
    panel, engine = live
    box = panel.state_confirm
    assert "mq-state-confirm-box" in box._dom_classes and "mq-state-confirm" in box.yes._dom_classes
    assert "/srv/miniqmt/data/live.sqlite" in panel.database.value

    panel.trading_state.value = "halted"  # a kill switch must not wait for a second click
    assert panel.runner.wait(5)
    assert engine.calls == [("state", "halted", "")] and not box.asking
    wait_until(lambda: "HALTED" in panel.state_line.value, panel.state_line)

    panel.trading_state.value = "active"  # loosening on LIVE: asked first, the switch stays put
    assert panel.runner.wait(5)
    assert engine.calls == [("state", "halted", "")]
    assert box.asking and panel.trading_state.value == "halted"
    for text in ("HALTED", "ACTIVE", "LIVE", "12****78", "real buy and sell orders"):
        assert text in box.question.value, text

    box.no.click()
    assert panel.runner.wait(5)
    assert engine.calls == [("state", "halted", "")] and not box.asking
    assert panel.trading_state.value == "halted" and "unchanged" in panel.message.value

    panel.state_reason.value = "checked the broker"
    panel.trading_state.value = "reducing"
    assert "sell orders" in box.question.value and "buys stay refused" in box.question.value
    box.yes.click()
    assert panel.runner.wait(5)
    assert engine.calls[-1] == ("state", "reducing", "checked the broker")
    wait_until(lambda: "REDUCING" in panel.state_line.value, panel.state_line)
    assert panel.trading_state.value == "reducing" and not box.asking
    box.yes.click()  # a second click on the hidden button sends nothing more
    assert panel.runner.wait(5)
    assert len(engine.calls) == 2


def test_live_question_is_withdrawn_when_the_engine_state_moves(live: tuple[EngineControlPanel, FakeEngine]) -> None:
    panel, engine = live
    engine.halt_itself("QMT client away for 120 s")
    wait_until(lambda: panel.trading_state.value == "halted", panel.trading_state)
    panel.trading_state.value = "active"
    assert panel.state_confirm.asking
    engine.set_trading_state("reducing", "from the web page")  # someone else switched meanwhile
    wait_until(lambda: not panel.state_confirm.asking, panel.state_confirm.layout)
    assert panel.trading_state.value == "reducing"
    panel.state_confirm.yes.click()  # the withdrawn question sends nothing
    assert panel.runner.wait(5)
    assert engine.calls == [("state", "reducing", "from the web page")]


def test_unknown_mode_asks_before_any_loosening(paper: FakeEngine) -> None:
    """Before the first snapshot the mode and state are unknown: treated as LIVE and halted."""
    panel = EngineControlPanel(paper, poll_interval=0.02)
    panel.watch.stop()
    try:
        panel.watch.snapshot = None
        panel.trading_state.value = "reducing"
        assert panel.state_confirm.asking and "not known yet" in panel.state_confirm.question.value
        assert panel.runner.wait(5)
        assert paper.calls == []
        panel.trading_state.value = "halted"  # halting is never held back
        assert not panel.state_confirm.asking
        assert panel.runner.wait(5)
        assert paper.calls == [("state", "halted", "")]
    finally:
        panel.close()


def test_failed_state_switch_puts_the_switch_back(panel: EngineControlPanel, paper: FakeEngine) -> None:
    paper.fail_state = ConnectionError("served engine unreachable")
    panel.trading_state.value = "reducing"
    assert panel.runner.wait(5)
    wait_until(lambda: panel.trading_state.value == "active", panel.trading_state)
    assert "switch trading to reducing failed" in panel.message.value


# -- status texts ---------------------------------------------------------------------------------------


def test_broker_message_says_connected_once_and_counts_outages(panel: EngineControlPanel, paper: FakeEngine) -> None:
    paper.broker = BrokerStatus(connected=True, name="QmtBroker", message="connected (session 7)", outages=1)
    paper._changed()
    wait_until(lambda: "QmtBroker" in panel.status.value, panel.status)
    status = panel.status.value
    assert status.count("connected") == 1 and "(session 7)" in status
    assert "1 outage" in status and "outages" not in status and "(s)" not in status

    paper.broker = BrokerStatus(connected=False, name="QmtBroker", message="client closed", outages=2)
    paper._changed()
    wait_until(lambda: "disconnected" in panel.status.value, panel.status)
    assert "client closed" in panel.status.value and "2 outages" in panel.status.value


def test_thread_health_is_shown(panel: EngineControlPanel, paper: FakeEngine) -> None:
    paper.threads = (ThreadHealth("quote", "FAULTED", False, heartbeat(9, 59, 0), 3),)
    paper._changed()
    wait_until(lambda: "FAULTED" in panel.threads.value, panel.threads)
    assert "✖" in panel.threads.value and ">3<" in panel.threads.value


def test_live_start_with_auto_trading_on_asks_first() -> None:
    engine = FakeEngine("live")
    engine.auto_trading = True
    panel = open_panel(engine)
    try:
        wait_until(lambda: panel.auto.value is True, panel.auto)
        box = panel.start_confirm
        assert "mq-start-confirm-box" in box._dom_classes
        assert "mq-start-confirm" in box.yes._dom_classes and "mq-start-cancel" in box.no._dom_classes

        panel.start_button.click()
        assert panel.runner.wait(5)
        assert engine.calls == [] and box.asking
        assert "Auto trading is ON" in box.question.value and "12****78" in box.question.value

        box.no.click()
        assert panel.runner.wait(5)
        assert engine.calls == [] and not box.asking

        panel.start_button.click()
        box.yes.click()
        assert panel.runner.wait(5)
        assert engine.calls == [("start",)]
        wait_until(lambda: "RUNNING" in panel.status.value, panel.status)
        assert not box.asking and panel.start_button.disabled

        panel.stop_button.click()  # with auto trading off, a live start needs no question
        panel.auto.value = False
        assert panel.runner.wait(5)
        wait_until(lambda: "STOPPED" in panel.status.value and "auto trading: <b>off</b>" in panel.status.value,
                   panel.status)
        panel.start_button.click()
        assert not box.asking
        assert panel.runner.wait(5)
        assert engine.calls == [("start",), ("stop",), ("auto", False), ("start",)]
    finally:
        panel.close()


def test_paper_start_with_auto_trading_on_needs_no_confirmation(paper: FakeEngine) -> None:
    paper.auto_trading = True
    panel = open_panel(paper)
    try:
        wait_until(lambda: panel.auto.value is True, panel.auto)
        panel.start_button.click()
        assert not panel.start_confirm.asking
        assert panel.runner.wait(5)
        assert paper.calls == [("start",)]
    finally:
        panel.close()


# -- the watch --------------------------------------------------------------------------------------------


def test_watch_reads_only_version_until_it_moves(paper: FakeEngine) -> None:
    watch = EngineWatch(paper, interval=0.01, start=False)
    assert watch.refresh() is True
    calls = paper.snapshot_calls
    assert watch.refresh() is False and paper.snapshot_calls == calls
    paper.start()
    assert watch.refresh() is True and paper.snapshot_calls == calls + 1
    assert watch.snapshot.running is True


def test_a_blocked_view_never_holds_the_engine_back(paper: FakeEngine) -> None:
    """A view stuck in its redraw delays only the poll thread: the engine's changes never wait for it, and
    the changes made meanwhile arrive as one refresh of the latest state."""
    watch = EngineWatch(paper, interval=0.01, start=False)
    drawing, release = threading.Event(), threading.Event()
    rendered: list[int] = []

    def stuck_view(change: dict[str, object]) -> None:
        drawing.set()
        release.wait(30)
        rendered.append(watch.version)

    watch.observe(stuck_view, names="snapshot")
    watch.start()
    try:
        assert drawing.wait(10)  # the first redraw is in progress and will not end until released
        first = paper.version
        for _ in range(20):
            paper._changed()  # returns at once: the engine never calls a widget
        assert paper.version == first + 20 and rendered == []
        release.set()
        wait_until(lambda: bool(rendered) and rendered[-1] == paper.version, watch)
        assert rendered == [first, paper.version]  # 20 changes, one catch-up refresh
    finally:
        release.set()
        watch.stop()


def test_failing_engine_read_is_reported_and_polling_continues(paper: FakeEngine) -> None:
    broken = threading.Event()
    real_snapshot = paper.snapshot

    def snapshot() -> EngineSnapshot:
        if broken.is_set():
            raise RuntimeError("database locked")
        return real_snapshot()

    paper.snapshot = snapshot  # type: ignore[method-assign]
    panel = open_panel(paper)
    try:
        broken.set()
        paper.start()
        wait_until(lambda: "database locked" in panel.message.value, panel.message)
        broken.clear()
        wait_until(lambda: "RUNNING" in panel.status.value, panel.status)
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
