"""Helpers of the engine tests: fast settings, crafted price paths, feeds and brokers that misbehave."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from miniqmt_lab.bars import trading_days
from miniqmt_lab.config import Settings
from miniqmt_lab.engine import Engine, ReplayFeed, SimBroker
from miniqmt_lab.schema import BrokerEvent, OrderRequest, TickRound

START = "2024-03-04"  # a Monday; trading_days() skips the exchange's holidays


def fast_settings(tmp_path: Path, **values: object) -> Settings:
    """Paper settings with short intervals and the database under ``tmp_path``."""
    base = {
        "data_dir": str(tmp_path / "data"),
        "log_dir": str(tmp_path / "logs"),
        "auto_trading": True,
        "monitor_interval": 0.01,
        "strategy_interval": 0.05,
        "data_update_interval": 0.5,
        "call_timeout": 2.0,
        "position_query_interval": 0.05,
        "sqlite_sync_interval": 0.2,
        "thread_check_interval": 0.1,
        "restart_cooldown": 0.0,
        "idle_sleep": 0.05,
        # replays compress a day into a few rounds of replay time (see factory.REPLAY_ORDERS_PER_MINUTE)
        "max_orders_per_minute": 1_000_000,
    }
    base.update(values)
    return Settings().with_values(**base)


def close_bars(paths: Mapping[str, Sequence[float]], start: str = START, names: Mapping[str, str] | None = None
               ) -> pd.DataFrame:
    """Daily bars whose open, high, low and close all equal the given path (one price per day)."""
    n = max(len(p) for p in paths.values())
    days = trading_days(start, n)
    rows = []
    for code, path in paths.items():
        for day, price in zip(days, path, strict=False):
            rows.append((code, (names or {}).get(code, ""), day, price, price, price, price, 1e6))
    return pd.DataFrame(rows, columns=["stock_code", "stock_name", "date", "open", "high", "low", "close", "volume"])


def entry_days(bars: pd.DataFrame, days: Mapping[str, Sequence[int]]) -> pd.DataFrame:
    """A boolean (date x code) entry frame, True on the given day numbers of each code."""
    dates = sorted(bars["date"].unique())
    codes = sorted(bars["stock_code"].unique())
    frame = pd.DataFrame(False, index=pd.DatetimeIndex(dates), columns=codes)
    for code, numbers in days.items():
        for i in numbers:
            frame.iloc[i, frame.columns.get_loc(code)] = True
    return frame


def run_replay(settings: Settings, feed: ReplayFeed, entries: object = "none", timeout: float = 60.0,
               **engine_args: object) -> Engine:
    """Start an engine on ``feed``, wait until the replay is processed, stop it; returns the engine."""
    engine = Engine(settings, feed=feed, entries=entries, **engine_args)
    engine.start()
    try:
        assert engine.wait_idle(timeout), "the replay did not finish in time"
    finally:
        engine.stop()
    return engine


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class GatedFeed:
    """A replay feed that delivers a round only when the test allows it (``step``).

    A round delivered again needs no permit: after a restart the replay resumes with the round it
    delivered last, which the engine skips when it had finished it.
    """

    def __init__(self, replay: ReplayFeed) -> None:
        self.replay = replay
        self.clock = replay.clock
        self.bars = replay.bars  # MACD entries come from the replayed bars
        self._permits = threading.Semaphore(0)
        self._delivered = 0  # rounds let through so far

    def step(self, engine: Engine, rounds: int = 1, timeout: float = 10.0) -> None:
        """Deliver ``rounds`` more rounds and wait until the engine has processed them."""
        target = engine.trader.stats.rounds + rounds
        for _ in range(rounds):
            self._permits.release()
        wait_for(lambda: engine.trader.stats.rounds >= target, timeout, f"round {target}")

    def open(self) -> None:
        self.replay.open()

    def watch(self, codes: Sequence[str]) -> None:
        self.replay.watch(codes)

    def next_round(self, timeout: float) -> TickRound | None:
        if self.replay.position >= self._delivered and not self._permits.acquire(timeout=timeout):
            return None
        rnd = self.replay.next_round(timeout)
        self._delivered = max(self._delivered, self.replay.position)
        return rnd

    def finished(self) -> bool:
        return self.replay.finished()

    def close(self) -> None:
        self.replay.close()


class FlakyFeed:
    """A replay feed whose ``next_round`` raises on the calls numbered in ``failing`` (1-based)."""

    def __init__(self, replay: ReplayFeed, failing: Callable[[int], bool]) -> None:
        self.replay = replay
        self.clock = replay.clock
        self.bars = replay.bars  # MACD entries come from the replayed bars
        self.failing = failing
        self.calls = 0

    def open(self) -> None:
        self.replay.open()

    def watch(self, codes: Sequence[str]) -> None:
        self.replay.watch(codes)

    def next_round(self, timeout: float) -> TickRound | None:
        self.calls += 1
        if self.failing(self.calls):
            raise RuntimeError(f"injected feed failure on call {self.calls}")
        return self.replay.next_round(timeout)

    def finished(self) -> bool:
        return self.replay.finished()

    def close(self) -> None:
        self.replay.close()


class DelayedBroker:
    """A SimBroker whose events are held back until ``release()``, like a slow real broker."""

    name = "DelayedBroker"

    def __init__(self, settings: Settings) -> None:
        self.inner = SimBroker(settings)
        self.events: queue.Queue[BrokerEvent] = queue.Queue()
        self.held: list[BrokerEvent] = []
        self.submitted: list[OrderRequest] = []

    def attach(self, clock: object, trades: pd.DataFrame, quotes: object = None) -> None:
        self.inner.attach(clock, trades, quotes)

    def observe_tick(self, tick: object, base: float, band: tuple[float, float] | None = None) -> None:
        self.inner.observe_tick(tick, base, band)

    def submit(self, order: OrderRequest) -> str:
        order_id = self.inner.submit(order)
        self.submitted.append(order)
        while not self.inner.events.empty():
            self.held.append(self.inner.events.get_nowait())
        return order_id

    def release(self) -> None:
        held, self.held = self.held, []
        for event in held:
            self.events.put(event)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def ledger_identity(trades: pd.DataFrame, initial_cash: float) -> dict[str, float]:
    """Cash and holdings cost recomputed from a trade ledger (Store.ledger_frame) with its realised P&L."""
    realised = float(trades["realised"].sum())
    fees = float(trades["commission"].sum())
    return {"expected": initial_cash + realised - fees, "fees": fees, "realised": realised}


def holdings_from_trades(trades: pd.DataFrame) -> dict[str, int]:
    signed = np.where(trades["side"] == "BUY", trades["volume"], -trades["volume"])
    totals = pd.Series(signed, index=trades["stock_code"]).groupby(level=0).sum()
    return {code: int(v) for code, v in totals.items() if v}
