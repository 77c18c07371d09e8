"""Entry signals: where a holding may open. The engine asks on a bar's last tick of a stock not held.

* :class:`FrameEntries`: a boolean (bar time x stock_code) frame given by the caller, or computed
  from replay bars (:func:`macd_bar_entries`: the market simulation's MACD golden crosses on each
  stock's own daily closes, acted on at the day's last bar of the stock: the backtest's very signals).
* :class:`MacdEntries`: live, from the stock's own traded daily closes in the bar store plus today's
  price as the close-to-be (the same arithmetic step by step); the data thread refreshes the history.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from miniqmt_lab.indicators import golden_cross_nb, macd_nb
from miniqmt_lab.market import SHANGHAI, normalize_code
from miniqmt_lab.marketsim import DAILY_STAMP, MarketData, market_data, traded_mask
from miniqmt_lab.schema import HISTORY_DAYS

log = logging.getLogger(__name__)



@runtime_checkable
class EntrySource(Protocol):
    def is_entry(self, code: str, stamp: dt.datetime, price: float) -> bool:
        """True when a holding of ``code`` may open on the bar stamped ``stamp`` at ``price``."""
        ...

    def refresh(self) -> None:
        """Reload whatever the signal is computed from (called by the data thread)."""
        ...


def _naive(stamp: dt.datetime) -> dt.datetime:
    return stamp.astimezone(SHANGHAI).replace(tzinfo=None) if stamp.tzinfo is not None else stamp


class FrameEntries:
    """Entries at given (stock_code, bar stamp) keys; build it from a boolean frame with :meth:`from_frame`."""

    def __init__(self, keys: set[tuple[str, dt.datetime]]) -> None:
        self._keys = keys  # naive Shanghai bar stamps

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> FrameEntries:
        """A boolean (bar time x stock_code) frame; a frame of dates matches daily stamps (15:00)."""
        index = pd.DatetimeIndex(pd.to_datetime(frame.index))
        if index.tz is not None:
            index = index.tz_convert(SHANGHAI).tz_localize(None)
        if len(index) and (index == index.normalize()).all():
            index = index + DAILY_STAMP
        rows, cols = np.nonzero(frame.fillna(False).astype(bool).to_numpy())
        codes = [normalize_code(c) for c in frame.columns]
        stamps = index.to_pydatetime()
        return cls({(codes[c], stamps[r]) for r, c in zip(rows, cols, strict=True)})

    def __len__(self) -> int:
        return len(self._keys)

    def is_entry(self, code: str, stamp: dt.datetime, price: float) -> bool:
        return (code, _naive(stamp)) in self._keys

    def refresh(self) -> None:
        return None


def macd_bar_entries(bars: pd.DataFrame | MarketData) -> FrameEntries:
    """MACD golden crosses of the market simulation (each stock's own traded daily closes), keyed by the
    bar they are acted on: daily bars, the bar of the cross; minute bars, the day's last bar of the stock."""
    if isinstance(bars, MarketData):
        data = bars
    else:
        data = market_data(bars, ohlc=all(c in bars.columns for c in ("open", "high", "low")))
    rows = np.flatnonzero(data.macd_entries())
    stream = data.stream
    group_of_row = np.searchsorted(stream.start, rows, side="right") - 1
    stamps = data.index[stream.group_bar[group_of_row]].to_pydatetime()
    codes = data.row_codes()[rows]
    return FrameEntries({(str(code), stamp) for code, stamp in zip(codes, stamps, strict=True)})


class AlwaysEntries:
    """An entry on every bar's last tick of a stock not held (as the backtest's ``entries="always"``)."""

    def is_entry(self, code: str, stamp: dt.datetime, price: float) -> bool:
        return True

    def refresh(self) -> None:
        return None


class MacdEntries:
    """Live MACD golden cross on daily closes: stored history plus the current price as today's close."""

    def __init__(self, load_history: Callable[[], pd.DataFrame]) -> None:
        self._load = load_history
        self._lock = threading.Lock()
        self._history = pd.DataFrame()

    def refresh(self) -> None:
        history = self._load()
        with self._lock:
            self._history = history

    def is_entry(self, code: str, stamp: dt.datetime, price: float) -> bool:
        """The cross of ``macd_nb`` over the stock's own traded closes before today plus ``price``: what
        the market simulation's step-by-step MACD gives on the same closes."""
        day = pd.Timestamp(_naive(stamp).date())  # history is indexed by naive dates
        with self._lock:
            history = self._history
        if code not in history.columns:
            return False
        series = history[code]
        closes = series[series.index < day].dropna().to_numpy(dtype=np.float64)
        if closes.size < 2:
            return False
        dif, dea, _ = macd_nb(np.append(closes, float(price)))
        return bool(golden_cross_nb(dif, dea)[-1])


def store_history(bar_store: Path, codes: Callable[[], list[str]]) -> Callable[[], pd.DataFrame]:
    """A history loader for :class:`MacdEntries`: daily closes (date x code) from a DuckDB bar store."""

    def load() -> pd.DataFrame:
        wanted = codes()
        if not wanted or not bar_store.exists():
            if wanted:
                log.warning("no bar store at %s: MACD entries need daily bars there", bar_store)
            return pd.DataFrame()
        from miniqmt_lab.bars import BarStore

        start = dt.date.today() - dt.timedelta(days=HISTORY_DAYS)
        with BarStore(bar_store, read_only=True) as store:
            bars = store.query(wanted, start=start, freq="1d")
        if bars.empty:
            return pd.DataFrame()
        bars = bars[traded_mask(bars)]  # suspended days are absent from a stock's series, not blank
        return bars.pivot(index="date", columns="stock_code", values="close").sort_index()

    return load


def make_entries(
    spec: EntrySource | pd.DataFrame | str | None,
    feed: object,
    data_dir: Path,
    default: str,
    codes: Callable[[], list[str]],
) -> EntrySource | None:
    """The engine's entry source from its ``entries`` argument (None: ``engine.entry`` of the settings).

    ``"macd"`` on a replay of bars takes the crosses of its market simulation, as the backtest does; on
    any other feed it uses the daily closes of the bar store ``<data_dir>/bars.duckdb``.
    """
    if spec is None:
        spec = default
    if isinstance(spec, pd.DataFrame):
        return FrameEntries.from_frame(spec)
    if isinstance(spec, EntrySource):
        return spec
    if spec == "none":
        return None
    if spec == "always":
        return AlwaysEntries()
    if spec == "macd":
        market = getattr(feed, "market", None)
        if isinstance(market, MarketData):
            return macd_bar_entries(market)
        bars = getattr(feed, "bars", None)
        if isinstance(bars, pd.DataFrame):
            return macd_bar_entries(bars)
        return MacdEntries(store_history(data_dir / "bars.duckdb", codes))
    raise ValueError(
        f"entries must be 'macd', 'always', 'none', a boolean (time x stock_code) DataFrame or an EntrySource,"
        f" got {spec!r}"
    )
