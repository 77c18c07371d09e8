"""Replay feeds: bars or a recorded tick journal delivered as tick rounds, driving a replay clock.

Bars become ticks by the market simulation (:mod:`miniqmt_lab.marketsim`), the very code the backtest
runs: open, low, high, close when close >= open, else open, high, low, close (``tick_mode="close"``: the
close only), the k-th tick of every stock's bar at one time (daily bars at 09:30, 10:30, 13:30 and 14:57,
stamped 15:00; a minute bar ending at ``t`` at ``t - 45 s`` .. ``t``, stamped ``t``). A suspended bar gives
no tick; each tick carries its day's base price (``Tick.prev_close``: the previous traded close, or the
ex-rights reference on an ex-date) and ``Tick.limits`` False on a new listing's first five days.

Rounds are built lazily from per-bar arrays, so a long minute-bar replay costs no more memory than
its bars.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from miniqmt_lab import records
from miniqmt_lab.engine.clock import ReplayClock
from miniqmt_lab.market import SHANGHAI
from miniqmt_lab.marketsim import MarketData, market_data, tick_table_nb, with_ticks
from miniqmt_lab.schema import Tick, TickRound

TickMode = Literal["ohlc", "close"]


@dataclass(frozen=True, eq=False)
class TickTable:
    """Rows of simultaneous ticks, grouped: group ``g`` holds rows ``start[g]:start[g + 1]``.

    Each row carries ``prices.shape[1]`` ticks, the k-th of every row of a group at ``times[g, k]``.
    Rows of a group are in ascending code order.
    """

    codes: np.ndarray  # (n_rows,) object
    names: np.ndarray  # (n_rows,) object
    prices: np.ndarray  # (n_rows, k) float64
    bar_close: np.ndarray  # (n_rows, k) bool
    prev_close: np.ndarray  # (n_rows,) float64: the day's base price
    stamps: np.ndarray  # (n_rows,) datetime64[us], naive Shanghai time
    times: np.ndarray  # (n_groups, k) datetime64[us], naive Shanghai time
    start: np.ndarray  # (n_groups + 1,) int64
    limits: np.ndarray  # (n_rows,) bool: False on a new listing's first five trading days

    @property
    def n_rounds(self) -> int:
        return self.times.size

    def round_at(self, index: int) -> TickRound:
        group, k = divmod(index, self.times.shape[1])
        time = _aware(self.times[group, k])
        lo, hi = int(self.start[group]), int(self.start[group + 1])
        aware: dict[dt.datetime, dt.datetime] = {}  # rows of a bar share their stamp
        stamps = []
        for naive in self.stamps[lo:hi].tolist():
            stamp = aware.get(naive)
            if stamp is None:
                stamp = aware[naive] = naive.replace(tzinfo=SHANGHAI)
            stamps.append(stamp)
        ticks = tuple(
            Tick(code, price, time, stamp, closes, prev, name, limited)
            for code, price, stamp, closes, prev, name, limited in zip(
                self.codes[lo:hi].tolist(),
                self.prices[lo:hi, k].tolist(),
                stamps,
                self.bar_close[lo:hi, k].tolist(),
                self.prev_close[lo:hi].tolist(),
                self.names[lo:hi].tolist(),
                self.limits[lo:hi].tolist(),
                strict=True,
            )
        )
        return TickRound(time=time, ticks=ticks)

    def round_time(self, index: int) -> dt.datetime:
        group, k = divmod(index, self.times.shape[1])
        return _aware(self.times[group, k])


def _aware(value: np.datetime64) -> dt.datetime:
    return value.astype("datetime64[us]").item().replace(tzinfo=SHANGHAI)


def _naive_shanghai(values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values)
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert(SHANGHAI).dt.tz_localize(None)
    return stamps.to_numpy(dtype="datetime64[us]")


def _group_starts(keys: np.ndarray) -> np.ndarray:
    change = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.concatenate([[0], change, [len(keys)]]).astype(np.int64)


def bars_to_ticks(
    bars: pd.DataFrame | MarketData,
    tick_mode: TickMode = "ohlc",
    *,
    actions: pd.DataFrame | None = None,
    instruments: pd.DataFrame | None = None,
) -> TickTable:
    """The tick stream of a long bar frame (``stock_code``, ``date`` or ``time``, ``open``..``close``), or of
    bars already prepared by :func:`miniqmt_lab.marketsim.market_data`; ``actions`` and ``instruments``
    default to ``bars.attrs`` (the bar store's)."""
    if tick_mode not in ("ohlc", "close"):
        raise ValueError(f"tick_mode must be 'ohlc' or 'close', got {tick_mode!r}")
    n_ticks = 4 if tick_mode == "ohlc" else 1
    if isinstance(bars, MarketData):
        data = with_ticks(bars, n_ticks)
    else:
        data = market_data(bars, actions=actions, instruments=instruments, ohlc=tick_mode == "ohlc")
    return tick_table(data, _row_names(bars, data))


def _row_names(bars: pd.DataFrame | MarketData, data: MarketData) -> np.ndarray:
    """Each row's stock name as the bars give it (the ST limit follows the bar's own name)."""
    if isinstance(bars, pd.DataFrame) and "stock_name" in bars.columns:
        names = bars["stock_name"].astype(object).where(bars["stock_name"].notna(), "").astype(str)
        values = names.to_numpy(dtype=object)
        return values if data.row_order is None else values[data.row_order]
    return np.array(data.names, dtype=object)[data.stream.col]


def tick_table(data: MarketData, names: np.ndarray) -> TickTable:
    """The replay feed's table of a market simulation: its traded rows only (a suspension gives no tick)."""
    rows = data.stream
    keep = rows.traded
    group_of_row = np.repeat(np.arange(len(rows.start) - 1), np.diff(rows.start))[keep]
    if not keep.any():
        raise ValueError("the bars hold no traded bar (every row is a suspension)")
    prices = tick_table_nb(rows.open, rows.high, rows.low, rows.close, rows.n_ticks)[keep]
    bar_close = np.zeros(prices.shape, dtype=bool)
    bar_close[:, -1] = True
    groups, start_of_kept = np.unique(group_of_row, return_index=True)
    times = data.tick_times()[groups]
    if times.size > 1 and not (np.diff(times.ravel()) > np.timedelta64(0, "us")).all():
        raise ValueError("minute bars must be at least one minute apart")
    stamps = data.index.to_numpy(dtype="datetime64[us]")[rows.group_bar[group_of_row]]
    return TickTable(
        codes=data.row_codes()[keep],
        names=names[keep],
        prices=prices,
        bar_close=bar_close,
        prev_close=data.row_base()[keep],
        stamps=stamps,
        times=times,
        start=np.append(start_of_kept, keep.sum()).astype(np.int64),
        limits=data.row_limited()[keep],
    )


def journal_to_ticks(journal: pd.DataFrame) -> TickTable:
    """The tick stream of a journal-shaped frame (see :func:`miniqmt_lab.records.read_journal`)."""
    if journal.empty:
        raise ValueError("the journal holds no ticks")
    missing = [c for c in ("time", "stamp", "stock_code", "price", "bar_close", "prev_close") if c not in journal]
    if missing:
        raise ValueError(f"ticks lack column(s) {missing}")
    frame = journal.assign(time=_naive_shanghai(journal["time"]), stamp=_naive_shanghai(journal["stamp"]))
    frame = frame.sort_values(["time", "stock_code"], kind="stable").reset_index(drop=True)
    times = frame["time"].to_numpy(dtype="datetime64[us]")
    start = _group_starts(times)
    return TickTable(
        codes=frame["stock_code"].to_numpy(dtype=object),
        names=frame["stock_name"].fillna("").astype(str).to_numpy(dtype=object)
        if "stock_name" in frame.columns
        else np.full(len(frame), "", dtype=object),
        prices=frame["price"].to_numpy(dtype=np.float64)[:, None],
        bar_close=frame["bar_close"].to_numpy(dtype=bool)[:, None],
        prev_close=frame["prev_close"].to_numpy(dtype=np.float64),
        stamps=frame["stamp"].to_numpy(dtype="datetime64[us]"),
        times=times[start[:-1]][:, None],
        start=start,
        limits=frame["limits"].to_numpy(dtype=bool) if "limits" in frame.columns else np.ones(len(frame), dtype=bool),
    )


class ReplayFeed:
    """A finite tick stream that moves its :class:`ReplayClock` to each round's time on delivery.

    Pass ``clock=feed.clock`` to the engine (or leave ``clock`` out: the engine takes it from here).
    Closed and opened again (an engine stopped and started), it goes on from the round it delivered
    last: the engine may have stopped inside that round, and skips the ticks of it that it handled
    (its stored progress), so every tick is handled once.
    """

    def __init__(
        self,
        table: TickTable,
        *,
        clock: ReplayClock | None = None,
        bars: pd.DataFrame | None = None,
        market: MarketData | None = None,
    ) -> None:
        self.table = table
        self.bars = bars  # the source bars, for entry signals computed from them (MACD)
        self.market = market  # their market simulation: entries, and the corporate actions of each day
        self.clock = clock if clock is not None else ReplayClock()
        self._lock = threading.Lock()
        self._next = 0
        self._last = -1  # index of the round delivered last
        self._closed = False
        first = table.round_time(0) if table.n_rounds else None
        self.clock.bind(self.pending, first)

    @classmethod
    def from_bars(
        cls,
        bars: pd.DataFrame,
        *,
        tick_mode: TickMode = "ohlc",
        clock: ReplayClock | None = None,
        actions: pd.DataFrame | None = None,
        instruments: pd.DataFrame | None = None,
    ) -> ReplayFeed:
        """Replay bars as the backtest sees them; ``actions`` (corporate actions) and ``instruments``
        (listing dates) default to ``bars.attrs`` (the bar store's)."""
        if tick_mode not in ("ohlc", "close"):
            raise ValueError(f"tick_mode must be 'ohlc' or 'close', got {tick_mode!r}")
        data = market_data(bars, actions=actions, instruments=instruments, ohlc=tick_mode == "ohlc")
        return cls(tick_table(data, _row_names(bars, data)), clock=clock, bars=bars, market=data)

    @classmethod
    def from_journal(cls, path: str | Path, *, clock: ReplayClock | None = None) -> ReplayFeed:
        """Replay a session journal (``Engine.journal_path``)."""
        return cls(journal_to_ticks(records.read_journal(path)), clock=clock)

    @classmethod
    def from_ticks(cls, ticks: pd.DataFrame, *, clock: ReplayClock | None = None) -> ReplayFeed:
        """Replay a tick frame shaped like :func:`~miniqmt_lab.records.read_journal`'s; codes and
        prices are delivered as given, so bad data reaches the engine as a live feed would send it."""
        return cls(journal_to_ticks(ticks), clock=clock)

    @property
    def n_rounds(self) -> int:
        return self.table.n_rounds

    def actions_on(self, day: dt.date) -> list[tuple[str, float, float]]:
        """The corporate actions the market simulation applies on ``day`` (each on the first day of the bars
        on or after its ex-date): (stock_code, cash_dividend, bonus_ratio) rows, in code order."""
        if self.market is None or self.market.actions.empty:
            return []
        actions = self.market.actions
        on_day = actions[self.market.day_dates[actions["day"].to_numpy()] == np.datetime64(day, "D")]
        return [(str(c), float(d), float(b)) for c, d, b in
                zip(on_day["stock_code"], on_day["cash_dividend"], on_day["bonus_ratio"], strict=True)]

    @property
    def position(self) -> int:
        """Index of the next round to deliver."""
        return self._next

    def pending(self) -> bool:
        """Rounds are left and the feed is open: the clock does not wait between rounds."""
        return not self._closed and self._next < self.table.n_rounds

    def open(self) -> None:
        with self._lock:
            if self._closed:
                self._closed = False
                self._next = max(self._last, 0)

    def watch(self, codes: Sequence[str]) -> None:
        # a replay delivers every stock of its stream; the watch list only matters to live feeds
        return None

    def next_round(self, timeout: float) -> TickRound | None:
        with self._lock:
            if self._closed or self._next >= self.table.n_rounds:
                return None
            rnd = self.table.round_at(self._next)
            self._last = self._next
            self._next += 1
        self.clock.advance_to(rnd.time)
        return rnd

    def finished(self) -> bool:
        return self._next >= self.table.n_rounds

    def close(self) -> None:
        with self._lock:
            self._closed = True


class IdleFeed:
    """A feed that never delivers: the engine's default when none is given (manual trading only)."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def open(self) -> None:
        self._closed.clear()

    def watch(self, codes: Sequence[str]) -> None:
        return None

    def next_round(self, timeout: float) -> TickRound | None:
        self._closed.wait(max(0.0, min(timeout, 1.0)))
        return None

    def finished(self) -> bool:
        return False

    def close(self) -> None:
        self._closed.set()
