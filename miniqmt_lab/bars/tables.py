"""The store's side tables: corporate actions and instruments, their checks, and how they ride along with bars.

``BarStore.query()`` attaches both to the bars it returns, as ``bars.attrs["actions"]`` (``ACTION_COLUMNS``)
and ``bars.attrs["instruments"]`` (``INSTRUMENT_COLUMNS``), so a backtest of those bars applies the actions
without being told. They are :class:`AttachedTable` frames: pandas copies ``attrs`` deeply into every frame
derived from the bars (a slice, a filter, a pivot), and an attached table is shared instead of copied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from miniqmt_lab.bars.validate import (
    InvalidActionData,
    InvalidBarData,
    clean_names,
    normalize_codes,
    parse_dates,
    prefixed,
    row_name,
    shown,
)
from miniqmt_lab.schema import ACTION_COLUMNS, INSTRUMENT_COLUMNS

ACTION_AMOUNTS = ACTION_COLUMNS[2:]


class AttachedTable(pd.DataFrame):
    """A read-only side table attached to bars through ``frame.attrs``.

    Every frame derived from the bars shares this one object (``copy.deepcopy`` returns it), so slicing
    whole-market bars costs no copy of their actions. Two attached tables compare with ``==`` as one
    boolean (equal content), which is what pandas asks when it concatenates frames that carry them:
    ``pd.concat`` of parts of one query keeps the attrs, of two different queries drops them. Any
    operation on the table itself returns a plain DataFrame.
    """

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> AttachedTable:
        return self

    def __eq__(self, other: object) -> Any:  # type: ignore[override]
        if isinstance(other, AttachedTable):
            return self.equals(other)
        return super().__eq__(other)

    def __ne__(self, other: object) -> Any:  # type: ignore[override]
        if isinstance(other, AttachedTable):
            return not self.equals(other)
        return super().__ne__(other)

    __hash__ = None  # type: ignore[assignment]


def attached(frame: pd.DataFrame) -> AttachedTable:
    return AttachedTable(frame.reset_index(drop=True))


def empty_actions() -> pd.DataFrame:
    return pd.DataFrame({
        "stock_code": pd.Series([], dtype=object),
        "ex_date": pd.Series([], dtype="datetime64[us]"),
        **{c: pd.Series([], dtype=np.float64) for c in ACTION_AMOUNTS},
    })


def empty_instruments() -> pd.DataFrame:
    return pd.DataFrame({
        "stock_code": pd.Series([], dtype=object),
        "stock_name": pd.Series([], dtype=object),
        "listing_date": pd.Series([], dtype="datetime64[us]"),
    })


def validate_actions(
    df: pd.DataFrame, *, source: str | None = None, date_format: str | None = None
) -> pd.DataFrame:
    """A clean copy of corporate actions in ``ACTION_COLUMNS`` order, or :class:`InvalidActionData`.

    ``stock_code`` and ``ex_date`` are required, and at least one of the amounts; an amount column left
    out, or a blank cell, means 0. Every amount must be finite and >= 0, a rights issue needs its price,
    and an ex-date is a real weekday on or after the market opened. The last of duplicated
    (stock_code, ex_date) rows wins.
    """
    missing = [c for c in ("stock_code", "ex_date") if c not in df.columns]
    if missing or not any(c in df.columns for c in ACTION_AMOUNTS):
        raise InvalidActionData(prefixed(
            source,
            f"corporate actions need columns stock_code, ex_date and at least one of {list(ACTION_AMOUNTS)};"
            f" got {list(df.columns)}",
        ))
    codes, _, _ = normalize_codes(df["stock_code"], source=source)
    out = pd.DataFrame(index=df.index)
    out["stock_code"] = codes
    out["ex_date"] = parse_dates(df["ex_date"], what="ex_date", source=source, date_format=date_format)
    weekend = np.flatnonzero(pd.DatetimeIndex(out["ex_date"]).dayofweek >= 5)
    if weekend.size:
        label = out.index[weekend[0]]
        raise InvalidActionData(
            f"{row_name(label, source)}: ex_date {pd.Timestamp(out.at[label, 'ex_date']).date()} is a weekend day,"
            " never an ex-date (dates read the wrong way round?)"
        )
    for col in ACTION_AMOUNTS:
        out[col] = _amount(df, col, source)
    rights_without_price = (out["rights_ratio"] > 0) & ~(out["rights_price"] > 0)
    if rights_without_price.any():
        label = out.index[np.flatnonzero(rights_without_price.to_numpy())[0]]
        raise InvalidActionData(
            f"{_describe(out, label, source)}: rights_ratio {out.at[label, 'rights_ratio']} needs a rights_price > 0"
        )
    return out.drop_duplicates(["stock_code", "ex_date"], keep="last").reset_index(drop=True)


def _amount(df: pd.DataFrame, column: str, source: str | None) -> np.ndarray:
    if column not in df.columns:
        return np.zeros(len(df))
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce")
    for bad, problem in (
        (values.isna() & raw.notna() & raw.astype(str).str.strip().ne(""), "is not a number"),
        (np.isinf(values), "is not finite"),
        (values < 0, "is negative"),
    ):
        if bad.any():
            label = raw.index[np.flatnonzero(bad.to_numpy())[0]]
            raise InvalidActionData(f"{row_name(label, source)}: {column} {shown(raw[label])} {problem}")
    return values.fillna(0.0).to_numpy(dtype=np.float64)


def _describe(actions: pd.DataFrame, label: object, source: str | None) -> str:
    day = pd.Timestamp(actions.at[label, "ex_date"]).date()
    return f"{row_name(label, source)} ({actions.at[label, 'stock_code']} ex-date {day})"


def validate_instruments(
    df: pd.DataFrame, *, source: str | None = None, date_format: str | None = None
) -> pd.DataFrame:
    """A clean copy of instruments in ``INSTRUMENT_COLUMNS`` order, or a typed error naming the row.

    ``stock_code`` is required; a name or listing date left out or blank is unknown (and never overwrites
    a stored one).
    """
    if "stock_code" not in df.columns or not ({"stock_name", "listing_date"} & set(df.columns)):
        raise InvalidBarData(prefixed(
            source,
            f"instruments need columns stock_code and stock_name and/or listing_date; got {list(df.columns)}",
        ))
    codes, _, _ = normalize_codes(df["stock_code"], source=source)
    out = pd.DataFrame(index=df.index)
    out["stock_code"] = codes
    out["stock_name"] = clean_names(df["stock_name"]) if "stock_name" in df.columns else None
    if "listing_date" in df.columns:
        dates = df["listing_date"]
        blank = dates.isna() | dates.astype(str).str.strip().isin(["", "0"])
        out["listing_date"] = parse_dates(
            dates.where(~blank), what="listing_date", source=source, date_format=date_format, allow_missing=True
        )
    else:
        out["listing_date"] = np.full(len(df), np.datetime64("NaT"), dtype="datetime64[us]")
    out["stock_name"] = out["stock_name"].astype(object)
    return out[list(INSTRUMENT_COLUMNS)].drop_duplicates("stock_code", keep="last").reset_index(drop=True)
