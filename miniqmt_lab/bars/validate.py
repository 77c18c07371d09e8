"""Checking bars before they are stored: codes, dates that cannot be misread, prices, suspension rows.

Every refusal is one typed error (:class:`InvalidBarData` or a subclass) whose message names the row,
and the file when there is one. Nothing here touches a store: the store validates first and writes after,
so a refused frame or file leaves what is stored as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from miniqmt_lab.errors import InvalidStockCode, MiniQmtError

OnInvalid = Literal["raise", "skip"]
PRICE_COLUMNS = ("open", "high", "low", "close")
EARLIEST_BAR = pd.Timestamp("1990-12-19")
TIME_COLUMNS = {"1d": "date", "1m": "time"}


class InvalidBarData(MiniQmtError, ValueError):
    """Bars that cannot be stored: a missing column or an impossible value; the message names the row."""


class AmbiguousDates(InvalidBarData):
    """Dates that could be read two ways (dd/mm/yyyy or mm/dd/yyyy); the message names ``date_format=``."""


class InvalidActionData(InvalidBarData):
    """Corporate actions that cannot be stored or applied; the message names the action."""


def time_column(freq: str) -> str:
    try:
        return TIME_COLUMNS[freq]
    except KeyError:
        raise ValueError(f"freq must be one of {sorted(TIME_COLUMNS)}, got {freq!r}") from None


def bar_columns(freq: str = "1d") -> list[str]:
    """Column order of the store's long format for ``freq``."""
    return ["stock_code", "stock_name", time_column(freq), *PRICE_COLUMNS, "volume", "amount"]


def row_name(label: object, source: str | None) -> str:
    """How a message names a row: its index label, or its line in ``source`` (a file read with a header line)."""
    if source is not None and isinstance(label, int | np.integer):
        return f"{source} line {int(label) + 2}"
    return f"row {label}" if source is None else f"{source} row {label}"


def shown(value: object) -> str:
    """A cell as a message shows it: text quoted, numbers plain (``-0.1``, not ``np.float64(-0.1)``)."""
    return repr(value) if isinstance(value, str) else str(value)


def prefixed(source: str | None, message: str) -> str:
    return message if source is None else f"{source}: {message}"


# -- stock codes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedRows:
    """Rows an import left out: why, how many, and up to five of their codes as the file wrote them."""

    reason: str
    rows: int
    codes: tuple[str, ...]


def skip_reason(exc: InvalidStockCode, raw: str) -> str:
    """The reason a code was refused, with the code itself taken out so that like codes group together."""
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str) and kind:
        return kind
    message = str(exc).replace(repr(raw), "<code>").replace(raw, "<code>")
    return re.sub(r"\b[0-9]{6}\b", "<code>", message)


def normalize_codes(
    values: pd.Series, *, source: str | None = None, on_invalid: OnInvalid = "raise"
) -> tuple[np.ndarray, np.ndarray, list[SkippedRows]]:
    """(normalized codes, mask of rows kept, skipped groups) for a column of stock codes.

    Each distinct code is checked once. With ``on_invalid="raise"`` the first refused code raises
    :class:`InvalidStockCode` naming its row; with ``"skip"`` its rows are left out and reported.
    """
    from miniqmt_lab.market import normalize_code

    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip', got {on_invalid!r}")
    raw = values.to_numpy(dtype=object)
    position, uniques = pd.factorize(raw, use_na_sentinel=True)
    if (position < 0).any():
        first = int(np.flatnonzero(position < 0)[0])
        raise InvalidStockCode(f"{row_name(values.index[first], source)}: the stock code is missing")
    normalized = np.empty(len(uniques), dtype=object)
    refused: dict[str, list[int]] = {}
    for i, code in enumerate(uniques):
        text = code if isinstance(code, str) else str(code)
        try:
            normalized[i] = normalize_code(text)
        except InvalidStockCode as exc:
            if on_invalid == "raise":
                first = int(np.flatnonzero(position == i)[0])
                raise InvalidStockCode(f"{row_name(values.index[first], source)}: {exc}") from None
            normalized[i] = None
            refused.setdefault(skip_reason(exc, text), []).append(i)
    keep = np.ones(len(raw), dtype=bool)
    skipped = []
    for reason, bad in refused.items():
        rows = np.isin(position, bad)
        keep &= ~rows
        examples = tuple(str(uniques[i]) for i in bad[:5])
        skipped.append(SkippedRows(reason, int(rows.sum()), examples))
    return normalized[position], keep, skipped


# -- dates ----------------------------------------------------------------------------------------------

_TIME = r"(?:[ T]([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(\.[0-9]+)?)?)?"
_YEAR_FIRST = re.compile(
    rf"^([0-9]{{4}})[-/.年]([0-9]{{1,2}})[-/.月]([0-9]{{1,2}})日?{_TIME}(Z|[+-][0-9]{{2}}:?[0-9]{{2}})?$"
)
_YEAR_LAST = re.compile(rf"^([0-9]{{1,2}})([-/.])([0-9]{{1,2}})\2([0-9]{{4}}){_TIME}$")
_COMPACT = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
_ZONE = re.compile(r"(?:Z|[+-][0-9]{2}:?[0-9]{2})$")


def _iso(year: str, month: str, day: str, hour: str | None, minute: str | None, second: str | None,
         fraction: str | None, zone: str | None = None) -> str:
    text = f"{year}-{int(month):02d}-{int(day):02d}"
    if hour is not None:
        text += f" {int(hour):02d}:{minute}:{second or '00'}{fraction or ''}"
    return text + (zone or "")


def _year_last_order(matches: list[re.Match[str]], source: str | None, sample: str) -> str:
    """'day' or 'month': which field comes first in dd/mm/yyyy or mm/dd/yyyy dates, if the dates say so."""
    first = max(int(m.group(1)) for m in matches)
    second = max(int(m.group(3)) for m in matches)
    sep = matches[0].group(2)
    formats = f"date_format='%d{sep}%m{sep}%Y' (day first) or date_format='%m{sep}%d{sep}%Y' (month first)"
    if first <= 12 and second <= 12:
        raise AmbiguousDates(prefixed(
            source,
            f"dates like {sample!r} can be read day-first or month-first (no day above 12 tells which):"
            f" pass {formats}",
        ))
    if first > 12 and second > 12:
        raise InvalidBarData(prefixed(source, f"dates like {sample!r} are neither day-first nor month-first"))
    return "day" if first > 12 else "month"


def _parse_text_dates(uniques: np.ndarray, source: str | None) -> pd.DatetimeIndex:
    canonical: list[str | None] = [None] * len(uniques)
    compact: dict[str, list[int]] = {}
    year_last: list[tuple[int, re.Match[str]]] = []
    unread: list[int] = []
    for i, value in enumerate(uniques):
        text = str(value).strip()
        if text.isdigit() and len(text) in _COMPACT:
            compact.setdefault(_COMPACT[len(text)], []).append(i)
        elif m := _YEAR_FIRST.match(text):
            canonical[i] = _iso(*m.groups())
        elif m := _YEAR_LAST.match(text):
            year_last.append((i, m))
        else:
            unread.append(i)
    if unread:
        raise InvalidBarData(prefixed(
            source,
            f"cannot read the date {str(uniques[unread[0]])!r}: write dates as 2024-01-02 or 20240102,"
            " or pass date_format= (for example date_format='%d/%m/%Y')",
        ))
    if year_last:
        order = _year_last_order([m for _, m in year_last], source, year_last[0][1].group(0))
        for i, m in year_last:
            day, month = (m.group(1), m.group(3)) if order == "day" else (m.group(3), m.group(1))
            canonical[i] = _iso(m.group(4), month, day, *m.groups()[4:8])
    stamps = np.full(len(uniques), np.datetime64("NaT"), dtype="datetime64[us]")
    for fmt, rows in compact.items():
        texts = pd.Index([str(uniques[i]).strip() for i in rows])
        stamps[rows] = pd.to_datetime(texts, format=fmt, errors="coerce").to_numpy(dtype="datetime64[us]")
    iso_rows = [i for i, text in enumerate(canonical) if text is not None]
    if iso_rows:
        texts = [canonical[i] or "" for i in iso_rows]
        zoned = [bool(_ZONE.search(t)) for t in texts]
        if any(zoned) and not all(zoned):
            raise InvalidBarData(prefixed(source, "some times carry a time zone and others do not"))
        parsed = pd.DatetimeIndex(pd.to_datetime(pd.Index(texts), format="ISO8601", errors="coerce", utc=all(zoned)))
        if all(zoned):
            parsed = parsed.tz_convert("Asia/Shanghai").tz_localize(None)
        stamps[iso_rows] = parsed.to_numpy(dtype="datetime64[us]")
    return pd.DatetimeIndex(stamps)


def parse_dates(
    values: pd.Series,
    *,
    freq: str = "1d",
    what: str = "bar time",
    source: str | None = None,
    date_format: str | None = None,
    allow_missing: bool = False,
) -> np.ndarray:
    """``datetime64[us]`` of ``values``, read so that no date can be misread.

    ISO (``2024-01-02``, ``2024/1/2``, ``2024-01-02 09:31``, with or without a zone), ``YYYYMMDD`` (text
    or integer) and ``2024年1月2日`` are read directly; ``dd/mm/yyyy`` and ``mm/dd/yyyy`` only when some
    field above 12 tells which is which, else :class:`AmbiguousDates` asks for ``date_format=``.
    Daily values (``freq="1d"``) keep their date only. Missing values raise unless ``allow_missing``.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.DatetimeIndex(values)
        if stamps.tz is not None:
            stamps = stamps.tz_convert("Asia/Shanghai").tz_localize(None)
    else:
        raw = values.to_numpy(dtype=object)
        missing = pd.isna(raw)
        if pd.api.types.is_float_dtype(values):
            whole = np.where(missing, 0.0, values.to_numpy(dtype=np.float64))
            if (whole != np.round(whole)).any():
                raise InvalidBarData(prefixed(source, f"{what} values are fractional numbers, not dates"))
            raw = np.where(missing, None, whole.astype(np.int64).astype(str))
        position, uniques = pd.factorize(raw, use_na_sentinel=True)
        if date_format is not None:
            parsed = pd.to_datetime(pd.Index(uniques).astype(str), format=date_format, errors="coerce")
        elif len(uniques) and not isinstance(uniques[0], str | int | np.integer):
            try:
                parsed = pd.to_datetime(pd.Index(uniques))
            except (ValueError, TypeError) as exc:
                raise InvalidBarData(prefixed(source, f"{what} values cannot be read as dates: {exc}")) from None
        else:
            parsed = _parse_text_dates(uniques, source)
        if parsed.tz is not None:
            parsed = parsed.tz_convert("Asia/Shanghai").tz_localize(None)
        unreal = np.flatnonzero(pd.isna(parsed))
        if unreal.size:
            bad = uniques[unreal[0]]
            row = int(np.flatnonzero(position == unreal[0])[0])
            how = f" with date_format={date_format!r}" if date_format is not None else ""
            raise InvalidBarData(
                f"{row_name(values.index[row], source)}: {what} {str(bad)!r} is not a real date{how}"
            )
        # position -1 (a missing value) picks the NaT appended last
        table = np.append(parsed.to_numpy(dtype="datetime64[us]"), np.datetime64("NaT", "us"))
        stamps = pd.DatetimeIndex(table[position])
    absent = np.flatnonzero(stamps.isna())
    if absent.size and not allow_missing:
        raise InvalidBarData(f"{row_name(values.index[absent[0]], source)}: {what} is missing")
    early = np.flatnonzero(stamps < EARLIEST_BAR)
    if early.size:
        raise InvalidBarData(
            f"{row_name(values.index[early[0]], source)}: {what} {stamps[early[0]]} is before the A-share market"
            f" opened ({EARLIEST_BAR.date()})"
        )
    if freq == "1d":
        stamps = stamps.normalize()
    return stamps.to_numpy(dtype="datetime64[us]")


# -- bars -----------------------------------------------------------------------------------------------


def clean_names(values: pd.Series) -> np.ndarray:
    """Names as text, blanks and missing ones as None (a blank name must not overwrite a stored one)."""
    position, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    cleaned = np.array([str(name).strip() or None for name in uniques] + [None], dtype=object)
    return cleaned[position]


def numeric_column(df: pd.DataFrame, column: str, source: str | None) -> np.ndarray:
    """``df[column]`` as float64 (NaN where blank or absent); text that is not a number raises, naming the row."""
    values = df[column] if column in df.columns else pd.Series(np.nan, index=df.index)
    converted = pd.to_numeric(values, errors="coerce")
    bad = converted.isna() & values.notna()
    if bad.any():
        label = values.index[np.flatnonzero(bad.to_numpy())[0]]
        raise InvalidBarData(f"{row_name(label, source)}: {column} {shown(values[label])} is not a number")
    return converted.to_numpy(dtype=np.float64)


def validate_bars(
    df: pd.DataFrame, freq: str = "1d", *, source: str | None = None, date_format: str | None = None
) -> pd.DataFrame:
    """A clean copy of ``df`` in the store's column order, or :class:`InvalidBarData` naming the row.

    Codes are normalized (``600000`` -> ``600000.SH``); a bad code raises ``InvalidStockCode``.
    ``stock_name`` and ``amount`` are optional, every other column is required. A vendor's suspension
    placeholder (volume 0 with open, high, low or close 0 or missing) is kept as a suspended row: volume 0,
    its zero prices stored as missing. Negative prices, and high < low or open/close outside [low, high] on
    a traded row, are refused. ``source`` (a file name) makes messages name the file and its line;
    ``date_format`` (``'%d/%m/%Y'``...) reads dates that are ambiguous otherwise (see :func:`parse_dates`).
    """
    t = time_column(freq)
    columns = bar_columns(freq)
    optional = {"stock_name", "amount"}
    missing = [c for c in columns if c not in df.columns and c not in optional]
    if missing:
        raise InvalidBarData(prefixed(
            source,
            f"bars lack column(s) {missing}; {freq} bars have columns {columns}"
            " (stock_name and amount may be left out)",
        ))
    codes, _, _ = normalize_codes(df["stock_code"], source=source)
    out = pd.DataFrame(index=df.index)
    out["stock_code"] = codes
    out["stock_name"] = clean_names(df["stock_name"]) if "stock_name" in df.columns else None
    out[t] = parse_dates(df[t], freq=freq, source=source, date_format=date_format)
    for col in (*PRICE_COLUMNS, "volume", "amount"):
        out[col] = numeric_column(df, col, source)
    _mark_suspensions(out)
    _check_values(out, t, source)
    return out.drop_duplicates(["stock_code", t], keep="last").reset_index(drop=True)


def suspended_mask(bars: pd.DataFrame) -> np.ndarray:
    """Rows that are not a trading day of their stock (rules, "Real market data"): volume 0, or open, high
    or low missing or 0."""
    volume = bars["volume"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        no_price = ~(bars[["open", "high", "low"]].to_numpy(dtype=np.float64) > 0).all(axis=1)
        return (volume == 0) | no_price


def _mark_suspensions(bars: pd.DataFrame) -> None:
    """Vendor placeholders become suspended rows: volume 0 (also where it was left blank), zero prices missing."""
    prices = bars[list(PRICE_COLUMNS)].to_numpy(dtype=np.float64)
    volume = bars["volume"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        placeholder = ((volume == 0) | np.isnan(volume)) & ~(prices > 0).all(axis=1) & ~(prices < 0).any(axis=1)
    if placeholder.any():
        rows = bars.index[placeholder]
        for col in PRICE_COLUMNS:
            values = bars.loc[rows, col]
            bars.loc[rows, col] = values.where(values != 0)
        bars.loc[rows, "volume"] = 0.0


def _check_values(bars: pd.DataFrame, time_col: str, source: str | None) -> None:
    o, h, lo, c = (bars[col].to_numpy() for col in PRICE_COLUMNS)
    volume, amount = bars["volume"].to_numpy(), bars["amount"].to_numpy()
    with np.errstate(invalid="ignore"):
        placeholder = (volume == 0) & ~((o > 0) & (h > 0) & (lo > 0) & (c > 0))
        traded = ~placeholder
        checks = [
            ((o < 0) | (h < 0) | (lo < 0) | (c < 0), "a price is negative"),
            (traded & ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)),
             "a price is missing or not finite on a traded row"),
            (traded & ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)), "a price is not positive on a traded row"),
            (traded & (h < lo), "high < low"),
            (traded & ((o < lo) | (o > h) | (c < lo) | (c > h)), "open or close outside [low, high]"),
            (~np.isfinite(volume) | (volume < 0), "volume is missing or negative"),
            (amount < 0, "amount is negative"),
        ]
    for bad, problem in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            row = bars.iloc[i]
            values = ", ".join(f"{col}={row[col]}" for col in (*PRICE_COLUMNS, "volume", "amount"))
            raise InvalidBarData(
                f"{problem} in {int(bad.sum())} row(s); first is {row_name(bars.index[i], source)} "
                f"({row['stock_code']} {pd.Timestamp(row[time_col])}: {values})"
            )
