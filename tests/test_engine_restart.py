"""One Engine object stopped and started again: it resumes from SQLite as a new engine would."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from engine_support import (
    GatedFeed,
    close_bars,
    entry_days,
    fast_settings,
    holdings_from_trades,
    ledger_identity,
    run_replay,
    wait_for,
)

from miniqmt_lab.bars import sample_bars
from miniqmt_lab.engine import Engine, IdleFeed, ReplayFeed, SimBroker
from miniqmt_lab.engine.lock import DatabaseInUse
from miniqmt_lab.qmt import QmtBroker, QmtFeed
from miniqmt_lab.schema import OrderRequest
from miniqmt_lab.xtquant_double import FakeQmt

pytestmark = pytest.mark.timeout(60)

BARS = {"n_stocks": 4, "n_days": 80, "seed": 3}


def assert_consistent(engine: Engine) -> None:
    """Book, cash, the venue's ledger and the trade records agree; no signal was executed twice."""
    ledger = engine.store.ledger_frame()
    positions, cash = engine.positions(), engine.snapshot().cash
    holdings_cost = float((positions["volume"] * positions["cost"]).sum())
    expected = ledger_identity(ledger, engine.trader.initial_cash)["expected"]
    assert cash + holdings_cost == pytest.approx(expected, abs=1e-6)
    assert cash == ledger["cash_after"].iloc[-1]
    held = dict(zip(positions["stock_code"], positions["volume"].astype(int), strict=True))
    assert held == holdings_from_trades(ledger)
    assert {code: int(state.volume) for code, state in engine.broker.holdings()} == held
    assert ledger["trade_id"].is_unique and ledger["signal_id"].is_unique
    signals = engine.signals()
    assert signals["id"].is_unique
    assert set(signals.loc[signals["outcome"] == "executed", "id"]) == set(ledger["signal_id"])


def test_stopped_mid_session_and_started_again_trades_as_an_uninterrupted_run(tmp_path):
    bars = sample_bars(**BARS)
    reference = run_replay(fast_settings(tmp_path / "reference"), ReplayFeed.from_bars(bars), "macd").trades()
    assert len(reference) > 5

    feed = GatedFeed(ReplayFeed.from_bars(bars))
    engine = Engine(fast_settings(tmp_path / "restart"), feed=feed, entries="macd")
    journals, versions = [], []
    for rounds in (100, 90):  # two stops mid-session, each between two rounds
        engine.start()
        journals.append(engine.journal_path)
        feed.step(engine, rounds)
        versions.append(engine.version)
        engine.stop()
        assert not engine.running
        assert_consistent(engine)
    assert 0 < len(engine.trades()) < len(reference)

    engine.start()
    journals.append(engine.journal_path)
    try:
        assert engine.running and engine.snapshot().broker.connected
        feed.step(engine, feed.replay.n_rounds - 190)
        assert engine.wait_idle(30)
        versions.append(engine.version)
    finally:
        engine.stop()

    pd.testing.assert_frame_equal(engine.trades(), reference)
    assert_consistent(engine)
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert len(set(journals)) == 3 and all(path.exists() for path in journals)
    assert engine.status()["monitor"]["skipped_ticks"] == len(bars["stock_code"].unique())  # the resumed round


def test_a_reopened_replay_resumes_with_the_round_it_delivered_last():
    feed = ReplayFeed.from_bars(close_bars({"600000.SH": [10.0, 10.1, 10.2]}), tick_mode="close")
    feed.open()  # before any close: nothing to resume
    feed.next_round(0.0)
    second = feed.next_round(0.0)
    feed.close()
    assert feed.next_round(0.0) is None and not feed.pending() and not feed.finished()
    feed.open()
    feed.open()  # idempotent
    assert feed.next_round(0.0).time == second.time  # the engine may have stopped inside it
    third = feed.next_round(0.0)
    assert feed.finished()
    feed.close()
    feed.open()
    assert feed.next_round(0.0).time == third.time and feed.next_round(0.0) is None


def test_a_reopened_idle_feed_waits_again():
    feed = IdleFeed()
    feed.close()
    answer: list[object] = []
    waiter = threading.Thread(target=lambda: answer.append(feed.next_round(5.0)))
    waiter.start()
    waiter.join(0.9)  # closed: no waiting (an open idle feed waits up to 1 s)
    assert not waiter.is_alive() and answer == [None]
    feed.open()
    started = time.monotonic()
    assert feed.next_round(0.2) is None and time.monotonic() - started >= 0.15


class PausingBroker(SimBroker):
    """A paper broker whose first order waits until the test lets it go."""

    def __init__(self, settings: object) -> None:
        super().__init__(settings)
        self.reached = threading.Event()
        self.go = threading.Event()

    def submit(self, order: OrderRequest) -> str:
        if not self.reached.is_set():
            self.reached.set()
            assert self.go.wait(10)
        return super().submit(order)


def test_a_stop_inside_a_round_leaves_its_remaining_ticks_to_the_restart(tmp_path):
    # two entries on the same tick time: the stop comes while the first one's order is at the broker
    bars = close_bars({"000001.SZ": [10.0, 10.1, 10.2], "600000.SH": [8.0, 8.1, 8.2]})
    entries = entry_days(bars, {"000001.SZ": [0], "600000.SH": [0]})
    reference = run_replay(fast_settings(tmp_path / "reference"), ReplayFeed.from_bars(bars, tick_mode="close"),
                           entries).trades()
    assert reference["rule"].tolist() == ["entry", "entry"]

    settings = fast_settings(tmp_path / "restart")
    broker = PausingBroker(settings)
    engine = Engine(settings, broker=broker, feed=ReplayFeed.from_bars(bars, tick_mode="close"), entries=entries)
    engine.start()
    assert broker.reached.wait(10)
    stopper = threading.Thread(target=engine.stop)
    stopper.start()
    wait_for(lambda: not engine.trader.accepting, what="the stop to begin")
    broker.go.set()
    stopper.join(10)
    assert not engine.running
    # the order in flight was carried out; the rest of its round was left, not refused
    assert engine.trades()["stock_code"].tolist() == ["000001.SZ"]
    assert engine.signals()["stock_code"].tolist() == ["000001.SZ"]

    engine.start()
    try:
        assert engine.wait_idle(20)
    finally:
        engine.stop()
    pd.testing.assert_frame_equal(engine.trades(), reference)
    assert engine.signals()["outcome"].tolist() == ["executed", "executed"]
    assert_consistent(engine)


def test_start_stop_cycles_leave_no_thread_behind(tmp_path):
    before = set(threading.enumerate())
    engine = Engine(fast_settings(tmp_path))
    engine.set_auto_trading(False)
    seen: set[object] = set()
    for _ in range(3):
        engine.start()
        engine.start()  # idempotent while running
        threads = {engine.thread(t.name) for t in engine.snapshot().threads}
        assert {t.name for t in threads} == {"monitor", "strategy", "events", "data", "sync", "watchdog"}
        assert all(t.alive for t in threads)
        assert not seen & threads  # fresh threads every run
        seen |= threads
        assert engine.snapshot().auto_trading is False  # the switch stays as it was set
        engine.stop()
        engine.stop()  # idempotent
        assert all(not t.alive for t in engine.snapshot().threads)
    wait_for(lambda: set(threading.enumerate()) <= before, what="every engine thread to end")


def test_a_restart_refused_by_another_running_engine_can_be_retried(tmp_path):
    engine, other = Engine(fast_settings(tmp_path)), Engine(fast_settings(tmp_path))
    engine.start()
    engine.stop()
    other.start()
    try:
        with pytest.raises(DatabaseInUse, match="another engine is running"):
            engine.start()
        assert not engine.running
    finally:
        other.stop()
    engine.start()
    assert engine.running and engine.snapshot().broker.connected
    engine.stop()


def test_a_live_engine_connects_its_qmt_broker_and_feed_again(tmp_path):
    userdata = tmp_path / "userdata_mini"
    userdata.mkdir()
    settings = fast_settings(tmp_path, simulation=False, account_id="8800001234", qmt_userdata_path=str(userdata),
                             stock_pool=["600000.SH"])
    qmt = FakeQmt(account_id="8800001234", userdata_path=userdata)
    qmt.market.set_instrument("600000.SH", "浦发银行", prev_close=10.0)
    engine = Engine(settings, broker=QmtBroker(settings, modules=qmt),
                    feed=QmtFeed(settings, modules=qmt, poll_interval=0.01))
    try:
        for run in (1, 2):
            engine.start()
            wait_for(lambda: engine.snapshot().broker.connected, what="the broker connection")
            assert [t.connected for t in qmt.traders] == [True]  # the trader of the run before is dropped
            assert len(qmt.sessions) == run
            engine.stop()
            assert not engine.snapshot().broker.connected
            assert engine.journal_path.exists()
    finally:
        engine.stop()
        qmt.release()
    assert len(list((tmp_path / "data" / "journal").glob("live-*.sqlite"))) == 2
