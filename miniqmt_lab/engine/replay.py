"""Replay feeds: bars or a recorded tick journal delivered as tick rounds, driving a replay clock.

Bars become ticks by the parity rules of ``docs/contracts.md``: open, low, high, close when
close >= open, else open, high, low, close (``tick_mode="close"``: the close only); the k-th tick
of every stock's bar shares one time. Daily bars tick at 09:30, 10:30, 13:30 and 14:57 (close only:
14:57) and their trades are stamped with the date at 15:00; a minute bar ending at ``t`` ticks at
``t - 45 s``, ``t - 30 s``, ``t - 15 s`` and ``t`` (close only: ``t``) and is stamped ``t``.

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
from miniqmt_lab.market import SHANGHAI, normalize_code
from miniqmt_lab.schema import Tick, TickRound

TickMode = Literal["ohlc", "close"]
DAILY_TICK_TIMES = (dt.time(9, 30), dt.time(10, 30), dt.time(13, 30), dt.time(14, 57))
DAILY_STAMP = pd.Timedelta(hours=15)
MINUTE_TICK_OFFSETS = (-45, -30, -15, 0)  # seconds from the minute bar's time


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
    prev_close: np.ndarray  # (n_rows,) float64
    stamps: np.ndarray  # (n_rows,) datetime64[us], naive Shanghai time
    times: np.ndarray  # (n_groups, k) datetime64[us], naive Shanghai time
    start: np.ndarray  # (n_groups + 1,) int64

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
            Tick(code, price, time, stamp, closes, prev, name)
            for code, price, stamp, closes, prev, name in zip(
                self.codes[lo:hi].tolist(),
                self.prices[lo:hi, k].tolist(),
                stamps,
                self.bar_close[lo:hi, k].tolist(),
                self.prev_close[lo:hi].tolist(),
                self.names[lo:hi].tolist(),
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


def bars_to_ticks(bars: pd.DataFrame, tick_mode: TickMode = "ohlc") -> TickTable:
    """The tick stream of a long bar frame (``stock_code``, ``date`` or ``time``, ``open``..``close``)."""
    if tick_mode not in ("ohlc", "close"):
        raise ValueError(f"tick_mode must be 'ohlc' or 'close', got {tick_mode!r}")
    if "time" in bars.columns:
        daily, time_column = False, "time"
    elif "date" in bars.columns:
        daily, time_column = True, "date"
    else:
        raise ValueError("bars need a 'date' column (daily bars) or a 'time' column (minute bars)")
    needed = ["stock_code", "open", "low", "high", "close"] if tick_mode == "ohlc" else ["stock_code", "close"]
    missing = [c for c in needed if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {missing}")
    if bars.empty:
        raise ValueError("bars are empty")

    frame = pd.DataFrame(
        {
            "code": [normalize_code(c) for c in bars["stock_code"].to_numpy(dtype=object)],
            "name": bars["stock_name"].fillna("").astype(str).to_numpy(dtype=object)
            if "stock_name" in bars.columns
            else "",
            "t": _naive_shanghai(bars[time_column]),
        }
    )
    if daily:
        frame["t"] = frame["t"].dt.normalize()
    for column in ("open", "low", "high", "close"):
        source = column if column in bars.columns else "close"
        frame[column] = pd.to_numeric(bars[source]).to_numpy(dtype=np.float64)
    frame = frame.sort_values(["t", "code"], kind="stable").reset_index(drop=True)
    if frame.duplicated(["t", "code"]).any():
        raise ValueError("bars hold more than one row for some (stock_code, bar time)")

    day = frame["t"].dt.normalize()
    # the reference close of price limits: the stock's last close on an earlier trading day
    day_close = frame.groupby(["code", day], sort=True)["close"].last()
    previous = day_close.groupby(level="code").shift(1)
    prev_close = previous.reindex(pd.MultiIndex.from_arrays([frame["code"], day])).to_numpy(dtype=np.float64)

    o, lo, hi, c = (frame[col].to_numpy() for col in ("open", "low", "high", "close"))
    if tick_mode == "close":
        prices = c[:, None].copy()
    else:
        rising = c >= o
        prices = np.stack([o, np.where(rising, lo, hi), np.where(rising, hi, lo), c], axis=1)
    k = prices.shape[1]
    bar_close = np.zeros(prices.shape, dtype=bool)
    bar_close[:, -1] = True

    bar_times = frame["t"].to_numpy(dtype="datetime64[us]")
    start = _group_starts(bar_times)
    group_times = bar_times[start[:-1]]
    if daily:
        clock_times = DAILY_TICK_TIMES if k == 4 else DAILY_TICK_TIMES[-1:]
        offsets = np.array([t.hour * 3600 + t.minute * 60 + t.second for t in clock_times], dtype="timedelta64[s]")
        stamps = bar_times + np.timedelta64(int(DAILY_STAMP.total_seconds()), "s")
    else:
        offsets = np.array(MINUTE_TICK_OFFSETS if k == 4 else (0,), dtype="timedelta64[s]")
        stamps = bar_times
    times = (group_times[:, None] + offsets[None, :]).astype("datetime64[us]")
    if times.size > 1 and not (np.diff(times.ravel()) > np.timedelta64(0, "us")).all():
        raise ValueError("minute bars must be at least one minute apart")
    return TickTable(
        codes=frame["code"].to_numpy(dtype=object),
        names=frame["name"].to_numpy(dtype=object),
        prices=prices,
        bar_close=bar_close,
        prev_close=prev_close,
        stamps=stamps.astype("datetime64[us]"),
        times=times,
        start=start,
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
    )


class ReplayFeed:
    """A finite tick stream that moves its :class:`ReplayClock` to each round's time on delivery.

    Pass ``clock=feed.clock`` to the engine (or leave ``clock`` out: the engine takes it from here).
    Closed and opened again (an engine stopped and started), it goes on from the round it delivered
    last: the engine may have stopped inside that round, and skips the ticks of it that it handled
    (its stored progress), so every tick is handled once.
    """

    def __init__(self, table: TickTable, *, clock: ReplayClock | None = None, bars: pd.DataFrame | None = None) -> None:
        self.table = table
        self.bars = bars  # the source bars, for entry signals computed from them (MACD)
        self.clock = clock if clock is not None else ReplayClock()
        self._lock = threading.Lock()
        self._next = 0
        self._last = -1  # index of the round delivered last
        self._closed = False
        first = table.round_time(0) if table.n_rounds else None
        self.clock.bind(self.pending, first)

    @classmethod
    def from_bars(
        cls, bars: pd.DataFrame, *, tick_mode: TickMode = "ohlc", clock: ReplayClock | None = None
    ) -> ReplayFeed:
        return cls(bars_to_ticks(bars, tick_mode), clock=clock, bars=bars)

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
