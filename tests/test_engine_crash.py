"""Crash safety: an engine killed with SIGKILL mid-session restarts with book, cash and trades in agreement."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from engine_support import fast_settings, holdings_from_trades, run_replay

from miniqmt_lab.bars import sample_bars
from miniqmt_lab.engine import ReplayFeed
from miniqmt_lab.engine.store import Store

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

BARS = {"n_stocks": 6, "n_days": 120, "seed": 9}
CHILD = textwrap.dedent(
    """
    import sys
    from miniqmt_lab.bars import sample_bars
    from miniqmt_lab.config import Settings
    from miniqmt_lab.engine import Engine, ReplayClock, ReplayFeed

    data_dir, pace = sys.argv[1], float(sys.argv[2])
    settings = Settings().with_values(
        data_dir=data_dir, auto_trading=True, monitor_interval=0.01, strategy_interval=0.05,
        sqlite_sync_interval=0.05, position_query_interval=0.05, call_timeout=2.0, thread_check_interval=0.1,
    )
    feed = ReplayFeed.from_bars(sample_bars(**{bars}), clock=ReplayClock(pace=pace))
    engine = Engine(settings, feed=feed, entries="macd")
    engine.start()
    print("started", flush=True)
    assert engine.wait_idle(120)
    engine.stop()
    print("finished", flush=True)
    """
).format(bars=BARS)


def run_child(script, data_dir, pace, kill_after=None):
    proc = subprocess.Popen([sys.executable, str(script), str(data_dir), str(pace)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started", proc.stderr.read()
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path):
    settings = fast_settings(tmp_path / "reference")
    reference = run_replay(settings, ReplayFeed.from_bars(sample_bars(**BARS)), "macd").trades()
    assert len(reference) > 20

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    data_dir = tmp_path / "crashing"
    rng = random.Random(20240304)
    kills = 0
    for _ in range(4):
        code, _, err = run_child(script, data_dir, pace=0.004, kill_after=rng.uniform(0.05, 1.5))
        kills += code == -signal.SIGKILL
        assert code in (0, -signal.SIGKILL), err
    assert kills >= 3  # the session was really interrupted
    code, out, err = run_child(script, data_dir, pace=0.0)
    assert code == 0 and "finished" in out, err

    database = data_dir / "paper.sqlite"
    store = Store(database)
    try:
        ledger = store.ledger_frame()
        trades = store.trades_frame()
        signals = store.signals_frame()
    finally:
        store.close()
    with sqlite3.connect(database) as con:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        positions = pd.read_sql("SELECT stock_code, volume, cost FROM positions", con).set_index("stock_code")

    # book, cash and trade records agree
    initial, cash = float(meta["initial_cash"]), float(meta["cash"])
    holdings_cost = float((positions["volume"] * positions["cost"]).sum())
    expected = initial + ledger["realised"].sum() - ledger["commission"].sum()
    assert cash + holdings_cost == pytest.approx(expected, abs=1e-6)
    assert positions["volume"].to_dict() == holdings_from_trades(ledger)
    assert cash == ledger["cash_after"].iloc[-1]

    # no trade duplicated, no signal executed twice, every executed signal has its trade
    assert ledger["trade_id"].is_unique and ledger["signal_id"].is_unique
    executed = set(signals.loc[signals["outcome"] == "executed", "id"])
    assert executed == set(ledger["signal_id"])

    # nothing lost: an order cut off between the broker and the record is never resent (at most once),
    # so the session equals an uninterrupted one up to the first such order, and exactly when there is none
    interrupted = signals[signals["outcome"] == "interrupted"]
    if interrupted.empty:
        pd.testing.assert_frame_equal(trades, reference)
    else:
        cut = interrupted["time"].min()
        pd.testing.assert_frame_equal(trades[trades["time"] < cut].reset_index(drop=True),
                                      reference[reference["time"] < cut].reset_index(drop=True))
