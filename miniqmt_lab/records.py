"""Reading the engine's records without an engine: the database's trades, signals and issues, and
session journals, through read-only SQLite connections.

The backtest (``replay_journal``), the replay panel and the web service read records here; the
engine writes them (:mod:`miniqmt_lab.engine.store`) and uses the same text forms of time. Times
are stored as naive Asia/Shanghai local text with microseconds, so text order is time order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from miniqmt_lab.schema import EVENT_COLUMNS, JOURNAL_COLUMNS, SIGNAL_COLUMNS, TRADE_COLUMNS

SHANGHAI = ZoneInfo("Asia/Shanghai")
LEDGER_COLUMNS = ("seq", "trade_id", "order_id", "signal_id", *TRADE_COLUMNS, "realised", "cash_after")
ISSUE_COLUMNS = ("time", "kind", "stock_code", "message")
Query = Callable[[str, Sequence[object]], list[tuple]]


def local_text(moment: dt.datetime) -> str:
    """Naive Shanghai local time as stored text (an aware time is converted, a naive one is Shanghai's)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(SHANGHAI)
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def from_local_text(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def read_only_uri(path: str | Path) -> str:
    """A read-only SQLite URI of ``path``; '#', '?' and '%' in a folder name are escaped."""
    return Path(path).resolve().as_uri() + "?mode=ro"


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"no database at {file}")
    return sqlite3.connect(read_only_uri(file), uri=True, timeout=10.0)


def read_only_query(path: str | Path) -> Query:
    """A query function over a short read-only connection per call."""

    def query(sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with contextlib.closing(connect_read_only(path)) as con:
            return con.execute(sql, params).fetchall()

    return query


def records_frame(
    rows: list[tuple],
    columns: Sequence[str],
    *,
    times: Sequence[str] = (),
    ints: Sequence[str] = (),
    floats: Sequence[str] = (),
) -> pd.DataFrame:
    """Rows as a frame: ``times`` as naive datetime64[us], ``ints`` int64, ``floats`` float64 (None: NaN)."""
    data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
    out: dict[str, object] = {}
    for c in columns:
        if c in times:
            out[c] = pd.to_datetime(pd.Series(data[c], dtype=object)).to_numpy(dtype="datetime64[us]")
        elif c in ints:
            out[c] = np.asarray(data[c], dtype=np.int64)
        elif c in floats:
            out[c] = np.asarray([np.nan if v is None else v for v in data[c]], dtype=np.float64)
        else:
            out[c] = np.asarray(data[c], dtype=object)
    return pd.DataFrame(out, columns=list(columns))


# -- the engine database ------------------------------------------------------------------------------


def trades_frame(query: Query) -> pd.DataFrame:
    """Every fill, columns ``TRADE_COLUMNS``, by time then processing order."""
    rows = query(f"SELECT {', '.join(TRADE_COLUMNS)} FROM trade_records ORDER BY time, seq", ())
    return records_frame(rows, TRADE_COLUMNS, times=("time",), ints=("volume",),
                         floats=("price", "amount", "commission"))


def ledger_frame(query: Query) -> pd.DataFrame:
    """Trades with their ids, realised P&L and cash after, in processing order (audits, restore)."""
    rows = query(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM trade_records ORDER BY seq", ())
    return records_frame(rows, LEDGER_COLUMNS, times=("time",), ints=("seq", "volume"),
                         floats=("price", "amount", "commission", "realised", "cash_after"))


def signals_frame(query: Query) -> pd.DataFrame:
    rows = query(f"SELECT {', '.join(SIGNAL_COLUMNS)} FROM signals ORDER BY seq", ())
    return records_frame(rows, SIGNAL_COLUMNS, times=("time",), ints=("volume",), floats=("price",))


def events_frame(query: Query) -> pd.DataFrame:
    """Corporate actions applied to holdings (``EVENT_COLUMNS``), in the order they were applied."""
    rows = query(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY seq", ())
    return records_frame(rows, EVENT_COLUMNS, times=("time",), ints=("volume_before", "volume_after"),
                         floats=("cash",))


def issues_frame(query: Query) -> pd.DataFrame:
    rows = query(f"SELECT {', '.join(ISSUE_COLUMNS)} FROM issues ORDER BY seq", ())
    return records_frame(rows, ISSUE_COLUMNS, times=("time",))


# -- session journals -------------------------------------------------------------------------------------


def read_journal(path: str | Path) -> pd.DataFrame:
    """A session journal as a frame: ``time`` (tick time) and ``stamp`` (the time a trade on the tick
    records), both naive Asia/Shanghai datetime64; ``stock_code``; ``price`` (NaN where the feed sent
    a bad one); ``bar_close`` (the tick closes its bar: entries act here); ``prev_close`` (base price
    of the day's price limits, NaN when unknown). Rows in tick order. ``path`` is a journal's SQLite
    file or its compacted ``.sqlite.gz``.
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"no journal at {file}")
    if file.suffix == ".gz":  # a compacted journal: read from an owner-only unpacked copy
        with tempfile.TemporaryDirectory(prefix="miniqmt-journal-") as folder:
            unpacked = Path(folder) / file.name.removesuffix(".gz")
            with gzip.open(file, "rb") as packed, open(unpacked, "wb") as out:
                shutil.copyfileobj(packed, out, 1 << 20)
            return read_journal(unpacked)
    rows = read_only_query(file)(f"SELECT {', '.join(JOURNAL_COLUMNS)} FROM ticks ORDER BY rowid", ())
    frame = records_frame(rows, JOURNAL_COLUMNS, times=("time", "stamp"), floats=("price", "prev_close"))
    frame["bar_close"] = frame["bar_close"].astype(bool)
    return frame


__all__ = [
    "ISSUE_COLUMNS",
    "LEDGER_COLUMNS",
    "connect_read_only",
    "from_local_text",
    "issues_frame",
    "ledger_frame",
    "local_text",
    "read_journal",
    "read_only_query",
    "read_only_uri",
    "records_frame",
    "signals_frame",
    "trades_frame",
]
