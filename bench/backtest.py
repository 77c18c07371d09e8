"""Backtest speed: the rule-kernel loop against vectorbt's from_signals, a bare loop and plain Python.

Seeded synthetic bars, 500 stocks x 1000 days, as the bar store returns them (a long frame sorted by date
and code, codes and names as categoricals). Prints a compact table (each target next to its figure and
the ratio against its baseline measured in this run) and writes the figures to
``bench/results/backtest.json``. A bar-evaluation is one bar of one stock under one parameter combination
(all of that bar's ticks: four in "ohlc" mode, one in "close" mode).

    python bench/backtest.py

Measured: (1) run_backtest from the long frame (all preparation: market simulation, MACD entries) and on
a prepared BarData, and a 100-combination sweep; (2) vectorbt's ``Portfolio.from_signals`` with stop
loss, take profit and a trailing stop on the same closes and MACD entries as a wide frame, warm (target:
run_backtest from the long frame at least 2x faster); (3) the simulation loop against the bare loop of
``bench/bare_loop.py`` (target: within 3x); (4) the same loop as plain Python (``NUMBA_DISABLE_JIT=1``
in a subprocess, on a 50-stock x 250-day subset, scaled per bar-evaluation); (5) the first run_backtest
of a fresh process with numba's cache warm and cold, and that process's peak memory. The trade lists'
digests are recorded so that a speed change can show it left every trade alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import finish, machine

N_STOCKS, N_DAYS, SEED = 500, 1000, 7
SUBSET_STOCKS, SUBSET_DAYS = 50, 250
SWEEP_GRID = {
    "stop_loss_ratio": [round(-0.03 - 0.01 * i, 2) for i in range(10)],
    "initial_take_profit_ratio": [round(0.03 + 0.01 * i, 2) for i in range(10)],
}
RESULTS = Path(__file__).resolve().parent / "results" / "backtest.json"

# the fresh-process probe: import, load data, first backtest, peak memory
FIRST_RUN = textwrap.dedent(
    f"""
    import json, time
    t0 = time.perf_counter()
    from miniqmt_lab.backtest import run_backtest
    from miniqmt_lab.bars import sample_bars
    t1 = time.perf_counter()
    bars = sample_bars({N_STOCKS}, {N_DAYS}, seed={SEED})
    bars = bars.astype({{"stock_code": "category", "stock_name": "category"}})
    def status_mb(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024
    # Linux: "5" resets the peak RSS, so the peak below is the backtest's, not the data generator's
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    rss_before = status_mb("VmRSS:")
    t2 = time.perf_counter()
    result = run_backtest(bars)
    t3 = time.perf_counter()
    out = dict(import_s=t1 - t0, data_s=t2 - t1, first_run_s=t3 - t2, trades=len(result.trades),
               rss_before_mb=rss_before, peak_rss_mb=status_mb("VmHWM:"))
    if WITH_PORTFOLIO:
        t4 = time.perf_counter()
        result.stats()
        out["first_stats_s"] = time.perf_counter() - t4
    print(json.dumps(out))
    """
)

# the plain-Python probe: the same loop and kernel with numba switched off
PLAIN_PYTHON = textwrap.dedent(
    f"""
    import json, time
    from miniqmt_lab.backtest.core import simulate
    from miniqmt_lab.backtest.prepare import day_facts, entry_signals, prepare_bars, tick_stream
    from miniqmt_lab.bars import sample_bars
    from miniqmt_lab.config import FeeSettings, RuleSettings
    bars = sample_bars({N_STOCKS}, {N_DAYS}, seed={SEED})
    codes = sorted(bars["stock_code"].unique())[:{SUBSET_STOCKS}]
    days = sorted(bars["date"].unique())[:{SUBSET_DAYS}]
    data = prepare_bars(bars[bars["stock_code"].isin(codes) & bars["date"].isin(days)])
    stream, days = tick_stream(data, "ohlc"), day_facts(data, entry_signals(data, "macd"))
    t0 = time.perf_counter()
    out = simulate(stream, days, [RuleSettings()], FeeSettings(), 1_000_000.0, data.day_dates)
    print(json.dumps(dict(seconds=time.perf_counter() - t0, bar_evals=data.n_rows, trades=int(out.n_trades.sum()))))
    """
)


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``repeat`` calls (the machine may be shared: the median resists outliers)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def probe(script: str, env: dict[str, str] | None = None, **flags: Any) -> dict[str, Any]:
    header = "".join(f"{name} = {value!r}\n" for name, value in flags.items())
    proc = subprocess.run([sys.executable, "-c", header + script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"probe failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def digest(trades: pd.DataFrame) -> str:
    """A digest of a trade list: equal digests, equal trades (time, code, side, price, volume, fees, rule)."""
    return hashlib.sha256(pd.util.hash_pandas_object(trades, index=False).to_numpy().tobytes()).hexdigest()[:16]


def store_like_bars() -> pd.DataFrame:
    """The bench's bars as the bar store returns them: sorted by date and code, categorical codes and names."""
    from miniqmt_lab.bars import sample_bars

    bars = sample_bars(N_STOCKS, N_DAYS, seed=SEED)
    return bars.astype({"stock_code": "category", "stock_name": "category"})


def main() -> dict[str, Any]:
    from miniqmt_lab.backtest import prepare_bars, run_backtest, sweep
    from miniqmt_lab.backtest.nb import simulate_nb
    from miniqmt_lab.backtest.prepare import day_facts, entry_signals, tick_stream
    from miniqmt_lab.config import FeeSettings, RuleSettings
    from miniqmt_lab.market import fee_params, fee_table
    from miniqmt_lab.rules.params import rule_params, rule_table

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bare_loop import bare_loop_nb

    figures: dict[str, Any] = {"machine": machine(),
                               "data": {"stocks": N_STOCKS, "days": N_DAYS, "seed": SEED}}
    bars = store_like_bars()
    data = prepare_bars(bars)
    bar_evals = data.n_rows
    run_backtest(bars)  # loads (or compiles) every kernel once

    # -- (1) throughput -----------------------------------------------------------------------------
    single: dict[str, float] = {}
    single["run_from_long_frame_s"] = timed(lambda: run_backtest(bars), 7)
    for mode in ("ohlc", "close"):
        single[f"run_{mode}_s"] = timed(lambda mode=mode: run_backtest(data, tick_mode=mode), 7)
    entries = entry_signals(data, "macd")
    stream, days = tick_stream(data, "ohlc"), day_facts(data, entries)
    args = (stream, days, rule_table([RuleSettings()]), fee_table(FeeSettings(), data.day_dates), True, 1_000_000.0,
            100_000, 100_000)
    grids = [np.ascontiguousarray(g) for g in (data.open, data.high, data.low, data.close)]
    entry_grid = np.zeros(data.shape, dtype=bool)
    entry_grid[np.repeat(stream.group_bar, np.diff(stream.start)), stream.col] = entries
    bare_args = (*grids, entry_grid, rule_params(RuleSettings()), fee_params(FeeSettings()), 1_000_000.0)
    bare_loop_nb(*bare_args)
    # interleaved, so that a busy moment of the machine falls on both
    loop_times, bare_times = [], []
    for _ in range(9):
        loop_times.append(timed(lambda: simulate_nb(*args), 1))
        bare_times.append(timed(lambda: bare_loop_nb(*bare_args), 1))
    single["loop_only_ohlc_s"] = statistics.median(loop_times)
    single["bare_loop_ohlc_s"] = statistics.median(bare_times)
    trades = {mode: run_backtest(bars, tick_mode=mode).trades for mode in ("ohlc", "close")}
    single["trades"] = len(trades["ohlc"])
    n_combos = int(np.prod([len(v) for v in SWEEP_GRID.values()]))
    sweep(data, {"stop_loss_ratio": [-0.05, -0.06]}, progress=False)  # warm the thread pool path
    sweep_s = timed(lambda: sweep(data, SWEEP_GRID, progress=False), 2)
    sweep_one_thread_s = timed(lambda: sweep(data, SWEEP_GRID, progress=False, n_jobs=1), 1)
    figures["throughput"] = {
        **single,
        "loop_vs_bare_loop": single["loop_only_ohlc_s"] / single["bare_loop_ohlc_s"],
        "sweep_combinations": n_combos,
        "sweep_s": sweep_s,
        "sweep_one_thread_s": sweep_one_thread_s,
        "bar_evals_per_s_run_from_long_frame": bar_evals / single["run_from_long_frame_s"],
        "bar_evals_per_s_run_ohlc": bar_evals / single["run_ohlc_s"],
        "bar_evals_per_s_run_close": bar_evals / single["run_close_s"],
        "bar_evals_per_s_loop_ohlc": bar_evals / single["loop_only_ohlc_s"],
        "bar_evals_per_s_sweep": bar_evals * n_combos / sweep_s,
        "bar_evals_per_s_sweep_one_thread": bar_evals * n_combos / sweep_one_thread_s,
        "trades_digest": {mode: digest(t) for mode, t in trades.items()},
    }

    # -- (2) vectorbt from_signals ------------------------------------------------------------------
    start = time.perf_counter()
    import vectorbt as vbt

    import_s = time.perf_counter() - start
    close = data.close_frame()
    entry_frame = pd.DataFrame(entry_grid, index=close.index, columns=close.columns)

    def from_signals() -> Any:
        return vbt.Portfolio.from_signals(close, entry_frame, False, sl_stop=0.075, tp_stop=0.06, sl_trail=True,
                                          fees=0.0003, init_cash=1_000_000.0)

    def from_signals_ohlc_shared() -> Any:
        return vbt.Portfolio.from_signals(close, entry_frame, False, open=data.open, high=data.high, low=data.low,
                                          sl_stop=0.075, tp_stop=0.06, sl_trail=True, fees=0.0003, size=20_000.0,
                                          size_type="value", init_cash=1_000_000.0, group_by=True,
                                          cash_sharing=True)

    first_s = timed(from_signals, 1)
    from_signals_ohlc_shared()
    # interleaved with the long-frame run it is compared with
    fs_times, long_times = [], []
    for _ in range(5):
        fs_times.append(timed(from_signals, 1))
        long_times.append(timed(lambda: run_backtest(bars), 1))
    warm_s, long_s = statistics.median(fs_times), statistics.median(long_times)
    warm_ohlc_s = timed(from_signals_ohlc_shared, 3)
    pf_s = timed(lambda: run_backtest(data).portfolio, 3)
    figures["vectorbt"] = {
        "import_s": import_s,
        "from_signals_first_s": first_s,
        "from_signals_warm_s": warm_s,
        "run_from_long_frame_interleaved_s": long_s,
        "from_signals_ohlc_shared_cash_warm_s": warm_ohlc_s,
        "run_ohlc_with_portfolio_s": pf_s,
        "speedup_run_from_long_frame_vs_from_signals": warm_s / long_s,
        "speedup_run_ohlc_vs_from_signals": warm_s / single["run_ohlc_s"],
        "speedup_run_close_vs_from_signals": warm_s / single["run_close_s"],
        "speedup_run_ohlc_with_portfolio_vs_from_signals": warm_s / pf_s,
        "speedup_run_ohlc_vs_from_signals_ohlc_shared_cash": warm_ohlc_s / single["run_ohlc_s"],
    }

    # -- (3) plain Python ---------------------------------------------------------------------------
    plain = probe(PLAIN_PYTHON, {"NUMBA_DISABLE_JIT": "1"})
    python_per_eval = plain["seconds"] / plain["bar_evals"]
    jit_per_eval = single["loop_only_ohlc_s"] / bar_evals
    figures["plain_python"] = {
        **plain,
        "bar_evals_per_s": 1.0 / python_per_eval,
        "speedup_loop_vs_plain_python": python_per_eval / jit_per_eval,
        "speedup_run_vs_plain_python": python_per_eval / (single["run_ohlc_s"] / bar_evals),
    }

    # -- (4) cold start and memory ------------------------------------------------------------------
    warm = probe(FIRST_RUN, WITH_PORTFOLIO=True)
    with tempfile.TemporaryDirectory() as cache:
        cold = probe(FIRST_RUN, {"NUMBA_CACHE_DIR": cache}, WITH_PORTFOLIO=False)
    figures["fresh_process"] = {"warm_cache": warm, "cold_cache": cold}
    return figures


def report(f: dict[str, Any]) -> str:
    t, v, p, fp = f["throughput"], f["vectorbt"], f["plain_python"], f["fresh_process"]
    warm, cold = fp["warm_cache"], fp["cold_cache"]

    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:8.1f} ms"

    def s(seconds: float) -> str:
        return f"{seconds:8.2f} s "

    def rate(per_s: float) -> str:
        return f"{per_s / 1e6:7.1f} M bar-evals/s"

    rows = [
        ("run_backtest from the long frame, OHLC, MACD", ms(v["run_from_long_frame_interleaved_s"]),
         f"x{v['speedup_run_from_long_frame_vs_from_signals']:.1f} vs from_signals (target >= x2.0)"),
        ("  again on a prepared BarData", ms(t["run_ohlc_s"]), rate(t["bar_evals_per_s_run_ohlc"])),
        ("  close ticks", ms(t["run_close_s"]), rate(t["bar_evals_per_s_run_close"])),
        ("  loop only, OHLC", ms(t["loop_only_ohlc_s"]),
         f"x{t['loop_vs_bare_loop']:.2f} of the bare loop's {t['bare_loop_ohlc_s'] * 1e3:.1f} ms (target <= x3)"),
        (f"sweep {t['sweep_combinations']} combinations, OHLC", s(t["sweep_s"]), rate(t["bar_evals_per_s_sweep"])),
        ("  on one thread", s(t["sweep_one_thread_s"]), rate(t["bar_evals_per_s_sweep_one_thread"])),
        ("from_signals (close, wide frame, warm)", ms(v["from_signals_warm_s"]),
         f"x{v['speedup_run_ohlc_vs_from_signals']:.1f} run on BarData"),
        ("  run OHLC + build vbt.Portfolio", ms(v["run_ohlc_with_portfolio_s"]),
         f"x{v['speedup_run_ohlc_with_portfolio_vs_from_signals']:.1f}"),
        ("from_signals (OHLC, shared cash)", ms(v["from_signals_ohlc_shared_cash_warm_s"]),
         f"x{v['speedup_run_ohlc_vs_from_signals_ohlc_shared_cash']:.1f} again"),
        ("plain Python loop (subset, scaled)", f"{p['bar_evals_per_s'] / 1e3:8.1f} k/s",
         f"x{p['speedup_loop_vs_plain_python']:.0f} loop, x{p['speedup_run_vs_plain_python']:.0f} run"),
        ("first run_backtest, fresh process, warm cache", s(warm["first_run_s"]), f"+import {warm['import_s']:.1f} s"),
        ("  first .stats() (imports vectorbt)", s(warm["first_stats_s"]), ""),
        ("first run_backtest, fresh process, cold cache", s(cold["first_run_s"]), f"+import {cold['import_s']:.1f} s"),
        ("peak RSS during that first run", f"{warm['peak_rss_mb']:8.0f} MB",
         f"{warm['peak_rss_mb'] - warm['rss_before_mb']:+.0f} MB over the loaded data"),
        ("trade digests (ohlc, close)", "", f"{t['trades_digest']['ohlc']} {t['trades_digest']['close']}"),
    ]
    width = max(len(r[0]) for r in rows)
    n = f"{f['data']['stocks']} stocks x {f['data']['days']} days, {f['machine']['cpus']} CPUs"
    lines = [f"backtest benchmark ({n}); x = times faster", "-" * (width + 45)]
    lines += [f"{name:<{width}}  {a}  {b}" for name, a, b in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    finish(main, report, RESULTS)
