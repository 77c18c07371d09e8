"""Benchmark of the live engine's monitor loop and of an idle engine.

1. Time per tick of the monitor with 10, 100 and 1000 positions held, on a replay whose prices
   stay inside every rule's band (each tick is a full evaluation, no order). The baseline is a plain
   loop calling the same two kernel functions (``observe_price_nb``, ``decide_nb``) on the same
   ticks in this process; the ratio is the engine's overhead (book lock, limits, journal, rounds).
2. CPU share of an engine idling outside trading time (default intervals), by ``time.process_time``
   over a few seconds of wall time.

Run: ``python bench/engine_loop.py`` (about 30 s).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from miniqmt_lab.bars import sample_codes
from miniqmt_lab.config import Settings
from miniqmt_lab.engine import Engine, ReplayClock, ReplayFeed
from miniqmt_lab.factory import build_engine
from miniqmt_lab.market import SHANGHAI, fee_params, lot_rule
from miniqmt_lab.rules import decide_nb, holding, limit_prices_nb, observe_price_nb
from miniqmt_lab.rules.params import rule_params

COST = 10.0
TICKS_PER_CASE = 60_000
BAND = 0.02  # prices within +-2% of cost: no stop, no take-profit, no grid step


def tick_frame(codes: list[str], times: pd.DatetimeIndex, prices: np.ndarray, bar_close: bool) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": np.repeat(times, len(codes)),
            "stamp": np.repeat(times, len(codes)),
            "stock_code": np.tile(codes, len(times)),
            "price": prices.ravel(),
            "bar_close": bar_close,
            "prev_close": COST,
        }
    )


def engine_per_tick(n: int, rounds: int, folder: Path, rng: np.random.Generator) -> tuple[float, pd.DataFrame]:
    """Day 1: the engine opens ``n`` holdings on entry signals; day 2 (a new engine on the same
    database, as after a restart): ``rounds`` rounds of in-band prices, timed by the monitor itself."""
    codes = sample_codes(n)
    settings = Settings().with_values(data_dir=str(folder), auto_trading=True, simulation_balance=1e9,
                                      monitor_interval=0.001)
    opening = pd.DatetimeIndex([pd.Timestamp("2024-03-04 14:57")])
    day1 = tick_frame(codes, opening, np.full(n, COST), bar_close=True)
    entries = pd.DataFrame(True, index=opening, columns=codes)
    run(build_engine(settings, replay=ReplayFeed.from_ticks(day1), entries=entries))

    times = pd.Timestamp("2024-03-05 09:30") + pd.to_timedelta(np.arange(rounds) * 3, unit="s")
    prices = np.round(COST * (1 + rng.uniform(-BAND, BAND, (rounds, n))), 2)
    ticks = tick_frame(codes, pd.DatetimeIndex(times), prices, bar_close=False)
    engine = run(build_engine(settings, replay=ReplayFeed.from_ticks(ticks), entries="none"))
    stats = engine.status()["monitor"]
    assert len(engine.positions()) == n and len(engine.trades()) == n and stats["ticks"] == len(ticks)
    return stats["busy_seconds"] / stats["ticks"], ticks


def run(engine: Engine) -> Engine:
    engine.start()
    try:
        assert engine.wait_idle(120), "replay did not finish"
    finally:
        engine.stop()
    return engine


def baseline_per_tick(ticks: pd.DataFrame) -> float:
    """The kernel alone: observe + decide per tick, holdings in a dict, limits from the kernel."""
    params, fees = rule_params(Settings().rules), fee_params(Settings().fees)
    states = {c: holding(2000, 2000, COST) for c in ticks["stock_code"].unique()}
    codes, prices = ticks["stock_code"].tolist(), ticks["price"].tolist()
    up, down = limit_prices_nb(COST, 0.1)
    started = time.perf_counter()
    for code, p in zip(codes, prices, strict=True):
        state = observe_price_nb(states[code], p)
        states[code] = state
        decide_nb(state, p, 1e9, lot_rule(code), up, down, params, fees)
    return (time.perf_counter() - started) / len(codes)


def idle_cpu_share(folder: Path, seconds: float = 4.0) -> float:
    saturday_noon = dt.datetime(2024, 3, 9, 12, 0, tzinfo=SHANGHAI)
    engine = Engine(Settings().with_values(data_dir=str(folder)), clock=ReplayClock(saturday_noon))
    engine.start()
    try:
        time.sleep(0.5)  # let the threads settle into their waits
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        return (time.process_time() - cpu) / (time.perf_counter() - wall)
    finally:
        engine.stop()


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm"
        engine_per_tick(10, 50, warm, rng)  # compile or load the kernels once
        print("monitor loop, time per tick (no order placed; engine includes book, limits, journal, rounds)")
        print(f"{'positions':>10} {'ticks':>8} {'engine us/tick':>15} {'kernel us/tick':>15} {'ratio':>6}")
        for n in (10, 100, 1000):
            rounds = max(20, math.ceil(TICKS_PER_CASE / n))
            per_tick, ticks = engine_per_tick(n, rounds, Path(tmp) / f"n{n}", rng)
            base = baseline_per_tick(ticks)
            print(f"{n:>10} {len(ticks):>8} {per_tick * 1e6:>15.1f} {base * 1e6:>15.1f} {per_tick / base:>6.1f}")
        share = idle_cpu_share(Path(tmp) / "idle")
        print(f"\nidle engine outside trading time (default intervals): {share:.2%} of one core")


if __name__ == "__main__":
    main()
