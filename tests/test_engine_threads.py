"""Threads as state machines, the watchdog restarting dead ones, and stopping cleanly."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from engine_support import FlakyFeed, fast_settings, run_replay, wait_for

from miniqmt_lab.bars import sample_bars
from miniqmt_lab.engine import Engine, ReplayFeed
from miniqmt_lab.engine.lock import DatabaseInUse
from miniqmt_lab.engine.threads import CallRunner, ManagedThread, ThreadState, Watchdog
from miniqmt_lab.errors import BrokerTimeout

pytestmark = pytest.mark.timeout(120)


def test_thread_lifecycle_is_an_explicit_state_machine():
    turns = []
    thread = ManagedThread("t", lambda: turns.append(1) or 0.01)
    assert thread.state is ThreadState.NEW and not thread.alive
    thread.start()
    thread.start()  # idempotent
    wait_for(lambda: len(turns) > 3)
    assert thread.state is ThreadState.RUNNING and thread.alive and thread.last_heartbeat is not None
    assert thread.stop(2.0)
    assert thread.stop(2.0)  # idempotent
    assert thread.state is ThreadState.STOPPED and not thread.alive
    with pytest.raises(RuntimeError, match="create a new one"):
        thread.start()


def test_step_errors_are_survived_until_too_many_in_a_row():
    calls = []

    def step() -> float:
        calls.append(1)
        if len(calls) in (2, 4, 5, 6):
            raise ValueError(f"failure {len(calls)}")
        return 0.0

    thread = ManagedThread("flaky", step, error_delay=0.0, max_errors=3)
    thread.start()
    wait_for(lambda: thread.state is ThreadState.FAULTED)
    assert len(calls) == 6  # 2 and 4 were survived; 4, 5, 6 in a row fault it
    assert "failure 6" in thread.last_error and thread.faulted_at is not None
    wait_for(lambda: not thread.alive)


def test_an_escaping_exception_faults_the_thread_at_once():
    def step() -> float:
        raise SystemExit("injected")

    thread = ManagedThread("doomed", step)
    thread.start()
    wait_for(lambda: thread.state is ThreadState.FAULTED)
    assert "SystemExit" in thread.last_error


def test_watchdog_restart_storm_is_bounded_by_the_cooldown():
    threads: dict[str, ManagedThread] = {}

    def make() -> ManagedThread:
        t = ManagedThread("storm", lambda: 1 / 0, error_delay=0.0, max_errors=1)
        threads["storm"] = t
        t.start()
        return t

    make()
    clock = [0.0]
    dog = Watchdog(lambda: threads, lambda name: make(), cooldown=0.3, stuck_after=lambda name: 60.0,
                   now=lambda: clock[0])
    for _ in range(150):  # 1.5 s of checks every 10 ms, each seeing a dead thread
        threads["storm"].join(5.0)
        dog.check()
        clock[0] += 0.01
    # the cooldown allows one restart per 0.3 s: at 0.0, 0.3, 0.6, 0.9 and 1.2 (+ float rounding at 1.5)
    assert 5 <= dog.restarts["storm"] <= 6
    threads["storm"].stop(1.0)


def test_call_runner_turns_a_hung_call_into_broker_timeout():
    release = threading.Event()
    runner = CallRunner(timeout=0.1)
    with pytest.raises(BrokerTimeout, match=r"hung\.call did not return within 0\.1 s"):
        runner.call("hung.call", release.wait)
    assert runner.hung == 1 and not release.is_set()  # it gave up while the call still hung
    assert runner.call("quick", lambda: 42) == 42
    release.set()
    wait_for(lambda: runner.hung == 0, what="the late reply to give its slot back")
    runner.close()


def test_a_dead_monitor_is_restarted_within_one_check_and_trading_goes_on(tmp_path):
    bars = sample_bars(6, 120, seed=3)
    settings = fast_settings(tmp_path / "flaky", thread_check_interval=0.2)
    flaky = FlakyFeed(ReplayFeed.from_bars(bars, tick_mode="close"), failing=lambda n: 40 <= n <= 42)
    engine = Engine(settings, feed=flaky, entries="macd")
    engine.start()
    try:
        first = engine.thread("monitor")
        wait_for(lambda: first.state is ThreadState.FAULTED, what="the injected fault")
        wait_for(lambda: engine.thread("monitor") is not first, what="the restart")
        assert engine.wait_idle(60)
        health = {t.name: t for t in engine.snapshot().threads}
        assert health["monitor"].restarts == 1 and health["monitor"].alive
    finally:
        engine.stop()
    clean = run_replay(fast_settings(tmp_path / "clean"), ReplayFeed.from_bars(bars, tick_mode="close"), "macd")
    # the fault lost nothing: the same trades as a run without it
    assert len(clean.trades()) > 5
    pd.testing.assert_frame_equal(engine.trades(), clean.trades())


def test_a_feed_that_always_fails_gives_bounded_restarts_and_a_clean_stop(tmp_path):
    bars = sample_bars(3, 20, seed=3)
    settings = fast_settings(tmp_path, thread_check_interval=0.05, restart_cooldown=0.4)
    engine = Engine(settings, feed=FlakyFeed(ReplayFeed.from_bars(bars), failing=lambda n: True))
    started = time.monotonic()
    engine.start()

    def restarts() -> int:
        return {t.name: t.restarts for t in engine.snapshot().threads}["monitor"]

    wait_for(lambda: restarts() >= 2, what="two restarts")
    elapsed = time.monotonic() - started
    assert restarts() <= elapsed / settings.engine.restart_cooldown + 1  # never faster than the cooldown
    # the last error is the latest message: a restart's own note until the restarted monitor fails again
    wait_for(lambda: "injected feed failure" in engine.snapshot().last_error, what="the feed's failure shown")
    engine.stop()
    assert not engine.running
    assert all(not t.alive for t in engine.snapshot().threads)


def test_stop_is_idempotent_and_keeps_records_readable(tmp_path):
    engine = Engine(fast_settings(tmp_path))
    engine.start()
    engine.start()
    names = {t.name for t in engine.snapshot().threads}
    assert names == {"monitor", "strategy", "events", "data", "sync", "watchdog"}
    version = engine.version
    engine.stop()
    engine.stop()
    assert engine.version > version
    assert engine.trades().empty and engine.signals().empty
    assert engine.status()["running"] is False


def test_two_engines_never_run_on_one_database(tmp_path):
    first, second = Engine(fast_settings(tmp_path)), Engine(fast_settings(tmp_path))
    first.start()
    try:
        with pytest.raises(DatabaseInUse, match="another engine is running"):
            second.start()
        assert not second.running
    finally:
        first.stop()
    second.start()  # free again once the first one stopped
    assert second.running
    second.stop()
