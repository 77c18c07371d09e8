"""DuckDB store of daily and minute bars in long format, one row per (stock, bar time), with the
corporate actions and instruments that give those bars their meaning.

Each call opens its own short connection to a file store, so the write lock is held only while a
write runs and another process (another notebook kernel, a backtest) can read the file in
between. An in-memory store keeps one connection, since closing it would lose the data. Every
write validates first and then runs as one transaction: a refused frame or file stores nothing and
loses nothing.

``query()`` returns what a backtest needs without further work: rows sorted by bar time then code,
``stock_code`` and ``stock_name`` as pandas categoricals, prices and volumes float64, times
``datetime64``; ``attrs["actions"]`` and ``attrs["instruments"]`` carry the corporate actions and
instruments of the returned codes (see :mod:`miniqmt_lab.bars.tables`). Adjusted prices for charts and
signals: ``query(adjust="front" | "back")`` (see :mod:`miniqmt_lab.bars.adjust` for which to use when).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from miniqmt_lab.bars.adjust import Adjust, adjust_bars, adjustment_factors, check_adjust
from miniqmt_lab.bars.importing import (
    ImportReport,
    VolumeUnit,
    bar_files,
    load_action_file,
    load_bar_file,
    load_instrument_file,
    merge_skipped,
)
from miniqmt_lab.bars.tables import (
    attached,
    empty_actions,
    empty_instruments,
    validate_actions,
    validate_instruments,
)
from miniqmt_lab.bars.validate import (
    PRICE_COLUMNS,
    AmbiguousDates,
    InvalidActionData,
    InvalidBarData,
    OnInvalid,
    bar_columns,
    time_column,
    validate_bars,
)
from miniqmt_lab.schema import ACTION_COLUMNS, INSTRUMENT_COLUMNS

__all__ = [
    "PRICE_COLUMNS",
    "AmbiguousDates",
    "BarStore",
    "Freq",
    "ImportReport",
    "InvalidActionData",
    "InvalidBarData",
    "bar_columns",
    "validate_bars",
]

Freq = Literal["1d", "1m"]
_BAR_TABLES = {"1d": ("stock_daily_data", "DATE"), "1m": ("stock_minute_data", "TIMESTAMP")}
_ACTIONS = "corporate_actions"
_INSTRUMENTS = "instruments"
_TRADED = "volume > 0 AND open > 0 AND high > 0 AND low > 0 AND close > 0"


def _bar_table(freq: str) -> tuple[str, str, str]:
    """(table, time column, SQL type of the time column) of ``freq``."""
    column = time_column(freq)
    table, sql_type = _BAR_TABLES[freq]
    return table, column, sql_type


def _enum(values: Iterable[str]) -> str:
    return "ENUM(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


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
                for table, sql_type in _BAR_TABLES.values():
                    column = "date" if sql_type == "DATE" else "time"
                    con.execute(
                        f"CREATE TABLE IF NOT EXISTS {table} (stock_code VARCHAR NOT NULL, stock_name VARCHAR,"
                        f" {column} {sql_type} NOT NULL, open DOUBLE, high DOUBLE, low DOUBLE,"
                        f" close DOUBLE, volume DOUBLE, amount DOUBLE, PRIMARY KEY (stock_code, {column}))"
                    )
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {_ACTIONS} (stock_code VARCHAR NOT NULL, ex_date DATE NOT NULL,"
                    " cash_dividend DOUBLE NOT NULL, bonus_ratio DOUBLE NOT NULL, rights_ratio DOUBLE NOT NULL,"
                    " rights_price DOUBLE NOT NULL, PRIMARY KEY (stock_code, ex_date))"
                )
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {_INSTRUMENTS} (stock_code VARCHAR PRIMARY KEY, stock_name VARCHAR,"
                    " listing_date DATE)"
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

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside one transaction: committed when the block ends, rolled back if it raises."""
        with self._connect() as con, _atomic(con):
            yield con

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

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermissionError(f"{self!r} cannot write")

    # -- writing ----------------------------------------------------------------------------------

    def write_frame(self, df: pd.DataFrame, freq: Freq = "1d") -> int:
        """Validate and upsert bars in long format; returns the number of rows written.

        Rows whose (stock_code, bar time) is already stored replace the stored row. Within ``df``
        the last of duplicated keys wins, as if the rows had been written one after another. A row
        without a name keeps the stored row's name; a new row without one takes the stock's name from
        the instruments table, else from its latest named bar (the ST price limit depends on it).
        """
        self._check_writable()
        bars = validate_bars(df, freq)
        with self._transaction() as con:
            return _insert_bars(con, bars, freq)

    def write_actions(self, frame: pd.DataFrame) -> int:
        """Validate and upsert corporate actions (``ACTION_COLUMNS``) on (stock_code, ex_date)."""
        self._check_writable()
        actions = validate_actions(frame)
        with self._transaction() as con:
            return _insert_actions(con, actions)

    def write_instruments(self, frame: pd.DataFrame) -> int:
        """Validate and upsert instruments (``INSTRUMENT_COLUMNS``); a blank name or listing date keeps the
        stored one."""
        self._check_writable()
        instruments = validate_instruments(frame)
        with self._transaction() as con:
            return _insert_instruments(con, instruments)

    def import_csv(
        self,
        path: str | Path,
        freq: Freq = "1d",
        *,
        stock_code: str | None = None,
        date_format: str | None = None,
        volume_unit: VolumeUnit | None = None,
        encoding: str | None = None,
        on_invalid: OnInvalid = "raise",
    ) -> ImportReport:
        """Import one bar file (CSV, or Parquet by its suffix) in any layout of :mod:`~miniqmt_lab.bars.importing`.

        ``stock_code`` names the stock of a per-stock file without a code column (else its file name
        does); ``date_format`` (``'%d/%m/%Y'``...) reads dates that are ambiguous otherwise;
        ``volume_unit`` ('shares' or 'lots') overrides what the layout says; ``on_invalid="skip"``
        leaves out rows whose code is not an A-share stock (B-shares, funds, bonds, indices) and
        reports them. Any other bad value refuses the whole file, naming its line, and stores nothing.
        """
        return self.import_files(
            [path], freq, stock_code=stock_code, date_format=date_format, volume_unit=volume_unit,
            encoding=encoding, on_invalid=on_invalid,
        )

    def import_parquet(
        self, path: str | Path, freq: Freq = "1d", *, stock_code: str | None = None,
        on_invalid: OnInvalid = "raise",
    ) -> ImportReport:
        """Import one Parquet file of bars (read by DuckDB itself: no pyarrow needed); see :meth:`import_csv`."""
        if Path(path).suffix.lower() != ".parquet":
            raise InvalidBarData(f"{path}: a Parquet file must end in .parquet")
        return self.import_files([path], freq, stock_code=stock_code, on_invalid=on_invalid)

    def import_files(
        self,
        paths: str | Path | Iterable[str | Path],
        freq: Freq = "1d",
        *,
        stock_code: str | None = None,
        date_format: str | None = None,
        volume_unit: VolumeUnit | None = None,
        encoding: str | None = None,
        on_invalid: OnInvalid = "raise",
    ) -> ImportReport:
        """Import many bar files, or every .csv/.txt/.parquet file of a folder, as one transaction.

        Each per-stock file takes its code from its name. All files are read and checked before
        anything is written: one bad file refuses the import, naming the file and line, and stores
        nothing. See :meth:`import_csv` for the options.
        """
        self._check_writable()
        files = bar_files(paths)
        frames, skipped = [], []
        for file in files:
            frame, skips = load_bar_file(
                file, freq=freq, stock_code=stock_code, date_format=date_format, volume_unit=volume_unit,
                encoding=encoding, on_invalid=on_invalid,
            )
            frames.append(frame)
            skipped += skips
        bars = frames[0]
        if len(frames) > 1:
            bars = pd.concat(frames, ignore_index=True).drop_duplicates(["stock_code", time_column(freq)], keep="last")
        with self._transaction() as con:
            rows = _insert_bars(con, bars, freq)
        return ImportReport(rows, merge_skipped(skipped), tuple(str(f) for f in files))

    def import_actions_csv(
        self, path: str | Path, *, date_format: str | None = None, encoding: str | None = None,
        on_invalid: OnInvalid = "raise",
    ) -> ImportReport:
        """Import corporate actions from a CSV (the store's columns, tushare's ``dividend`` table or
        xtdata's ``get_divid_factors`` fields; see :func:`~miniqmt_lab.bars.importing.load_action_file`)."""
        self._check_writable()
        actions, skipped = load_action_file(Path(path), date_format=date_format, encoding=encoding,
                                            on_invalid=on_invalid)
        with self._transaction() as con:
            rows = _insert_actions(con, actions)
        return ImportReport(rows, merge_skipped(skipped), (str(path),))

    def import_instruments_csv(
        self, path: str | Path, *, date_format: str | None = None, encoding: str | None = None,
        on_invalid: OnInvalid = "raise",
    ) -> ImportReport:
        """Import instruments (code, name, listing date) from a CSV (the store's columns, tushare's
        ``stock_basic``, xtdata's instrument fields or Chinese headers)."""
        self._check_writable()
        instruments, skipped = load_instrument_file(Path(path), date_format=date_format, encoding=encoding,
                                                    on_invalid=on_invalid)
        with self._transaction() as con:
            rows = _insert_instruments(con, instruments)
        return ImportReport(rows, merge_skipped(skipped), (str(path),))

    # -- reading ----------------------------------------------------------------------------------

    def query(
        self,
        codes: str | Iterable[str] | None = None,
        start: Any = None,
        end: Any = None,
        freq: Freq = "1d",
        adjust: Adjust | None = None,
    ) -> pd.DataFrame:
        """Bars of ``codes`` (all when None) from ``start`` to ``end`` inclusive, sorted by (time, code).

        For minute bars an ``end`` at midnight (a plain date) includes that whole day. ``stock_code`` and
        ``stock_name`` are categoricals whose categories are the codes and names returned.
        ``attrs["actions"]``: the corporate actions of the returned codes with ex-dates from the first to the
        last returned bar; ``attrs["instruments"]``: the instruments of the returned codes.
        ``adjust="front"|"back"`` gives adjusted prices for research (:mod:`miniqmt_lab.bars.adjust`); those
        bars carry no actions, since their prices already include them.
        """
        how = check_adjust(adjust)
        table, t, sql_type = _bar_table(freq)
        where, params = _bar_filter(codes, start, end, freq)
        with self._connect() as con, _atomic(con):
            bars = _fetch_bars(con, table, t, where, params)
            wanted = list(bars["stock_code"].cat.categories)
            first, last = (bars[t].min(), bars[t].max()) if len(bars) else (None, None)
            with _registered(con, "wanted_codes", _code_frame(wanted)):
                actions = _select_actions(con, wanted, first, last)
                instruments = _select_instruments(con, wanted)
                if how is not None and wanted:
                    factors = adjustment_factors(_factor_inputs(con, table, t, sql_type))
                    bars = adjust_bars(bars, factors, how, t)
        bars.attrs = {
            "actions": attached(empty_actions() if how is not None else actions),
            "instruments": attached(instruments),
        }
        if how is not None:
            bars.attrs["adjust"] = how
        return bars

    def actions(self, codes: str | Iterable[str] | None = None, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Stored corporate actions (``ACTION_COLUMNS``) of ``codes`` (all when None) with ex-dates from
        ``start`` to ``end`` inclusive, sorted by code then ex-date."""
        wanted = None if codes is None else _normalize_codes([codes] if isinstance(codes, str) else codes)
        with self._connect() as con, _registered(con, "wanted_codes", _code_frame(wanted or [])):
            return _select_actions(con, wanted, _day(start), _day(end))

    def instruments(self, codes: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Stored instruments (``INSTRUMENT_COLUMNS``) of ``codes`` (all when None), sorted by code."""
        wanted = None if codes is None else _normalize_codes([codes] if isinstance(codes, str) else codes)
        with self._connect() as con, _registered(con, "wanted_codes", _code_frame(wanted or [])):
            return _select_instruments(con, wanted)

    def codes(self, freq: Freq = "1d") -> list[str]:
        table, _, _ = _bar_table(freq)
        with self._connect() as con:
            rows = con.execute(f"SELECT DISTINCT stock_code FROM {table} ORDER BY stock_code").fetchall()
        return [r[0] for r in rows]

    def date_range(self, code: str, freq: Freq = "1d") -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(first, last) bar time stored for ``code``, or None when it has no bars."""
        table, t, _ = _bar_table(freq)
        with self._connect() as con:
            first, last = con.execute(
                f"SELECT min({t}), max({t}) FROM {table} WHERE stock_code = ?",
                [_normalize_codes([code])[0]],
            ).fetchone() or (None, None)
        if first is None:
            return None
        return pd.Timestamp(first), pd.Timestamp(last)


# -- SQL --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _registered(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> Iterator[None]:
    """``frame`` visible to SQL as ``name`` for the block."""
    con.register(name, frame)
    try:
        yield
    finally:
        con.unregister(name)


@contextlib.contextmanager
def _atomic(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction: writes all or nothing; reads see one state of the store (the codes a query lists
    first are the codes it fetches after)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _code_frame(codes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"stock_code": pd.Series(codes, dtype=object)})


def _normalize_codes(codes: Iterable[object]) -> list[str]:
    from miniqmt_lab.market import normalize_code

    return [normalize_code(c) for c in codes]


def _day(value: Any) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value).normalize()


def _bar_filter(codes: str | Iterable[str] | None, start: Any, end: Any, freq: str) -> tuple[str, list[Any]]:
    _, t, _ = _bar_table(freq)
    where: list[str] = []
    params: list[Any] = []
    if codes is not None:
        wanted = _normalize_codes([codes] if isinstance(codes, str) else list(codes))
        if not wanted:
            return " WHERE false", []
        where.append(f"stock_code IN ({', '.join('?' * len(wanted))})")
        params.extend(wanted)
    if start is not None:
        where.append(f"{t} >= ?")
        params.append(_bound(start, freq))
    if end is not None:
        stop = pd.Timestamp(end)
        if freq == "1m" and stop == stop.normalize():
            where.append(f"{t} < ?")
            params.append((stop + pd.Timedelta(days=1)).to_pydatetime())
        else:
            where.append(f"{t} <= ?")
            params.append(_bound(stop, freq))
    return (" WHERE " + " AND ".join(where)) if where else "", params


def _bound(value: Any, freq: str) -> Any:
    stamp = pd.Timestamp(value)
    return stamp.date() if freq == "1d" else stamp.to_pydatetime()


def _fetch_bars(con: duckdb.DuckDBPyConnection, table: str, t: str, where: str, params: list[Any]) -> pd.DataFrame:
    """The bars, sorted by DuckDB. Codes and names travel as the integer positions of DuckDB ENUM types and
    become pandas categoricals here, so no Python string is made per row and no column is copied twice."""
    [(code_list, name_list)] = con.execute(
        f"SELECT list(DISTINCT stock_code), list(DISTINCT stock_name) FROM {table}{where}", params
    ).fetchall()
    codes = sorted(code_list or [])
    names = sorted(name for name in name_list or [] if name is not None)
    numbers = (*PRICE_COLUMNS, "volume", "amount")
    code_id = f"enum_code(CAST(stock_code AS {_enum(codes)}))" if codes else "0"
    name_id = f"enum_code(CAST(stock_name AS {_enum(names)}))" if names else "NULL::INTEGER"
    # the relation API (sql) fills the arrays faster than a prepared statement's result (execute)
    columns = con.sql(
        f"SELECT {code_id} AS code_id, {name_id} AS name_id, {t}, {', '.join(numbers)}"
        f" FROM {table}{where} ORDER BY {t}, code_id",
        params=params or None,
    ).fetchnumpy()
    name_ids = np.ma.filled(np.ma.asarray(columns["name_id"]).astype(np.int64), -1)
    frame = {
        "stock_code": pd.Categorical.from_codes(np.asarray(columns["code_id"], dtype=np.int64), categories=codes),
        "stock_name": pd.Categorical.from_codes(name_ids, categories=names),
        t: np.asarray(columns[t]).astype("datetime64[us]", copy=False),
    }
    for col in numbers:
        values = columns[col]
        frame[col] = np.ma.filled(values.astype(np.float64), np.nan) if np.ma.isMaskedArray(values) else values
    return pd.DataFrame(frame, copy=False)


def _select_actions(
    con: duckdb.DuckDBPyConnection, wanted: list[str] | None, first: Any, last: Any
) -> pd.DataFrame:
    if (wanted is not None and not wanted) or not _has_table(con, _ACTIONS):
        return empty_actions()
    where, params = [], []
    if wanted is not None:
        where.append("stock_code IN (SELECT stock_code FROM wanted_codes)")
    if first is not None:
        where.append("ex_date >= ?")
        params.append(pd.Timestamp(first).date())
    if last is not None:
        where.append("ex_date <= ?")
        params.append(pd.Timestamp(last).date())
    sql = f"SELECT {', '.join(ACTION_COLUMNS)} FROM {_ACTIONS}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    frame = con.execute(sql + " ORDER BY stock_code, ex_date", params).df()
    return empty_actions() if frame.empty else frame.astype({"stock_code": object, "ex_date": "datetime64[us]"})


def _select_instruments(con: duckdb.DuckDBPyConnection, wanted: list[str] | None) -> pd.DataFrame:
    if (wanted is not None and not wanted) or not _has_table(con, _INSTRUMENTS):
        return empty_instruments()
    sql = f"SELECT {', '.join(INSTRUMENT_COLUMNS)} FROM {_INSTRUMENTS}"
    if wanted is not None:
        sql += " WHERE stock_code IN (SELECT stock_code FROM wanted_codes)"
    frame = con.execute(sql + " ORDER BY stock_code").df()
    if frame.empty:
        return empty_instruments()
    return frame.astype({"stock_code": object, "stock_name": object, "listing_date": "datetime64[us]"})


def _factor_inputs(con: duckdb.DuckDBPyConnection, table: str, t: str, sql_type: str) -> pd.DataFrame:
    """The actions of ``wanted_codes`` with each one's previous traded close and its stock's last bar time."""
    if not _has_table(con, _ACTIONS):
        return empty_actions().assign(prev_close=[], last_bar=pd.Series([], dtype="datetime64[us]"))
    # correlated subqueries: DuckDB answers them per action from the (stock_code, time) key, far faster
    # than an ASOF join that sorts every bar of the market
    return con.execute(
        f"SELECT a.*,"
        f" (SELECT close FROM {table} b WHERE b.stock_code = a.stock_code AND b.{t} < CAST(a.ex_date AS {sql_type})"
        f"   AND {_TRADED} ORDER BY b.{t} DESC LIMIT 1) AS prev_close,"
        f" (SELECT max({t}) FROM {table} b WHERE b.stock_code = a.stock_code) AS last_bar"
        f" FROM {_ACTIONS} a WHERE a.stock_code IN (SELECT stock_code FROM wanted_codes)"
    ).df()


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """False for a store written by an older version and opened read-only (no table could be added)."""
    [(count,)] = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchall()
    return bool(count)


def _insert_bars(con: duckdb.DuckDBPyConnection, bars: pd.DataFrame, freq: str) -> int:
    if bars.empty:
        return 0
    table, t, _ = _bar_table(freq)
    columns = bar_columns(freq)
    with _registered(con, "incoming_bars", bars[columns]):
        if bars["stock_name"].isna().any():
            kept = ", ".join(f"i.{c}" for c in columns[2:])
            select = (
                "SELECT i.stock_code,"
                " COALESCE(CAST(i.stock_name AS VARCHAR), s.stock_name, ins.stock_name, latest.stock_name),"
                f" {kept} FROM incoming_bars i"
                f" LEFT JOIN {table} s ON s.stock_code = i.stock_code AND s.{t} = i.{t}"
                f" LEFT JOIN {_INSTRUMENTS} ins ON ins.stock_code = i.stock_code"
                f" LEFT JOIN (SELECT stock_code, arg_max(stock_name, {t}) AS stock_name FROM {table}"
                "   WHERE stock_name IS NOT NULL AND stock_code IN (SELECT stock_code FROM incoming_bars)"
                "   GROUP BY stock_code) latest ON latest.stock_code = i.stock_code"
            )
        else:
            select = "SELECT * FROM incoming_bars"
        con.execute(f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) {select}")
    return len(bars)


def _insert_actions(con: duckdb.DuckDBPyConnection, actions: pd.DataFrame) -> int:
    if actions.empty:
        return 0
    with _registered(con, "incoming_actions", actions):
        con.execute(f"INSERT OR REPLACE INTO {_ACTIONS} ({', '.join(ACTION_COLUMNS)}) SELECT * FROM incoming_actions")
    return len(actions)


def _insert_instruments(con: duckdb.DuckDBPyConnection, instruments: pd.DataFrame) -> int:
    if instruments.empty:
        return 0
    with _registered(con, "incoming_instruments", instruments):
        con.execute(
            f"INSERT INTO {_INSTRUMENTS} ({', '.join(INSTRUMENT_COLUMNS)})"
            " SELECT stock_code, CAST(stock_name AS VARCHAR), CAST(listing_date AS DATE) FROM incoming_instruments"
            " ON CONFLICT (stock_code) DO UPDATE SET"
            f" stock_name = COALESCE(excluded.stock_name, {_INSTRUMENTS}.stock_name),"
            f" listing_date = COALESCE(excluded.listing_date, {_INSTRUMENTS}.listing_date)"
        )
    return len(instruments)
