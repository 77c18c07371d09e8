"""The engine database's schema: a version table, ordered migrations, and checks at open.

A database is opened only when it is a healthy engine database of a version this code knows:
anything else (not SQLite, damaged, another program's, written by a newer miniqmt-lab) is one
:class:`DatabaseProblem` naming the file and what is wrong, and the engine never starts on it.
Migrations run in order inside one transaction each; ``schema_migrations`` records which ran.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from miniqmt_lab.errors import MiniQmtError

BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    stock_code TEXT PRIMARY KEY, stock_name TEXT NOT NULL, volume INTEGER NOT NULL, available INTEGER NOT NULL,
    cost REAL NOT NULL, base_cost REAL NOT NULL, high REAL NOT NULL, profit_triggered INTEGER NOT NULL,
    grid_k INTEGER NOT NULL, open_date TEXT, opened_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trade_records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, trade_id TEXT NOT NULL UNIQUE, order_id TEXT NOT NULL,
    time TEXT NOT NULL, stock_code TEXT NOT NULL, side TEXT NOT NULL, price REAL NOT NULL, volume INTEGER NOT NULL,
    amount REAL NOT NULL, commission REAL NOT NULL, rule TEXT NOT NULL, signal_id TEXT NOT NULL,
    realised REAL NOT NULL, cash_after REAL NOT NULL);
CREATE TABLE IF NOT EXISTS signals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL, stamp TEXT NOT NULL,
    stock_code TEXT NOT NULL, rule TEXT NOT NULL, side TEXT NOT NULL, price REAL, volume INTEGER NOT NULL,
    outcome TEXT NOT NULL, message TEXT NOT NULL, repeat_key TEXT NOT NULL, order_id TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS signals_outcome ON signals (outcome);
CREATE TABLE IF NOT EXISTS issues (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, kind TEXT NOT NULL, stock_code TEXT NOT NULL,
    message TEXT NOT NULL);
"""
"""Version 1: what the first release wrote (it kept ``schema_version`` = '1' in ``meta``)."""


def _run(con: sqlite3.Connection, script: str) -> None:
    # statement by statement: ``executescript`` would commit the migration's transaction half-way
    for statement in script.split(";"):
        if statement.strip():
            con.execute(statement)


def _v2(con: sqlite3.Connection) -> None:
    """Last known prices (a restart values holdings at them), the trading state, corporate-action events,
    and the outcome 'timeout' renamed 'unknown' (the order may be at the broker)."""
    _run(
        con,
        """
        CREATE TABLE IF NOT EXISTS quotes (
            stock_code TEXT PRIMARY KEY, price REAL NOT NULL, prev_close REAL, stock_name TEXT NOT NULL,
            time TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS state_changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
            by TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, stock_code TEXT NOT NULL, kind TEXT NOT NULL,
            volume_before INTEGER NOT NULL, volume_after INTEGER NOT NULL, cash REAL NOT NULL, message TEXT NOT NULL,
            UNIQUE (stock_code, kind, time));
        """
    )
    con.execute("UPDATE signals SET outcome = 'unknown' WHERE outcome = 'timeout'")


MIGRATIONS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (1, lambda con: _run(con, BASE_SCHEMA)),
    (2, _v2),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class DatabaseProblem(MiniQmtError, RuntimeError):
    """An engine database that cannot be used; the message names the file and what is wrong."""


def open_database(path: Path, *, timeout: float) -> sqlite3.Connection:
    """Connect (WAL), check it is a healthy engine database and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for place in (path, path.parent):
        if place.exists() and not os.access(place, os.W_OK):
            raise DatabaseProblem(f"{path}: {'the folder' if place is path.parent else 'the file'} is read-only;"
                                  " the engine writes every fill and signal there: make it writable")
    try:
        con = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    except sqlite3.Error as exc:
        raise DatabaseProblem(f"{path}: cannot open the engine database ({exc})") from None
    try:
        con.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a killed process; only a power loss may drop the last commits
        con.execute("PRAGMA synchronous=NORMAL")
        check = con.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise DatabaseProblem(f"{path}: the engine database is damaged ({check}); restore it from a backup")
        migrate(con, path)
    except sqlite3.DatabaseError as exc:
        con.close()
        raise DatabaseProblem(f"{path}: not a usable SQLite database ({exc})") from None
    except BaseException:
        con.close()
        raise
    return con


def _tables(con: sqlite3.Connection) -> set[str]:
    return {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def applied_version(con: sqlite3.Connection, path: Path) -> int:
    tables = _tables(con) - {"sqlite_sequence"}
    if not tables:
        return 0
    if "schema_migrations" in tables:
        (version,) = con.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        return int(version)
    if "meta" not in tables or not {"positions", "trade_records", "signals"} <= tables:
        raise DatabaseProblem(f"{path}: not a miniqmt-lab engine database (tables: {', '.join(sorted(tables))})")
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or row[0] != "1":
        raise DatabaseProblem(f"{path}: unknown engine database version {row[0] if row else 'none'!r}")
    return 1


def migrate(con: sqlite3.Connection, path: Path) -> int:
    """Run the migrations this database has not had, in order; returns the version it is at now."""
    con.execute("BEGIN IMMEDIATE")
    try:
        version = applied_version(con, path)
        if version > SCHEMA_VERSION:
            raise DatabaseProblem(
                f"{path}: written by a newer miniqmt-lab (schema version {version}, this one knows up to"
                f" {SCHEMA_VERSION}): upgrade miniqmt-lab"
            )
        con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
        now = dt.datetime.now().isoformat(timespec="seconds")
        if version == 1:  # a first-release database: version 1 ran before the table existed
            con.execute("INSERT OR IGNORE INTO schema_migrations VALUES (1, ?)", (now,))
        for number, step in MIGRATIONS:
            if number > version:
                step(con)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?)", (number, now))
        con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return SCHEMA_VERSION


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "DatabaseProblem", "applied_version", "migrate", "open_database"]
