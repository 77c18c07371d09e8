"""The per-session tick journal: every tick the monitor evaluated, so a session can be replayed
(``ReplayFeed.from_journal``) or backtested (``replay_journal``); read it with
:func:`miniqmt_lab.records.read_journal`.

One SQLite file per engine start at ``<database folder>/journal/<mode>-<YYYYmmdd-HHMMSS>-<id>.sqlite``
(Asia/Shanghai time). A tick refused as bad data keeps its price and gets a ``note`` saying why.
When an engine starts, journals older than ``paths.journal_compact_days`` are compacted (the SQLite file
gzipped to ``<name>.sqlite.gz``, 7-8 times smaller on replayed sessions; :func:`~miniqmt_lab.records.read_journal`
reads either) and journals older than ``paths.journal_retention_days`` are deleted.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from miniqmt_lab.fsutil import owner_only

log = logging.getLogger(__name__)

JournalRow = tuple[str, str, str, float | None, int, float | None, str]


class Journal:
    """Append-only record of one session's ticks.

    Rows are buffered and written about once a second (and at close): a crash may lose the last
    second of the journal, never a trade record.
    """

    FLUSH_SECONDS = 1.0
    FLUSH_ROWS = 20_000

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS ticks (time TEXT NOT NULL, stamp TEXT NOT NULL, stock_code TEXT NOT NULL,"
            " price REAL, bar_close INTEGER NOT NULL, prev_close REAL, note TEXT NOT NULL DEFAULT '')"
        )
        owner_only(self.path)
        self._buffer: list[JournalRow] = []
        self._flushed = time.monotonic()
        self._closed = False

    def append(self, rows: Sequence[JournalRow]) -> None:
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
            try:
                self._con.executemany("INSERT INTO ticks VALUES (?, ?, ?, ?, ?, ?, ?)", self._buffer)
            except BaseException:
                self._con.execute("ROLLBACK")
                raise  # the rows stay buffered: the next flush tries again
            self._con.execute("COMMIT")
            self._buffer = []
        self._flushed = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._flush()
            except sqlite3.Error as exc:
                log.error("journal %s: the last %d ticks could not be written: %s", self.path, len(self._buffer), exc)
            finally:
                self._con.close()


COMPACTED = ".gz"
"""Suffix of a compacted journal: ``<name>.sqlite.gz``."""


def _own_journals(folder: Path, pattern: str) -> list[Path]:
    """This engine's session journals in ``folder`` (``paper-*`` / ``live-*``), never another program's."""
    if not folder.is_dir():
        return []
    return [f for f in sorted(folder.glob(pattern)) if f.name.startswith(("paper-", "live-"))]


def compact_journals(folder: Path, compact_days: int, now: dt.datetime) -> list[Path]:
    """Gzip this engine's session journals older than ``compact_days`` to ``<name>.sqlite.gz`` (written
    aside, synced, then renamed; the SQLite file deleted only after); returns the compacted files.

    A journal's age is that of its newest part (an engine writing it touches the ``-wal`` file every
    second); what an old ``-wal`` file still holds (a crash) is checkpointed into the file first. A
    journal that cannot be read or written is left as it is, with a warning."""
    cutoff = now.timestamp() - compact_days * 86400
    compacted = []
    for file in _own_journals(folder, "*.sqlite"):
        target = file.with_name(file.name + COMPACTED)
        partial = file.with_name(file.name + COMPACTED + ".partial")
        wal, shm = Path(f"{file}-wal"), Path(f"{file}-shm")
        try:
            age = file.stat()
            if max(age.st_mtime, wal.stat().st_mtime if wal.exists() else 0.0) >= cutoff:
                continue
            if wal.exists() and wal.stat().st_size > 0:
                con = sqlite3.connect(file, timeout=1.0)
                try:
                    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    con.close()
            with open(file, "rb") as source, open(partial, "wb") as raw:
                with gzip.GzipFile(filename=file.name, mode="wb", fileobj=raw, compresslevel=6) as packed:
                    shutil.copyfileobj(source, packed, 1 << 20)
                raw.flush()
                os.fsync(raw.fileno())
            owner_only(partial)
            os.utime(partial, (age.st_atime, age.st_mtime))  # its age stays the session's
            os.replace(partial, target)
            for part in (file, wal, shm):
                part.unlink(missing_ok=True)
            compacted.append(target)
        except (OSError, sqlite3.Error) as exc:
            partial.unlink(missing_ok=True)
            log.warning("could not compact journal %s: %s", file, exc)
    if compacted:
        log.info("compacted %d session journal(s) older than %d days in %s", len(compacted), compact_days, folder)
    return compacted


def prune_journals(folder: Path, retention_days: int, now: dt.datetime) -> list[Path]:
    """Delete this engine's session journals (compacted or not) older than ``retention_days`` (only
    ``paper-*`` and ``live-*`` files of ``folder``, never another program's); returns what was deleted."""
    cutoff = now.timestamp() - retention_days * 86400
    removed = []
    for file in _own_journals(folder, "*.sqlite") + _own_journals(folder, "*.sqlite" + COMPACTED):
        try:
            if file.stat().st_mtime < cutoff:
                for part in (file, Path(f"{file}-wal"), Path(f"{file}-shm")):
                    part.unlink(missing_ok=True)
                removed.append(file)
        except OSError as exc:
            log.warning("could not delete old journal %s: %s", file, exc)
    if removed:
        log.info("deleted %d session journal(s) older than %d days from %s", len(removed), retention_days, folder)
    return removed


__all__ = ["COMPACTED", "Journal", "JournalRow", "compact_journals", "prune_journals"]
