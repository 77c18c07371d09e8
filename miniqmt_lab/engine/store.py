"""SQLite persistence of the engine (WAL) and the per-session tick journal.

The engine database (``settings.database_path``: ``paper.sqlite`` or ``live.sqlite``) holds the
book (``positions``, cash and the trading day in ``meta``), every fill (``trade_records``), every
signal with its outcome (``signals``, which is also the processed-signal memory) and bad input met
(``issues``). A fill, the holding and cash it produces and its signal's outcome are written in one
transaction, committed before the book shows them.

The journal (``<database folder>/journal/<session>.sqlite``) records every tick the monitor
evaluated, so a session can be replayed (``ReplayFeed.from_journal``) or backtested
(:func:`miniqmt_lab.records.read_journal`). Times are stored as naive Asia/Shanghai local times.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from miniqmt_lab import records
from miniqmt_lab.engine.book import Position
from miniqmt_lab.engine.guards import FINAL_FOR_EXECUTION
from miniqmt_lab.errors import MiniQmtError
from miniqmt_lab.records import from_local_text, local_text
from miniqmt_lab.rules import holding
from miniqmt_lab.schema import Outcome

SCHEMA_VERSION = "1"

_SCHEMA = """
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


class DatabaseInUse(MiniQmtError, RuntimeError):
    """Another running engine holds this database: two engines on one book would trade it twice."""


class DatabaseLock:
    """An exclusive lock on ``<database>.lock`` for the life of a running engine; the OS frees it
    when the process dies, so a crashed engine never blocks its restart."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._file: BinaryIO | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+b")  # noqa: SIM115 - held open while the engine runs
        try:
            _lock_file(file)
        except OSError:
            file.close()
            raise DatabaseInUse(f"another engine is running on {self.database}: stop it first") from None
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the lock
            self._file = None


def _lock_file(file: BinaryIO) -> None:
    if sys.platform == "win32":
        import msvcrt

        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    con.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL survives a killed process; only a power loss may drop the last commits
    con.execute("PRAGMA synchronous=NORMAL")
    return con


@dataclass(frozen=True)
class StoredBook:
    initial_cash: float
    cash: float
    day: dt.date | None
    progress: tuple[dt.datetime, str] | None
    positions: list[Position]


@dataclass(frozen=True)
class TradeRow:
    trade_id: str
    order_id: str
    time: dt.datetime
    code: str
    side: str
    price: float
    volume: int
    amount: float
    commission: float
    rule: str
    signal_id: str
    realised: float
    cash_after: float


@dataclass(frozen=True)
class SignalRow:
    id: str
    time: dt.datetime
    stamp: dt.datetime
    code: str
    rule: str
    side: str
    price: float
    volume: int
    outcome: str
    message: str
    repeat_key: str


class Store:
    """The engine database; one connection shared by the engine's threads under a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._con = _connect(self.path)
        self._con.executescript(_SCHEMA)
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._con.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the engine database {self.path} is closed")
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            if not self._closed:
                return self._con.execute(sql, params).fetchall()
        # a stopped engine's records stay readable
        return records.read_only_query(self.path)(sql, params)

    # -- the book ---------------------------------------------------------------------------------

    def load(self, initial_cash: float) -> StoredBook:
        """The stored book; a new database starts with ``initial_cash`` and no holdings."""
        with self._transaction() as con:
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('initial_cash', ?)", (repr(float(initial_cash)),))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('cash', ?)", (repr(float(initial_cash)),))
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            rows = con.execute(
                "SELECT stock_code, stock_name, volume, available, cost, base_cost, high, profit_triggered, grid_k,"
                " open_date, opened_at FROM positions ORDER BY stock_code"
            ).fetchall()
        positions = [
            Position(
                code,
                name,
                holding(volume, available, cost, base_cost, high, bool(tp), grid_k),
                dt.date.fromisoformat(open_date) if open_date else None,
                opened_at,
            )
            for code, name, volume, available, cost, base_cost, high, tp, grid_k, open_date, opened_at in rows
        ]
        progress = None
        if meta.get("progress_time"):
            progress = (from_local_text(meta["progress_time"]), meta.get("progress_code", ""))
        day = dt.date.fromisoformat(meta["day"]) if meta.get("day") else None
        return StoredBook(float(meta["initial_cash"]), float(meta["cash"]), day, progress, positions)

    @staticmethod
    def _write_book(
        con: sqlite3.Connection,
        changed: Iterable[Position],
        closed: Iterable[str],
        cash: float,
        day: dt.date | None,
        progress: tuple[dt.datetime, str] | None,
    ) -> None:
        con.executemany(
            "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p.code, p.name, int(p.state.volume), int(p.state.available), float(p.state.cost),
                    float(p.state.base_cost), float(p.state.high), int(bool(p.state.tp_done)), int(p.state.grid_k),
                    p.open_date.isoformat() if p.open_date else None, p.opened_at,
                )
                for p in changed
            ],
        )
        con.executemany("DELETE FROM positions WHERE stock_code = ?", [(c,) for c in closed])
        values = [("cash", repr(float(cash)))]
        if day is not None:
            values.append(("day", day.isoformat()))
        if progress is not None:
            values += [("progress_time", local_text(progress[0])), ("progress_code", progress[1])]
        con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values)

    def save_book(
        self,
        changed: Iterable[Position],
        closed: Iterable[str],
        cash: float,
        day: dt.date | None,
        progress: tuple[dt.datetime, str] | None,
    ) -> None:
        with self._transaction() as con:
            self._write_book(con, changed, closed, cash, day, progress)

    def save_fill(
        self,
        trade: TradeRow,
        position: Position | None,
        other_changed: Iterable[Position],
        other_closed: Iterable[str],
        day: dt.date | None,
        progress: tuple[dt.datetime, str] | None,
        signal_outcome: tuple[str, str] | None,
    ) -> bool:
        """Record a fill with the book it leads to (its holding, cash, progress and any other holding
        changed since the last save); False when the trade id is known already."""
        with self._transaction() as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO trade_records (trade_id, order_id, time, stock_code, side, price, volume,"
                " amount, commission, rule, signal_id, realised, cash_after)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    trade.trade_id, trade.order_id, local_text(trade.time), trade.code, trade.side, float(trade.price),
                    int(trade.volume), float(trade.amount), float(trade.commission), trade.rule, trade.signal_id,
                    float(trade.realised), float(trade.cash_after),
                ),
            )
            if cur.rowcount == 0:
                return False
            changed = [*other_changed, *([position] if position is not None else [])]
            closed = [*other_closed, *([] if position is not None else [trade.code])]
            self._write_book(con, changed, closed, trade.cash_after, day, progress)
            if signal_outcome is not None:
                con.execute(
                    "UPDATE signals SET outcome = ?, message = ? WHERE id = ?",
                    (Outcome.EXECUTED.value, signal_outcome[1], signal_outcome[0]),
                )
        return True

    # -- signals ----------------------------------------------------------------------------------

    def insert_signal(self, row: SignalRow) -> bool:
        """Record a signal; False when its id is known (a replay re-detecting a processed tick)."""
        with self._transaction() as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO signals (id, time, stamp, stock_code, rule, side, price, volume, outcome,"
                " message, repeat_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id, local_text(row.time), local_text(row.stamp), row.code, row.rule, row.side,
                    float(row.price), int(row.volume), row.outcome, row.message, row.repeat_key,
                ),
            )
            return cur.rowcount == 1

    def update_signal(self, signal_id: str, outcome: str, message: str) -> None:
        with self._transaction() as con:
            con.execute("UPDATE signals SET outcome = ?, message = ? WHERE id = ?", (outcome, message, signal_id))

    def set_order_id(self, signal_id: str, order_id: str) -> None:
        with self._transaction() as con:
            con.execute("UPDATE signals SET order_id = ? WHERE id = ?", (order_id, signal_id))

    def signal_outcome(self, signal_id: str) -> str | None:
        rows = self._query("SELECT outcome FROM signals WHERE id = ?", (signal_id,))
        return rows[0][0] if rows else None

    def interrupt_unfinished(self) -> int:
        """At start, settle the signals a previous run left open; returns how many were at the broker.

        One sent to the broker without a recorded fill becomes ``interrupted`` and is never sent
        again (the broker sync shows whether it filled). One that never reached the broker becomes
        ``not_executed``; a replay that detects it again executes it then.
        """
        with self._transaction() as con:
            cur = con.execute(
                "UPDATE signals SET outcome = ?, message = 'the engine stopped before the broker confirmed;"
                " the broker sync shows whether it filled' WHERE outcome = ?"
                " AND id NOT IN (SELECT signal_id FROM trade_records)",
                (Outcome.INTERRUPTED.value, Outcome.SUBMITTED.value),
            )
            con.execute(
                "UPDATE signals SET outcome = ?, message = 'the engine stopped before executing it' WHERE outcome = ?",
                (Outcome.NOT_EXECUTED.value, Outcome.PENDING.value),
            )
            return cur.rowcount

    def executed_keys(self) -> list[tuple[str, dt.datetime]]:
        """(repeat key, detection time) of signals that reached the broker: the repeat guard's memory."""
        placeholders = ", ".join("?" * len(FINAL_FOR_EXECUTION))
        rows = self._query(
            f"SELECT repeat_key, time FROM signals WHERE outcome IN ({placeholders})",
            [o.value for o in FINAL_FOR_EXECUTION],
        )
        return [(key, from_local_text(t)) for key, t in rows]

    # -- issues -----------------------------------------------------------------------------------

    def record_issue(self, time: dt.datetime, kind: str, code: str, message: str) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT INTO issues (time, kind, stock_code, message) VALUES (?, ?, ?, ?)",
                (local_text(time), kind, code, message),
            )

    # -- frames -----------------------------------------------------------------------------------

    def trades_frame(self) -> pd.DataFrame:
        return records.trades_frame(self._query)

    def ledger_frame(self) -> pd.DataFrame:
        return records.ledger_frame(self._query)

    def signals_frame(self) -> pd.DataFrame:
        return records.signals_frame(self._query)

    def issues_frame(self) -> pd.DataFrame:
        return records.issues_frame(self._query)


# -- the tick journal -------------------------------------------------------------------------------


class Journal:
    """Append-only record of the ticks the monitor evaluated in one session.

    Rows are buffered and written about once a second (and at close): a crash may lose the last
    second of the journal, never a trade record.
    """

    FLUSH_SECONDS = 1.0
    FLUSH_ROWS = 20_000

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._con = _connect(self.path)
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS ticks (time TEXT NOT NULL, stamp TEXT NOT NULL, stock_code TEXT NOT NULL,"
            " price REAL, bar_close INTEGER NOT NULL, prev_close REAL)"
        )
        self._buffer: list[tuple[str, str, str, float | None, int, float | None]] = []
        self._flushed = time.monotonic()
        self._closed = False

    def append(self, rows: Sequence[tuple[str, str, str, float | None, int, float | None]]) -> None:
        with self._lock:
            if self._closed:
                return
            self._buffer.extend(rows)
            if len(self._buffer) >= self.FLUSH_ROWS or time.monotonic() - self._flushed >= self.FLUSH_SECONDS:
                self._flush()

    def flush(self) -> None:
        with self._lock:
            if not self._closed:
                self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._con.execute("BEGIN")
            self._con.executemany("INSERT INTO ticks VALUES (?, ?, ?, ?, ?, ?)", self._buffer)
            self._con.execute("COMMIT")
            self._buffer = []
        self._flushed = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._flush()
                self._closed = True
                self._con.close()
