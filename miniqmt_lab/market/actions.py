"""Corporate actions and instruments as data, and the base price of a day's limits.

An action row (``schema.ACTION_COLUMNS``) is one stock's ex-date: ``cash_dividend`` (yuan per share,
before tax), ``bonus_ratio`` (bonus plus transferred shares per share), ``rights_ratio`` and
``rights_price``. On the ex-date the base price of the day's limits is the ex-rights reference price
(the kernel's ``ex_rights_price_nb``) and a holding is adjusted by the kernel's ``apply_action_nb``.
An instrument row (``schema.INSTRUMENT_COLUMNS``) gives a stock's name and listing date.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from miniqmt_lab.errors import MiniQmtError
from miniqmt_lab.market.codes import normalize_code
from miniqmt_lab.rules.nb import ex_rights_price_nb
from miniqmt_lab.schema import ACTION_COLUMNS, INSTRUMENT_COLUMNS

_RATIOS = ("cash_dividend", "bonus_ratio", "rights_ratio", "rights_price")


class InvalidMarketData(MiniQmtError, ValueError):
    """A corporate-action or instrument table that cannot be used; the message names the row."""


def ex_rights_price(
    prev_close: float,
    cash_dividend: float = 0.0,
    bonus_ratio: float = 0.0,
    rights_ratio: float = 0.0,
    rights_price: float = 0.0,
) -> float:
    """The ex-rights reference price of an ex-date: the base price of that day's limits."""
    return ex_rights_price_nb(float(prev_close), float(cash_dividend), float(bonus_ratio), float(rights_ratio),
                              float(rights_price))


def _codes(values: pd.Series, what: str) -> np.ndarray:
    uniques, inverse = np.unique(values.astype(str).to_numpy(dtype=object), return_inverse=True)
    try:
        normalized = np.array([normalize_code(c) for c in uniques], dtype=object)
    except MiniQmtError as exc:
        raise InvalidMarketData(f"{what}: {exc}") from None
    return normalized[inverse]


def _dates(values: pd.Series, what: str, column: str) -> np.ndarray:
    try:
        stamps = pd.to_datetime(values)
    except (ValueError, TypeError) as exc:
        raise InvalidMarketData(f"{what}: column {column!r} cannot be read as dates: {exc}") from None
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    return stamps.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")


def check_actions(actions: pd.DataFrame | None) -> pd.DataFrame:
    """A clean copy of a corporate-action table: normalized codes, ``ex_date`` as dates, missing ratios 0,
    sorted by (ex_date, stock_code). Raises :class:`InvalidMarketData` naming the bad row or column."""
    if actions is None or len(actions) == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            ACTION_COLUMNS, ("object", "datetime64[s]", "float64", "float64", "float64", "float64"), strict=True)})
    missing = [c for c in ("stock_code", "ex_date") if c not in actions.columns]
    if missing:
        raise InvalidMarketData(f"corporate actions lack column(s) {missing}; expected {list(ACTION_COLUMNS)}")
    out = pd.DataFrame({"stock_code": _codes(actions["stock_code"], "corporate actions"),
                        "ex_date": _dates(actions["ex_date"], "corporate actions", "ex_date")})
    for column in _RATIOS:
        raw = actions[column] if column in actions.columns else pd.Series(0.0, index=actions.index)
        try:
            values = pd.to_numeric(raw).fillna(0.0).to_numpy(dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise InvalidMarketData(f"corporate actions: column {column!r} is not numeric: {exc}") from None
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
        if bad.size:
            raise InvalidMarketData(
                f"corporate actions: {column} must be a number >= 0, got {values[bad[0]]!r} in row {int(bad[0])}")
        out[column] = values
    if np.isnat(out["ex_date"].to_numpy()).any():
        raise InvalidMarketData("corporate actions: ex_date is missing in some row")
    if out.duplicated(["stock_code", "ex_date"]).any():
        row = out[out.duplicated(["stock_code", "ex_date"])].iloc[0]
        raise InvalidMarketData(f"corporate actions: two rows for {row['stock_code']} on {row['ex_date']}")
    return out.sort_values(["ex_date", "stock_code"], kind="stable").reset_index(drop=True)


def check_instruments(instruments: pd.DataFrame | None) -> pd.DataFrame:
    """A clean copy of an instrument table (``stock_code``, ``stock_name``, ``listing_date``; unknown
    listing dates NaT), one row per normalized code."""
    if instruments is None or len(instruments) == 0:
        return pd.DataFrame({"stock_code": pd.Series(dtype=object), "stock_name": pd.Series(dtype=object),
                             "listing_date": pd.Series(dtype="datetime64[s]")})
    if "stock_code" not in instruments.columns:
        raise InvalidMarketData(f"instruments lack column 'stock_code'; expected {list(INSTRUMENT_COLUMNS)}")
    listing = (instruments["listing_date"] if "listing_date" in instruments.columns
               else pd.Series(pd.NaT, index=instruments.index))
    names = (instruments["stock_name"].fillna("").astype(str) if "stock_name" in instruments.columns
             else pd.Series("", index=instruments.index))
    out = pd.DataFrame({"stock_code": _codes(instruments["stock_code"], "instruments"),
                        "stock_name": names.to_numpy(dtype=object),
                        "listing_date": _dates(listing, "instruments", "listing_date")})
    return out.drop_duplicates("stock_code", keep="last").reset_index(drop=True)


def action_message(cash_dividend: float, bonus_ratio: float, volume_before: int, volume_after: int,
                   cash: float) -> str:
    """The text of a corporate-action event on a holding (engine and backtest alike)."""
    parts = []
    if volume_after != volume_before:
        parts.append(f"{bonus_ratio * 10:g} bonus shares per 10: {volume_before} -> {volume_after} shares")
    if cash:
        parts.append(f"dividend {cash_dividend:g} yuan per share: +{cash:,.2f} yuan")
    return "; ".join(parts) or "ex-rights: holding unchanged"
