"""SQLite persistence of the engine (WAL): the book, every fill, signal and problem, the trading state.

The engine database (``settings.database_path``: ``paper.sqlite`` or ``live.sqlite``) holds the
book (``positions``, cash and the trading day in ``meta``), every fill (``trade_records``), every
signal with its outcome (``signals``, which is also the processed-signal memory), bad input met
(``issues``), the last known price of each stock (``quotes``), the trading state's changes
(``state_changes``) and corporate-action events (``events``). A fill, the holding and cash it
produces and its signal's outcome are written in one transaction, committed before the book shows
them. Its schema and migrations are in :mod:`miniqmt_lab.engine.dbschema`.

Every failing write raises :class:`StorageError` (naming the file) and calls ``on_failure``, which
the engine uses to halt trading; reads of a stopped engine's records go through a read-only
connection (:mod:`miniqmt_lab.records`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from miniqmt_lab import records
from miniqmt_lab.engine.book import Position, Quote
from miniqmt_lab.engine.dbschema import DatabaseProblem, open_database
from miniqmt_lab.engine.guards import FINAL_FOR_EXECUTION
from miniqmt_lab.errors import MiniQmtError
from miniqmt_lab.fsutil import owner_only
from miniqmt_lab.records import from_local_text, local_text
from miniqmt_lab.rules import holding
from miniqmt_lab.schema import Outcome, TradingState


class StorageError(MiniQmtError, RuntimeError):
    """A write to the engine database failed (locked too long, disk full, file gone, read-only)."""


@dataclass(frozen=True)
class StoredBook:
    initial_cash: float
    cash: float
    day: dt.date | None
    progress: tuple[dt.datetime, str] | None
    positions: list[Position]
    quotes: dict[str, Quote]
    trading_state: TradingState
    state_reason: str


@dataclass(frozen=True)
class EventRow:
    """A corporate action applied to a holding (``schema.EVENT_COLUMNS``)."""

    time: dt.datetime
    code: str
    kind: str
    volume_before: int
    volume_after: int
    cash: float
    message: str


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

    def __init__(
        self, path: str | Path, *, timeout: float = 10.0, on_failure: Callable[[str], None] = lambda why: None
    ) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._con = open_database(self.path, timeout=timeout)
        for name in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            owner_only(name)
        self._closed = False
        self.on_failure = on_failure

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._con.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise StorageError(f"the engine database {self.path} is closed")
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    yield self._con
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
                self._con.execute("COMMIT")
            except sqlite3.Error as exc:
                why = f"writing to {self.path} failed: {exc}"
                self.on_failure(why)
                raise StorageError(why) from exc
            if not self.path.exists():
                # the file was deleted under a running engine: its writes go nowhere a restart can find
                why = f"the engine database {self.path} was deleted while the engine ran"
                self.on_failure(why)
                raise StorageError(why)

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            if not self._closed:
                return self._con.execute(sql, params).fetchall()
        # a stopped engine's records stay readable
        return records.read_only_query(self.path)(sql, params)

    # -- the book ---------------------------------------------------------------------------------

    def load(self, initial_cash: float) -> StoredBook:
        """The stored book; a new database starts with ``initial_cash`` and no holdings. A book that
        cannot be right (cash not a number, impossible holdings) is a :class:`DatabaseProblem`."""
        with self._transaction() as con:
            con.execute("INSERT OR IGNORE INTO meta VALUES ('initial_cash', ?)", (repr(float(initial_cash)),))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('cash', ?)", (repr(float(initial_cash)),))
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            rows = con.execute(
                "SELECT stock_code, stock_name, volume, available, cost, base_cost, high, profit_triggered, grid_k,"
                " open_date, opened_at FROM positions ORDER BY stock_code"
            ).fetchall()
            quote_rows = con.execute("SELECT stock_code, price, prev_close, stock_name, time FROM quotes").fetchall()
        try:
            return self._stored_book(meta, rows, quote_rows)
        except (ValueError, TypeError, KeyError) as exc:
            raise DatabaseProblem(f"{self.path}: the stored book is not valid ({exc}); the engine will not"
                                  " start on it") from None

    def _stored_book(self, meta: dict[str, str], rows: list[tuple], quote_rows: list[tuple]) -> StoredBook:
        cash, initial = float(meta["cash"]), float(meta["initial_cash"])
        if not (math.isfinite(cash) and math.isfinite(initial)):
            raise ValueError(f"cash {meta['cash']!r} / initial cash {meta['initial_cash']!r} is not a number")
        positions = []
        for code, name, volume, available, cost, base_cost, high, tp, grid_k, open_date, opened_at in rows:
            numbers = (cost, base_cost, high)
            if not (isinstance(volume, int) and isinstance(available, int) and volume > 0 and 0 <= available <= volume
                    and all(isinstance(x, int | float) and math.isfinite(x) and x > 0 for x in numbers)
                    and isinstance(grid_k, int) and grid_k >= 0):
                raise ValueError(f"holding of {code}: volume {volume!r}, available {available!r}, cost {cost!r},"
                                 f" base cost {base_cost!r}, high {high!r}, grid steps {grid_k!r}")
            positions.append(Position(
                code, name, holding(volume, available, cost, base_cost, high, bool(tp), grid_k),
                dt.date.fromisoformat(open_date) if open_date else None, opened_at,
            ))
        quotes = {
            code: Quote(float(price), math.nan if prev is None else float(prev), name, from_local_text(time))
            for code, price, prev, name, time in quote_rows
            if isinstance(price, int | float) and math.isfinite(price) and price > 0
        }
        progress = None
        if meta.get("progress_time"):
            progress = (from_local_text(meta["progress_time"]), meta.get("progress_code", ""))
        day = dt.date.fromisoformat(meta["day"]) if meta.get("day") else None
        state = TradingState(meta.get("trading_state", TradingState.ACTIVE.value))
        return StoredBook(initial, cash, day, progress, positions, quotes, state, meta.get("state_reason", ""))

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

    @staticmethod
    def _insert_trade(con: sqlite3.Connection, trade: TradeRow) -> bool:
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
        return cur.rowcount == 1

    def save_fill(
        self,
        trade: TradeRow,
        position: Position | None,
        other_changed: Iterable[Position],
        other_closed: Iterable[str],
        day: dt.date | None,
        progress: tuple[dt.datetime, str] | None,
    ) -> bool:
        """Record a fill with the book it leads to (its holding, cash, progress and any other holding
        changed since the last save) and its signal executed; False when the trade id is known already."""
        with self._transaction() as con:
            if not self._insert_trade(con, trade):
                return False
            changed = [*other_changed, *([position] if position is not None else [])]
            closed = [*other_closed, *([] if position is not None else [trade.code])]
            self._write_book(con, changed, closed, trade.cash_after, day, progress)
            self._mark_executed(con, trade)
        return True

    @staticmethod
    def _mark_executed(con: sqlite3.Connection, trade: TradeRow) -> None:
        """The signal of ``trade`` (if any) is executed, its message saying the fill."""
        if trade.signal_id:
            con.execute("UPDATE signals SET outcome = ?, message = ? WHERE id = ?",
                        (Outcome.EXECUTED.value, f"filled {trade.volume} at {trade.price:.2f}", trade.signal_id))

    def save_event(self, event: EventRow, position: Position, cash: float, day: dt.date | None) -> bool:
        """Record a corporate action with the holding and cash it leads to, in one transaction; False when
        the event (stock, kind, time) is known already: it was applied before a restart."""
        with self._transaction() as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO events (time, stock_code, kind, volume_before, volume_after, cash, message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (local_text(event.time), event.code, event.kind, int(event.volume_before), int(event.volume_after),
                 float(event.cash), event.message),
            )
            if cur.rowcount != 1:
                return False
            self._write_book(con, [position], [], cash, day, None)
        return True

    def event_known(self, code: str, kind: str, time: dt.datetime) -> bool:
        return bool(self._query("SELECT 1 FROM events WHERE stock_code = ? AND kind = ? AND time = ?",
                                (code, kind, local_text(time))))

    def events_frame(self) -> pd.DataFrame:
        return records.events_frame(self._query)

    def save_quotes(self, quotes: Iterable[tuple[str, Quote]]) -> None:
        """The last price of each stock, so a restart values holdings at it (with its time), not at cost."""
        rows = [(code, float(q.price), None if math.isnan(q.prev_close) else float(q.prev_close), q.name,
                 local_text(q.time)) for code, q in quotes]
        if rows:
            with self._transaction() as con:
                con.executemany("INSERT OR REPLACE INTO quotes VALUES (?, ?, ?, ?, ?)", rows)

    def save_trading_state(self, state: str, reason: str, time: dt.datetime, by: str) -> None:
        with self._transaction() as con:
            con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [("trading_state", state), ("state_reason", reason)])
            con.execute("INSERT INTO state_changes (time, state, reason, by) VALUES (?, ?, ?, ?)",
                        (local_text(time), state, reason, by))

    def trade_known(self, trade_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM trade_records WHERE trade_id = ?", (trade_id,)))

    def save_kept(
        self,
        trades: Sequence[TradeRow],
        changed: Iterable[Position],
        closed: Iterable[str],
        cash: float,
        day: dt.date | None,
        progress: tuple[dt.datetime, str] | None,
    ) -> None:
        """Fills the database refused earlier, with the book as it is now (which already shows them)."""
        with self._transaction() as con:
            for trade in trades:
                self._insert_trade(con, trade)
                self._mark_executed(con, trade)
            self._write_book(con, changed, closed, cash, day, progress)

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
                " the broker sync shows whether it filled' WHERE outcome IN (?, ?)"
                " AND id NOT IN (SELECT signal_id FROM trade_records)",
                (Outcome.INTERRUPTED.value, Outcome.SUBMITTED.value, Outcome.UNKNOWN.value),
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
