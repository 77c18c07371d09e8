"""The real machine (issue 10): one engine per book, storage faults on real files, damaged or foreign
databases, owner-only files, log and journal retention, and the previous schema version migrated."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from engine_support import GatedFeed, close_bars, fast_settings, holdings_from_trades, run_replay, wait_for

from miniqmt_lab import cli
from miniqmt_lab.engine import Engine, ReplayFeed
from miniqmt_lab.engine.dbschema import SCHEMA_VERSION, DatabaseProblem
from miniqmt_lab.engine.journal import compact_journals, prune_journals
from miniqmt_lab.engine.lock import DatabaseInUse
from miniqmt_lab.engine.logsetup import cleanup_old_logs, log_file_name
from miniqmt_lab.engine.store import Store
from miniqmt_lab.market import SHANGHAI

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
CODE = "600000.SH"


# -- one engine per book -------------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_second_name_of_the_same_database_cannot_start_a_second_engine(tmp_path, link):
    settings = fast_settings(tmp_path)
    first = Engine(settings)
    first.start()
    try:
        other = tmp_path / "elsewhere" / "book.sqlite"
        other.parent.mkdir()
        (os.symlink if link == "symlink" else os.link)(first.database_path, other)
        with pytest.raises(DatabaseInUse, match="another engine is running"):
            Engine(settings, database=other).start()  # a hard link is refused already when built
    finally:
        first.stop()
    second = Engine(settings, database=other)  # once the first stopped, the lock is free
    second.start()
    second.stop()


def test_the_demo_refuses_to_wipe_a_running_demo(tmp_path, capsys):
    database = tmp_path / "demo-paper.sqlite"
    running = Engine(fast_settings(tmp_path), database=database)
    running.start()
    try:
        size = database.stat().st_size
        assert cli.main(["demo", "--data-dir", str(tmp_path), "--days", "40", "--stocks", "2"]) == 2
        assert "another engine is running" in capsys.readouterr().err
        assert database.exists() and database.stat().st_size == size
    finally:
        running.stop()


def test_building_an_engine_on_a_running_database_changes_nothing(tmp_path):
    settings = fast_settings(tmp_path)
    running = Engine(settings)
    running.start()
    try:
        store = running.store
        store.insert_signal(_signal_row("in-flight", "submitted"))
        Engine(settings)  # built, not started: reads only
        assert store.signal_outcome("in-flight") == "submitted"
    finally:
        running.stop()


def _signal_row(signal_id: str, outcome: str):
    from miniqmt_lab.engine.store import SignalRow

    now = dt.datetime(2024, 3, 4, 10, 0, tzinfo=SHANGHAI)
    return SignalRow(signal_id, now, now, CODE, "manual", "BUY", 10.0, 100, outcome, "", f"{CODE}|manual|x")


# -- storage faults on real files -------------------------------------------------------------------------


def test_a_database_deleted_while_running_halts_trading_and_stop_releases_the_lock(tmp_path):
    bars = close_bars({CODE: [10.0, 10.0, 10.0]})
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    settings = fast_settings(tmp_path)
    engine = Engine(settings, feed=feed)
    engine.start()
    try:
        feed.step(engine)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{engine.database_path}{suffix}").unlink()
        with contextlib.suppress(Exception):
            engine.buy(CODE, 100)  # the first write finds the file gone
        wait_for(lambda: engine.snapshot().trading_state == "halted", what="the halt")
        assert "was deleted while the engine ran" in engine.snapshot().state_reason
    finally:
        engine.stop()
    again = Engine(settings)  # a new database in its place; the lock was released
    again.start()
    again.stop()


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.decode().strip()}")


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


PROBE = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, "tests")
    from engine_support import fast_settings
    from miniqmt_lab.bars import sample_bars
    from miniqmt_lab.engine import Engine, ReplayFeed
    from pathlib import Path

    data = Path(sys.argv[1])
    settings = fast_settings(data.parent, data_dir=str(data), database_timeout=0.2)
    engine = Engine(settings, feed=ReplayFeed.from_bars(sample_bars(40, 400, seed=3)), entries="always")
    engine.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and engine.snapshot().trading_state != "halted" and not engine.wait_idle(0.2):
        pass
    snap = engine.snapshot()
    restarts = sum(t.restarts for t in snap.threads)
    engine.stop()
    from miniqmt_lab.engine.lock import DatabaseLock
    relocked = DatabaseLock(engine.database_path)  # stop released the lock
    relocked.acquire()
    relocked.release()
    print(json.dumps({"state": snap.trading_state, "reason": snap.state_reason, "restarts": restarts}))
    """
)


def test_a_full_disk_halts_trading_stops_cleanly_and_loses_nothing_written(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "600k")
    try:
        proc = subprocess.run([sys.executable, "-c", PROBE, str(disk / "data")], cwd=REPO, capture_output=True,
                              text=True, timeout=150,
                              # a fill kept while the disk is full goes to the temp folder this test's engine reads
                              env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": tempfile.gettempdir()})
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["state"] == "halted" and "storage failure" in result["reason"]
        assert result["restarts"] < 10  # no restart storm
        subprocess.run(["mount", "-o", "remount,size=50m", str(disk)], check=True)
        settings = fast_settings(tmp_path, data_dir=str(disk / "data"))
        again = Engine(settings)  # the stored book is consistent with the trades that were written
        ledger = again.store.ledger_frame()
        assert len(ledger) > 0
        assert again.snapshot().cash == pytest.approx(ledger["cash_after"].iloc[-1])
        again.start()  # fills kept in a side file (the temp folder when the disk was full) are written now
        again.stop()
        trades = again.trades()
        signed = (trades["amount"] * (trades["side"] == "SELL") - trades["amount"] * (trades["side"] == "BUY"))
        expected_cash = settings.engine.simulation_balance + (signed - trades["commission"]).sum()
        assert again.snapshot().cash == pytest.approx(expected_cash)
        held = again.positions().set_index("stock_code")["volume"].to_dict()
        assert held == holdings_from_trades(trades)
    finally:
        _umount(disk)


def test_a_read_only_database_is_refused_with_the_file_named(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "10m")
    try:
        settings = fast_settings(tmp_path, data_dir=str(disk / "data"))
        first = Engine(settings)
        first.start()
        first.stop()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(DatabaseProblem, match=r"paper\.sqlite: the (file|folder) is read-only"):
            Engine(settings)
    finally:
        _umount(disk)


# -- damaged or foreign databases ----------------------------------------------------------------------------


def _v1_database(path: Path, *, cash: str = "1000000.0", extra: str = "") -> None:
    from miniqmt_lab.engine.dbschema import BASE_SCHEMA

    with contextlib.closing(sqlite3.connect(path)) as con:
        con.executescript(BASE_SCHEMA)
        con.executemany("INSERT INTO meta VALUES (?, ?)",
                        [("schema_version", "1"), ("initial_cash", "1000000.0"), ("cash", cash)])
        if extra:
            con.executescript(extra)
        con.commit()


BAD_DATABASES = {
    "text": (lambda p: p.write_text("hello, not a database"), "not a usable SQLite database"),
    "garbage": (lambda p: p.write_bytes(os.urandom(8192)), "not a usable SQLite database"),
    "truncated": (lambda p: (_v1_database(p), p.write_bytes(p.read_bytes()[:600])),
                  "not a usable SQLite database|damaged"),
    "foreign": (lambda p: _sqlite(p, "CREATE TABLE customers (id INTEGER, name TEXT)"),
                "not a miniqmt-lab engine database"),
    "newer": (lambda p: _sqlite(p, "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT);"
                                   " INSERT INTO schema_migrations VALUES (99, 'later')"), "written by a newer"),
    "unknown version": (lambda p: _v1_database(p, extra="UPDATE meta SET value = '7' WHERE key = 'schema_version'"),
                        "unknown engine database version"),
    "cash nan": (lambda p: _v1_database(p, cash="nan"), "is not a number"),
    "cash text": (lambda p: _v1_database(p, cash="lots"), "stored book is not valid"),
    "negative holding": (lambda p: _v1_database(p, extra=_position(-100, 0, 10.0)), "holding of 600000.SH"),
    "available above volume": (lambda p: _v1_database(p, extra=_position(100, 500, 10.0)), "holding of 600000.SH"),
    "zero cost": (lambda p: _v1_database(p, extra=_position(100, 100, 0.0)), "holding of 600000.SH"),
    "text volume": (lambda p: _v1_database(p, extra=_position("'many'", 100, 10.0)), "holding of 600000.SH"),
    "missing meta": (lambda p: _sqlite(p, "CREATE TABLE positions (stock_code TEXT); CREATE TABLE signals (id TEXT);"
                                          " CREATE TABLE trade_records (trade_id TEXT)"),
                     "not a miniqmt-lab engine database"),
}


def _sqlite(path: Path, script: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.executescript(script)
        con.commit()


def _position(volume: object, available: object, cost: float) -> str:
    values = f"'600000.SH', '', {volume}, {available}, {cost}, {cost}, {cost}, 0, 0, NULL, 'x'"
    return f"INSERT INTO positions VALUES ({values})"


@pytest.mark.parametrize("name", sorted(BAD_DATABASES))
def test_a_damaged_or_foreign_database_is_one_clear_error_and_never_started(tmp_path, name):
    path = tmp_path / "data" / "paper.sqlite"
    path.parent.mkdir()
    make, message = BAD_DATABASES[name]
    make(path)
    with pytest.raises(DatabaseProblem, match=message) as info:
        Engine(fast_settings(tmp_path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_database_of_the_previous_version_is_migrated_and_keeps_its_book(tmp_path):
    path = tmp_path / "data" / "paper.sqlite"
    path.parent.mkdir()
    _v1_database(path, cash="990000.0", extra=_position(1000, 1000, 10.0) + ";"
                 " INSERT INTO signals (id, time, stamp, stock_code, rule, side, price, volume, outcome, message,"
                 " repeat_key) VALUES ('s1', '2024-03-04 10:00:00.000000', '2024-03-04 10:00:00.000000',"
                 " '600000.SH', 'manual', 'BUY', 10.0, 1000, 'timeout', '', 'k')")
    engine = Engine(fast_settings(tmp_path))
    assert engine.snapshot().cash == 990000.0
    assert engine.positions()["volume"].tolist() == [1000]
    assert engine.signals()["outcome"].tolist() == ["unknown"]  # the old 'timeout' is now 'unknown'
    with contextlib.closing(sqlite3.connect(path)) as con:
        versions = [v for (v,) in con.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


# -- files ----------------------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="owner-only permissions are POSIX modes")
def test_records_logs_and_saved_configs_are_owner_only(tmp_path):
    from miniqmt_lab import config
    from miniqmt_lab.engine.logsetup import setup_logging

    settings = fast_settings(tmp_path)
    engine = run_replay(settings, ReplayFeed.from_bars(close_bars({CODE: [10.0, 10.0]}), tick_mode="close"))
    assert _mode(engine.database_path) == 0o600 and _mode(engine.journal_path) == 0o600
    saved = config.save(settings, tmp_path / "saved.toml")
    assert _mode(saved) == 0o600
    import logging

    root = logging.getLogger()
    level = root.level
    try:
        log_file = setup_logging(settings, console=False)
        assert _mode(log_file) == 0o600 and _mode(log_file.parent) == 0o700
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_miniqmt", False)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


def test_log_cleanup_deletes_only_this_products_old_logs(tmp_path):
    old = time.time() - 30 * 86400
    ours = [tmp_path / "miniqmt_lab.log.3", tmp_path / log_file_name(pid=42),
            tmp_path / (log_file_name(pid=43) + ".2")]
    theirs = [tmp_path / "nginx.log", tmp_path / "qmt_client.log.1", tmp_path / "miniqmt_lab_notes.log"]
    for file in ours + theirs:
        file.write_text("x")
        os.utime(file, (old, old))
    removed = cleanup_old_logs(tmp_path, 14)
    assert sorted(removed) == sorted(ours)
    assert all(f.exists() for f in theirs)


def test_old_session_journals_are_pruned_and_others_files_kept(tmp_path):
    folder = tmp_path / "journal"
    folder.mkdir()
    now = dt.datetime(2024, 6, 1, 9, 0, tzinfo=SHANGHAI)
    old, recent = now.timestamp() - 40 * 86400, now.timestamp() - 2 * 86400
    files = {"paper-20240420-090000-aaaaaa.sqlite": old, "live-20240421-090000-bbbbbb.sqlite": old,
             "paper-20240530-090000-cccccc.sqlite": recent, "mine.sqlite": old}
    for name, mtime in files.items():
        (folder / name).write_text("x")
        os.utime(folder / name, (mtime, mtime))
    removed = prune_journals(folder, 30, now)
    expected = ["live-20240421-090000-bbbbbb.sqlite", "paper-20240420-090000-aaaaaa.sqlite"]
    assert sorted(p.name for p in removed) == expected
    assert sorted(p.name for p in folder.iterdir()) == ["mine.sqlite", "paper-20240530-090000-cccccc.sqlite"]


def test_old_session_journals_are_compacted_and_read_as_before(tmp_path):
    from pandas.testing import assert_frame_equal

    from miniqmt_lab.bars import sample_bars
    from miniqmt_lab.records import read_journal

    settings = fast_settings(tmp_path)
    engine = run_replay(settings, ReplayFeed.from_bars(sample_bars(20, 120, seed=5)), entries="macd")
    journal = engine.journal_path
    assert journal is not None
    folder, size, before = journal.parent, journal.stat().st_size, read_journal(journal)
    foreign = folder / "mine.sqlite"  # another program's file in the folder is never touched
    foreign.write_text("x")
    young = folder / "paper-20991231-090000-ffffff.sqlite"  # a journal younger than the limit stays
    young.write_bytes(journal.read_bytes())
    open_one = folder / "live-20240101-090000-eeeeee.sqlite"  # an engine still writes its -wal file
    open_one.write_bytes(journal.read_bytes())
    session_age = journal.stat().st_mtime
    for file in (foreign, open_one):
        os.utime(file, (session_age, session_age))
    now = dt.datetime.now(SHANGHAI)
    later = now + dt.timedelta(days=8)
    Path(f"{open_one}-wal").write_bytes(b"")
    for file in (young, Path(f"{open_one}-wal")):
        os.utime(file, (later.timestamp(), later.timestamp()))

    compacted = compact_journals(folder, 7, later)
    packed = journal.with_name(journal.name + ".gz")
    assert compacted == [packed] and not journal.exists()
    assert young.exists() and open_one.exists() and foreign.exists()
    assert packed.stat().st_size < size / 3 and packed.stat().st_mtime == pytest.approx(session_age)
    assert stat.S_IMODE(packed.stat().st_mode) == 0o600
    assert_frame_equal(read_journal(packed), before)  # the same ticks, read from either form
    replayed = run_replay(fast_settings(tmp_path / "again"), ReplayFeed.from_journal(packed))
    assert replayed.status()["monitor"]["ticks"] == len(before)  # a compacted session replays whole
    assert compact_journals(folder, 7, later) == []  # done once
    removed = prune_journals(folder, 30, now + dt.timedelta(days=31))
    assert packed in removed and not packed.exists() and foreign.exists()


def test_an_engine_takes_the_holidays_of_its_settings(tmp_path, monkeypatch):
    from miniqmt_lab.market import calendar

    monkeypatch.setenv("MINIQMT_HOLIDAYS", '["2099-03-02"]')  # a Monday long past the calendar's end
    from miniqmt_lab import config

    settings = config.load(None).with_values(data_dir=str(tmp_path / "data"))
    assert settings.engine.holidays == ("2099-03-02",)
    assert calendar.CALENDAR.is_trading_day(dt.date(2099, 3, 2))
    Engine(settings)
    assert not calendar.CALENDAR.is_trading_day(dt.date(2099, 3, 2))
    assert calendar.CALENDAR.next_trading_day(dt.date(2099, 2, 27)) == dt.date(2099, 3, 3)


def test_a_faulted_watchdog_is_replaced(tmp_path):
    engine = Engine(fast_settings(tmp_path, thread_check_interval=0.05))
    failures = iter(range(3))
    check = engine._watchdog.check

    def failing_check():
        if next(failures, None) is not None:
            raise RuntimeError("watchdog bug")
        return check()

    engine._watchdog.check = failing_check
    engine.start()
    try:
        first = engine.thread("watchdog")
        wait_for(lambda: first.state.value == "faulted", what="the fault")
        wait_for(lambda: engine.thread("watchdog") is not first and engine.thread("watchdog").alive,
                 what="a new watchdog")
        assert any(t.name == "watchdog" and t.restarts == 1 for t in engine.snapshot().threads)
    finally:
        engine.stop()


def test_store_opens_and_migrates_a_fresh_file(tmp_path):
    store = Store(tmp_path / "fresh.sqlite")
    try:
        assert store.load(1000.0).cash == 1000.0
    finally:
        store.close()
