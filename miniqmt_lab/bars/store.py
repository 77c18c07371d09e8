"""DuckDB store of daily and minute bars in long format, one row per (stock, bar time).

Each call opens its own short connection to a file store, so the write lock is held only while a
write runs and another process (another notebook kernel, a backtest) can read the file in
between. An in-memory store keeps one connection, since closing it would lose the data.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from miniqmt_lab.errors import MiniQmtError

Freq = Literal["1d", "1m"]
PRICE_COLUMNS = ("open", "high", "low", "close")
_EARLIEST_BAR = pd.Timestamp("1990-12-19")


class InvalidBarData(MiniQmtError, ValueError):
    """Bars that cannot be stored: a missing column or an impossible value; the message names the row."""


@dataclass(frozen=True)
class _Table:
    name: str
    time_column: str
    sql_type: str


_TABLES: dict[str, _Table] = {
    "1d": _Table("stock_daily_data", "date", "DATE"),
    "1m": _Table("stock_minute_data", "time", "TIMESTAMP"),
}


def _table(freq: str) -> _Table:
    try:
        return _TABLES[freq]
    except KeyError:
        raise ValueError(f"freq must be one of {sorted(_TABLES)}, got {freq!r}") from None


def bar_columns(freq: str = "1d") -> list[str]:
    """Column order of the store's long format for ``freq``."""
    t = _table(freq)
    return ["stock_code", "stock_name", t.time_column, *PRICE_COLUMNS, "volume", "amount"]


class BarStore:
    """Bars in a DuckDB file (or ``":memory:"``) with upsert semantics on (stock_code, bar time)."""

    def __init__(self, path: str | Path, *, read_only: bool = False, lock_timeout: float = 10.0) -> None:
        self.path = str(path)
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        self._closed = False
        self._memory: duckdb.DuckDBPyConnection | None = None
        if self.path == ":memory:":
            if read_only:
                raise ValueError("an in-memory bar store cannot be read-only: it would always be empty")
            self._memory = duckdb.connect(":memory:")
        elif read_only and not Path(self.path).exists():
            raise FileNotFoundError(f"no bar store at {self.path}")
        if not read_only:
            with self._connect() as con:
                for t in _TABLES.values():
                    con.execute(
                        f"CREATE TABLE IF NOT EXISTS {t.name} (stock_code VARCHAR NOT NULL, stock_name VARCHAR,"
                        f" {t.time_column} {t.sql_type} NOT NULL, open DOUBLE, high DOUBLE, low DOUBLE,"
                        f" close DOUBLE, volume DOUBLE, amount DOUBLE, PRIMARY KEY (stock_code, {t.time_column}))"
                    )

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"BarStore({self.path!r}, {mode})"

    def __enter__(self) -> BarStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None
        self._closed = True

    @contextlib.contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._memory is not None:
            yield self._memory
            return
        con = self._open_waiting_for_lock()
        try:
            yield con
        finally:
            con.close()

    def _open_waiting_for_lock(self) -> duckdb.DuckDBPyConnection:
        """Another process holding the file lock is a short write or read; wait for it, within limits."""
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                return duckdb.connect(self.path, read_only=self.read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    # -- writing ----------------------------------------------------------------------------------

    def write_frame(self, df: pd.DataFrame, freq: Freq = "1d") -> int:
        """Validate and upsert bars in long format; returns the number of rows written.

        Rows whose (stock_code, bar time) is already stored replace the stored row. Within ``df``
        the last of duplicated keys wins, as if the rows had been written one after another.
        """
        if self.read_only:
            raise PermissionError(f"{self!r} cannot write")
        t = _table(freq)
        bars = validate_bars(df, freq)
        if bars.empty:
            return 0
        with self._connect() as con:
            con.register("incoming_bars", bars)
            try:
                con.execute(f"INSERT OR REPLACE INTO {t.name} ({', '.join(bars.columns)}) SELECT * FROM incoming_bars")
            finally:
                con.unregister("incoming_bars")
        return len(bars)

    def import_csv(self, path: str | Path, freq: Freq = "1d") -> int:
        # codes as text: a bare 000001 must not become the integer 1
        df = pd.read_csv(path, dtype={"stock_code": str})
        return self.write_frame(df, freq)

    def import_parquet(self, path: str | Path, freq: Freq = "1d") -> int:
        # duckdb reads Parquet itself, so no pyarrow dependency is needed
        with contextlib.closing(duckdb.connect(":memory:")) as con:
            df = con.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
        return self.write_frame(df, freq)

    # -- reading ----------------------------------------------------------------------------------

    def query(
        self,
        codes: str | Iterable[str] | None = None,
        start: Any = None,
        end: Any = None,
        freq: Freq = "1d",
    ) -> pd.DataFrame:
        """Bars of ``codes`` (all when None) from ``start`` to ``end`` inclusive, sorted by (time, code).

        For minute bars an ``end`` at midnight (a plain date) includes that whole day.
        """
        t = _table(freq)
        where: list[str] = []
        params: list[Any] = []
        if codes is not None:
            wanted = _normalize_codes([codes] if isinstance(codes, str) else list(codes))
            if not wanted:
                return _empty_frame(freq)
            where.append(f"stock_code IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if start is not None:
            where.append(f"{t.time_column} >= ?")
            params.append(_bound(start, freq))
        if end is not None:
            stop = pd.Timestamp(end)
            if freq == "1m" and stop == stop.normalize():
                where.append(f"{t.time_column} < ?")
                params.append((stop + pd.Timedelta(days=1)).to_pydatetime())
            else:
                where.append(f"{t.time_column} <= ?")
                params.append(_bound(stop, freq))
        sql = f"SELECT {', '.join(bar_columns(freq))} FROM {t.name}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {t.time_column}, stock_code"
        with self._connect() as con:
            return con.execute(sql, params).df()

    def codes(self, freq: Freq = "1d") -> list[str]:
        t = _table(freq)
        with self._connect() as con:
            rows = con.execute(f"SELECT DISTINCT stock_code FROM {t.name} ORDER BY stock_code").fetchall()
        return [r[0] for r in rows]

    def date_range(self, code: str, freq: Freq = "1d") -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(first, last) bar time stored for ``code``, or None when it has no bars."""
        t = _table(freq)
        with self._connect() as con:
            first, last = con.execute(
                f"SELECT min({t.time_column}), max({t.time_column}) FROM {t.name} WHERE stock_code = ?",
                [_normalize_codes([code])[0]],
            ).fetchone() or (None, None)
        if first is None:
            return None
        return pd.Timestamp(first), pd.Timestamp(last)


def _bound(value: Any, freq: str) -> Any:
    stamp = pd.Timestamp(value)
    return stamp.date() if freq == "1d" else stamp.to_pydatetime()


def _empty_frame(freq: str) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in bar_columns(freq)})


def _normalize_codes(codes: Iterable[object]) -> list[str]:
    from miniqmt_lab.market import normalize_code

    return [normalize_code(c) for c in codes]


def validate_bars(df: pd.DataFrame, freq: str = "1d") -> pd.DataFrame:
    """A clean copy of ``df`` in the store's column order, or :class:`InvalidBarData`.

    Codes are normalized (``600000`` -> ``600000.SH``); a bad code raises ``InvalidStockCode``.
    ``stock_name`` and ``amount`` are optional, every other column is required.
    """
    t = _table(freq)
    columns = bar_columns(freq)
    optional = {"stock_name", "amount"}
    missing = [c for c in columns if c not in df.columns and c not in optional]
    if missing:
        raise InvalidBarData(
            f"bars lack column(s) {missing}; {freq} bars have columns {columns} (stock_name and amount may be left out)"
        )
    out = pd.DataFrame(index=range(len(df)))
    raw_codes = df["stock_code"].to_numpy(dtype=object)
    unique = pd.unique(raw_codes)
    mapping = dict(zip(unique, _normalize_codes(unique), strict=True))
    out["stock_code"] = [mapping[c] for c in raw_codes]
    names = df["stock_name"].to_numpy(dtype=object) if "stock_name" in df.columns else np.full(len(df), None)
    out["stock_name"] = np.where(pd.isna(names), None, names)
    out[t.time_column] = _parse_times(df[t.time_column], freq)
    for col in (*PRICE_COLUMNS, "volume", "amount"):
        values = df[col] if col in df.columns else pd.Series(np.nan, index=df.index)
        try:
            out[col] = pd.to_numeric(values).to_numpy(dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise InvalidBarData(f"column {col!r} is not numeric: {exc}") from None
    _check_values(out, t.time_column)
    return out.drop_duplicates(["stock_code", t.time_column], keep="last").reset_index(drop=True)


def _parse_times(values: pd.Series, freq: str) -> np.ndarray:
    try:
        if pd.api.types.is_integer_dtype(values):
            # vendors write 20240102 as a number; pandas would read it as nanoseconds since 1970
            stamps = pd.to_datetime(values.astype(str), format="%Y%m%d" if freq == "1d" else "%Y%m%d%H%M%S")
        else:
            stamps = pd.to_datetime(values)
    except (ValueError, TypeError) as exc:
        raise InvalidBarData(f"bar times cannot be parsed: {exc}") from None
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    if stamps.isna().any():
        raise InvalidBarData(f"bar time is missing in row {int(np.flatnonzero(stamps.isna())[0])}")
    if (stamps < _EARLIEST_BAR).any():
        raise InvalidBarData(f"bar time {stamps.min()} is before the A-share market opened ({_EARLIEST_BAR.date()})")
    if freq == "1d":
        stamps = stamps.dt.normalize()
    return stamps.to_numpy(dtype="datetime64[us]")


def _check_values(bars: pd.DataFrame, time_column: str) -> None:
    o, h, lo, c = (bars[col].to_numpy() for col in PRICE_COLUMNS)
    volume, amount = bars["volume"].to_numpy(), bars["amount"].to_numpy()
    with np.errstate(invalid="ignore"):
        checks = [
            (~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)), "a price is missing or not finite"),
            ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), "a price is not positive"),
            (h < lo, "high < low"),
            ((o < lo) | (o > h) | (c < lo) | (c > h), "open or close outside [low, high]"),
            (~np.isfinite(volume) | (volume < 0), "volume is missing or negative"),
            (amount < 0, "amount is negative"),
        ]
    for bad, problem in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            row = bars.iloc[i]
            values = ", ".join(f"{col}={row[col]}" for col in (*PRICE_COLUMNS, "volume", "amount"))
            raise InvalidBarData(
                f"{problem} in {int(bad.sum())} row(s); first is row {i} "
                f"({row['stock_code']} {pd.Timestamp(row[time_column])}: {values})"
            )
