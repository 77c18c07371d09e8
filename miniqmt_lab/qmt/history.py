"""From xtdata's frames to the bar store's: bars, tick history, corporate actions and instruments.

Pure conversions, each the one place its xtdata facts are applied (``shared/spec/xtquant.md``):

* volume is in lots (手, 100 shares) in K-lines and ticks; the store keeps shares. ``amount`` is yuan.
* a K-line's index is 'YYYYMMDD' for '1d' and 'YYYYMMDDhhmmss' for every other period, '1w' and
  '1mon' included; ``preClose`` is the exchange's base price of the day (the previous close, or the
  ex-rights reference price on an ex-date) and ``suspendFlag`` 1 marks a suspended day, which
  ``fill_data=True`` fills with the last close and volume 0: not a traded bar (rules.md, "Real market
  data"), so it is dropped with every other placeholder row.
* ``get_divid_factors`` rows: ``interest`` (cash per share, before tax), ``stockBonus`` + ``stockGift``
  (new shares per share), ``allotNum`` and ``allotPrice`` (rights), indexed by ex-date with ``time``
  in epoch ms.
* ``get_instrument_detail``: ``InstrumentName`` and ``OpenDate`` (listing date, 'YYYYMMDD').
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from miniqmt_lab import market as mkt
from miniqmt_lab.schema import ACTION_COLUMNS, INSTRUMENT_COLUMNS, LOT

DATED_PERIODS = ("1d", "1w", "1mon")
"""Periods whose bars are dated (a ``date`` column); shorter ones carry a ``time``."""

BAR_COLUMNS = ("open", "high", "low", "close", "volume", "amount")
TICK_COLUMNS = ("stock_code", "stock_name", "time", "price", "prev_close", "volume", "amount")


def xt_time(value: Any) -> str:
    """``'YYYYMMDD'`` for a date, ``'YYYYMMDDhhmmss'`` for a moment with a time of day, ``''`` for None."""
    if value is None or value == "":
        return ""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert(mkt.SHANGHAI).tz_localize(None)
    return stamp.strftime("%Y%m%d") if stamp == stamp.normalize() else stamp.strftime("%Y%m%d%H%M%S")


def number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _index_times(index: pd.Index) -> pd.DatetimeIndex:
    """xtdata's index strings, 'YYYYMMDD' or 'YYYYMMDDhhmmss', as local times."""
    text = pd.Index(index).astype(str)
    return pd.DatetimeIndex([pd.Timestamp(dt.datetime.strptime(t, "%Y%m%d" if len(t) == 8 else "%Y%m%d%H%M%S"))
                             for t in text])


def _local_times(epoch_ms: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(pd.to_numeric(epoch_ms, errors="coerce"), unit="ms", utc=True)
    return stamps.dt.tz_convert(mkt.SHANGHAI).dt.tz_localize(None)


def bar_frame_columns(period: str) -> list[str]:
    time_column = "date" if period in DATED_PERIODS else "time"
    return ["stock_code", "stock_name", time_column, *BAR_COLUMNS, "prev_close"]


def bars_from_xt(data: Mapping[str, pd.DataFrame | None], period: str, names: Mapping[str, str]) -> pd.DataFrame:
    """The bar store's long frame (plus ``prev_close``, the day's base price) from
    ``get_market_data_ex`` K-lines; volume in shares; suspended and placeholder bars dropped."""
    columns = bar_frame_columns(period)
    time_column = columns[2]
    frames = []
    for code, frame in data.items():
        if frame is None or frame.empty:
            continue
        times = _index_times(frame.index)
        rows = pd.DataFrame({
            "stock_code": code,
            "stock_name": names.get(code, ""),
            time_column: times.normalize() if time_column == "date" else times,
            **{c: pd.to_numeric(frame[c], errors="coerce").to_numpy(float) for c in BAR_COLUMNS},
        })
        rows["volume"] *= LOT
        base = pd.to_numeric(frame["preClose"], errors="coerce").to_numpy(float) if "preClose" in frame else np.nan
        rows["prev_close"] = np.where(np.asarray(base) > 0, base, np.nan)
        prices = rows[["open", "high", "low", "close"]]
        traded = prices.gt(0).all(axis=1) & rows["volume"].gt(0)
        if "suspendFlag" in frame:
            traded &= pd.to_numeric(frame["suspendFlag"], errors="coerce").fillna(0).to_numpy() != 1
        frames.append(rows[traded.to_numpy()])
    if not frames:
        return pd.DataFrame({c: [] for c in columns})
    return pd.concat(frames, ignore_index=True).sort_values([time_column, "stock_code"], ignore_index=True)


def ticks_from_xt(data: Mapping[str, pd.DataFrame | None], names: Mapping[str, str]) -> pd.DataFrame:
    """A long frame of ``get_market_data_ex(period='tick')`` snapshots: time (local), price, the day's
    base price, the day's cumulative volume in shares and amount; snapshots without a price dropped."""
    frames = []
    for code, frame in data.items():
        if frame is None or frame.empty:
            continue
        base = pd.to_numeric(frame["lastClose"], errors="coerce").to_numpy(float)
        rows = pd.DataFrame({
            "stock_code": code,
            "stock_name": names.get(code, ""),
            "time": _local_times(frame["time"]).to_numpy(),
            "price": pd.to_numeric(frame["lastPrice"], errors="coerce").to_numpy(float),
            "prev_close": np.where(base > 0, base, np.nan),
            "volume": pd.to_numeric(frame["volume"], errors="coerce").to_numpy(float) * LOT,
            "amount": pd.to_numeric(frame["amount"], errors="coerce").to_numpy(float),
        })
        frames.append(rows[rows["price"].gt(0).to_numpy()])
    if not frames:
        return pd.DataFrame({c: [] for c in TICK_COLUMNS})
    return pd.concat(frames, ignore_index=True).sort_values(["time", "stock_code"], ignore_index=True)


def actions_from_xt(code: str, factors: pd.DataFrame | None) -> pd.DataFrame:
    """``ACTION_COLUMNS`` rows of ``code`` from ``get_divid_factors``: cash_dividend = interest,
    bonus_ratio = stockBonus + stockGift, rights_ratio = allotNum, rights_price = allotPrice; rows
    changing none of them (a factor-only row) are left out."""
    if factors is None or factors.empty:
        return pd.DataFrame({c: [] for c in ACTION_COLUMNS})

    def amount(column: str) -> np.ndarray:
        if column not in factors:
            return np.zeros(len(factors))
        return pd.to_numeric(factors[column], errors="coerce").fillna(0.0).to_numpy(float)

    days = (_local_times(factors["time"]) if "time" in factors else pd.Series(_index_times(factors.index)))
    out = pd.DataFrame({
        "stock_code": code,
        "ex_date": pd.DatetimeIndex(days).normalize(),
        "cash_dividend": amount("interest"),
        "bonus_ratio": amount("stockBonus") + amount("stockGift"),
        "rights_ratio": amount("allotNum"),
        "rights_price": amount("allotPrice"),
    })
    changes = out[["cash_dividend", "bonus_ratio", "rights_ratio"]].gt(0).any(axis=1)
    return out[changes.to_numpy()].sort_values("ex_date", ignore_index=True)[list(ACTION_COLUMNS)]


def listing_date(detail: Mapping[str, Any] | None) -> dt.date | None:
    """``OpenDate`` ('YYYYMMDD', or an int) of an instrument detail; None when unknown."""
    text = str((detail or {}).get("OpenDate") or "").strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        day = dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None
    return day if day.year >= 1990 else None


def instruments_from_xt(details: Mapping[str, Mapping[str, Any] | None]) -> pd.DataFrame:
    """``INSTRUMENT_COLUMNS`` rows from ``get_instrument_detail`` answers (codes the client does not
    know are left out): stock_name = InstrumentName, listing_date = OpenDate (NaT when unknown)."""
    rows = [(code, str(d.get("InstrumentName") or ""), listing_date(d)) for code, d in details.items() if d]
    frame = pd.DataFrame(rows, columns=list(INSTRUMENT_COLUMNS))
    frame["listing_date"] = pd.to_datetime(frame["listing_date"])
    return frame


def day_actions(actions: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """The rows of ``actions`` whose ex-date is ``day``."""
    return actions[pd.DatetimeIndex(actions["ex_date"]).date == day].reset_index(drop=True)


def unexplained_base_prices(bars: pd.DataFrame, actions: pd.DataFrame, tolerance: float = 0.005) -> pd.DataFrame:
    """Daily bars whose ``prev_close`` (the exchange's base price) differs from the stock's previous
    traded close on a day without a known corporate action: the actions table misses that ex-date.
    Columns stock_code, date, prev_close, last_close."""
    columns = ["stock_code", "date", "prev_close", "last_close"]
    if bars.empty or "prev_close" not in bars:
        return pd.DataFrame({c: [] for c in columns})
    ordered = bars.sort_values(["stock_code", "date"])
    last_close = ordered.groupby("stock_code")["close"].shift(1)
    known = set(zip(actions["stock_code"], pd.DatetimeIndex(actions["ex_date"]).normalize(), strict=True))
    differs = (ordered["prev_close"] - last_close).abs() > tolerance
    explained = [(c, d) in known for c, d in zip(ordered["stock_code"], ordered["date"], strict=True)]
    odd = differs.to_numpy() & ~np.asarray(explained, dtype=bool)
    return ordered.assign(last_close=last_close)[odd][columns].reset_index(drop=True)
