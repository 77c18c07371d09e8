"""Incremental reads of an engine database: what came after a cursor, so pollers lose nothing.

Every record has a ``seq`` (its place in the order of writing). Trades never change once written, so
the next cursor of a trades read is the last ``seq`` read. A signal's outcome moves on after it is
written (pending -> submitted -> executed ...), so a signals read hands back a cursor just before the
first signal not yet settled: the next read returns it again until its outcome is final, and the
reader replaces rows by ``id``. Reads go through short read-only connections, never through the
engine's own connection, so a poller never waits on the engine's store lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from miniqmt_lab.records import ISSUE_COLUMNS, Query
from miniqmt_lab.schema import SIGNAL_COLUMNS, TRADE_COLUMNS, Outcome
from miniqmt_lab.service.wire import record_rows

TRADE_FIELDS = ("seq", *TRADE_COLUMNS)
SIGNAL_FIELDS = ("seq", *SIGNAL_COLUMNS)
ISSUE_FIELDS = ("seq", *ISSUE_COLUMNS)
UNSETTLED = (Outcome.PENDING.value, Outcome.SUBMITTED.value, Outcome.UNKNOWN.value)
"""Outcomes that may still change; every other outcome of a signal is final."""
MAX_LIMIT = 5000


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    next: int  # the cursor of the next poll: the last seq read, or just before the first unsettled signal
    last: int  # the last seq read (``since`` when nothing was)
    more: bool  # the read stopped at its limit: read on from ``last`` at once


def _fetch(query: Query, table: str, fields: tuple[str, ...], since: int, limit: int) -> list[tuple]:
    sql = f"SELECT {', '.join(fields)} FROM {table} WHERE seq > ? ORDER BY seq LIMIT ?"
    return query(sql, (int(since), int(limit)))


def trades_after(query: Query, since: int, limit: int = 1000) -> Page:
    """Fills written after ``since`` (``seq`` first, then ``TRADE_COLUMNS``)."""
    rows = _fetch(query, "trade_records", TRADE_FIELDS, since, limit)
    last = rows[-1][0] if rows else int(since)
    return Page(record_rows(TRADE_FIELDS, rows), last, last, len(rows) >= limit)


def signals_after(query: Query, since: int, limit: int = 1000) -> Page:
    """Signals written after ``since``; ``next`` stays before the first one whose outcome may change."""
    rows = _fetch(query, "signals", SIGNAL_FIELDS, since, limit)
    outcome = SIGNAL_FIELDS.index("outcome")
    unsettled = [row[0] for row in rows if row[outcome] in UNSETTLED]
    last = rows[-1][0] if rows else int(since)
    cursor = unsettled[0] - 1 if unsettled else last
    return Page(record_rows(SIGNAL_FIELDS, rows), cursor, last, len(rows) >= limit)


def issues_after(query: Query, since: int, limit: int = 1000) -> Page:
    """Problems the engine recorded after ``since`` (bad ticks, thread restarts, broker disagreements)."""
    rows = _fetch(query, "issues", ISSUE_FIELDS, since, limit)
    last = rows[-1][0] if rows else int(since)
    return Page(record_rows(ISSUE_FIELDS, rows), last, last, len(rows) >= limit)


def last_seq(query: Query, table: str) -> int:
    rows = query(f"SELECT COALESCE(MAX(seq), 0) FROM {table}", ())
    return int(rows[0][0])


__all__ = ["MAX_LIMIT", "SIGNAL_FIELDS", "TRADE_FIELDS", "UNSETTLED", "Page", "issues_after", "last_seq",
           "signals_after", "trades_after"]
