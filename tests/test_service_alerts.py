"""Alerts for unattended running: fills, rejections, halts, thread restarts, broker disconnects and
reconnects and a daily summary, through apprise to a local receiver; a slow notifier delays nothing."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from engine_support import FlakyFeed, fast_settings, wait_for
from service_support import CODE, NAMES, Receiver, live_engine, paper_engine

from miniqmt_lab.bars import sample_bars
from miniqmt_lab.config import AlertSettings, ConfigError
from miniqmt_lab.engine import Engine, ReplayFeed
from miniqmt_lab.engine.risk import TradingHalted
from miniqmt_lab.market import SHANGHAI
from miniqmt_lab.service.alerts import Alert, Alerts, AlertSender, AlertWatcher, AppriseNotifier

pytestmark = pytest.mark.timeout(120)


class Recorder:
    """A notifier keeping what it was asked to send; ``gate`` holds every send until set."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def send(self, title: str, body: str) -> bool:
        self.gate.wait()
        self.sent.append((title, body))
        return True

    def titles(self) -> list[str]:
        return [title for title, _ in self.sent]


def test_alerts_reach_a_local_receiver_through_apprise(tmp_path):
    engine, feed = paper_engine(tmp_path)
    engine.start()
    feed.step(engine, 2)
    with Receiver() as receiver:
        alerts = Alerts.for_engine(engine, AlertSettings(alert_urls=(receiver.url,)), interval=0.05)
        assert alerts is not None
        alerts.start()
        try:
            engine.buy(CODE, 1000)
            wait_for(lambda: any("fill" in t for t in receiver.titles()), what="the fill alert")
            engine.set_trading_state("halted", "too many losses")
            with pytest.raises(TradingHalted):
                engine.buy(CODE, 100)
            wait_for(lambda: len(receiver.titles()) >= 3, what="halt and rejection alerts")
        finally:
            alerts.stop()
            engine.stop()
        titles = receiver.titles()
        assert titles[0] == f"[PAPER] fill: BUY 1000 {CODE} {NAMES[CODE]} @ 10.00 (manual)"
        assert "[PAPER] trading HALTED" in titles and f"[PAPER] rejected: BUY 100 {CODE} (manual)" in titles
        bodies = {p["title"]: p["message"] for p in receiver.posts}
        assert "too many losses" in bodies["[PAPER] trading HALTED"]
        assert "trading_halted" in bodies[f"[PAPER] rejected: BUY 100 {CODE} (manual)"]
        assert len(titles) == 3  # nothing told twice, nothing from before the alerts started


def test_alert_events_choose_what_is_told(tmp_path):
    engine, feed = paper_engine(tmp_path)
    engine.start()
    feed.step(engine, 2)
    recorder = Recorder()
    watcher = AlertWatcher(engine, AlertSettings(alert_urls=("json://x",), alert_events=("halt",)),
                           lambda a: recorder.send(a.title, a.body))
    try:
        watcher.prime()
        engine.buy(CODE, 1000)
        engine.set_trading_state("reducing", "cut risk")
        assert [a.event for a in watcher.check()] == ["halt"]
        assert recorder.titles() == ["[PAPER] trading REDUCING"]
        assert watcher.check() == []
    finally:
        engine.stop()


def test_a_restarted_thread_is_told(tmp_path):
    bars = sample_bars(3, 60, seed=3)
    feed = FlakyFeed(ReplayFeed.from_bars(bars, tick_mode="close"), failing=lambda n: 20 <= n <= 22)
    engine = Engine(fast_settings(tmp_path, thread_check_interval=0.1), feed=feed)
    recorder = Recorder()
    alerts = Alerts.for_engine(engine, AlertSettings(), notifier=recorder, interval=0.05)
    assert alerts is not None
    engine.start()
    alerts.start()
    try:
        wait_for(lambda: any("restarted" in t for t in recorder.titles()), timeout=30, what="the restart alert")
    finally:
        alerts.stop()
        engine.stop()
    [(title, body)] = [s for s in recorder.sent if "restarted" in s[0]]
    assert title == "[PAPER] thread monitor restarted" and "1 restart(s)" in body


def test_broker_disconnect_and_reconnect_are_told(tmp_path, userdata):
    engine, qmt = live_engine(tmp_path, userdata)
    recorder = Recorder()
    alerts = Alerts.for_engine(engine, AlertSettings(), notifier=recorder, interval=0.05)
    assert alerts is not None
    engine.start()
    alerts.start()
    try:
        qmt.disconnect(refuse_connects=1)
        wait_for(lambda: any("DISCONNECTED" in t for t in recorder.titles()), timeout=20, what="disconnect alert")
        wait_for(lambda: any("reconnected" in t for t in recorder.titles()), timeout=30, what="reconnect alert")
    finally:
        alerts.stop()
        engine.stop()
    titles = recorder.titles()
    assert titles.index("[LIVE] broker qmt DISCONNECTED") < titles.index("[LIVE] broker qmt reconnected")
    after = titles[titles.index("[LIVE] broker qmt reconnected"):]
    assert not any("DISCONNECTED" in t for t in after)  # the engine stopping is no outage


def test_the_daily_summary_comes_once_at_the_set_time(tmp_path):
    engine, feed = paper_engine(tmp_path)
    engine.start()
    feed.step(engine, 2)  # the replay is at 2024-03-05
    clock = [dt.datetime(2024, 3, 5, 15, 8, tzinfo=SHANGHAI)]
    recorder = Recorder()
    watcher = AlertWatcher(engine, AlertSettings(alert_urls=("json://x",), daily_summary_time="15:10"),
                           lambda a: recorder.send(a.title, a.body), now=lambda: clock[0])
    try:
        watcher.prime()
        engine.buy(CODE, 1000)
        engine.buy("000001.SZ", 200)
        clock[0] = clock[0].replace(minute=9)
        assert [a.event for a in watcher.check()] == ["fill", "fill"]
        clock[0] = clock[0].replace(minute=11)
        [summary] = watcher.check()
        clock[0] = clock[0].replace(minute=40)
        assert watcher.check() == []
    finally:
        engine.stop()
    assert summary.event == "daily_summary" and summary.title == "[PAPER] daily summary 2024-03-05"
    assert "BUY: 2 fill(s), 11,000.00 yuan" in summary.body and "2 position(s)" in summary.body
    assert f"{CODE} {NAMES[CODE]} 1000" in summary.body and "signals: executed 2" in summary.body


def test_a_slow_notifier_delays_neither_the_engine_nor_the_watcher(tmp_path):
    engine, feed = paper_engine(tmp_path)
    engine.start()
    feed.step(engine, 2)
    recorder = Recorder()
    recorder.gate.clear()  # the notifier hangs
    sender = AlertSender(recorder)
    found: list[Alert] = []

    def put(alert: Alert) -> None:
        found.append(alert)
        sender.put(alert)

    watcher = AlertWatcher(engine, AlertSettings(), put, interval=0.02)
    sender.start()
    watcher.start()
    try:
        for _ in range(10):
            engine.buy(CODE, 100)  # each returns once filled: the hung notifier holds nothing up
        wait_for(lambda: told_fills(found) == 10, what="the watcher finding every fill")
        assert recorder.sent == []
        recorder.gate.set()
        wait_for(lambda: len(recorder.sent) == len(found), what="the held alerts")
    finally:
        watcher.stop()
        sender.stop()
        engine.stop()
    assert len(engine.trades()) == 10 and sender.failed == sender.dropped == 0


def told_fills(alerts: list[Alert]) -> int:
    """Fills told: one per alert, or N in an alert titled 'N fills, ...'."""
    return sum(int(a.title.split()[1]) if " fills, " in a.title else 1 for a in alerts if a.event == "fill")


def test_a_full_queue_drops_the_newest_and_counts_it():
    recorder = Recorder()
    recorder.gate.clear()
    sender = AlertSender(recorder, capacity=2)
    sender.start()
    results = [sender.put(Alert("fill", f"t{i}", "")) for i in range(5)]
    assert results.count(False) >= 2 and sender.dropped == results.count(False)
    recorder.gate.set()
    sender.stop()
    assert len(recorder.sent) == 5 - sender.dropped


def test_alerts_are_off_without_urls_and_a_bad_url_is_named(tmp_path):
    engine, _ = paper_engine(tmp_path)
    assert Alerts.for_engine(engine, AlertSettings()) is None
    with pytest.raises(ConfigError, match=r"alerts.alert_urls\[1\]: apprise cannot use this nosuch:// URL"):
        AppriseNotifier(["json://127.0.0.1:1/x", "nosuch://token@host"])
