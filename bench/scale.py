"""Backtests at scale: the whole market's daily bars and a year of minute bars, time and peak memory.

Each case runs in a fresh process (so its peak memory is its own): seeded synthetic bars as the bar store
returns them (sorted by time and code, codes and names as categoricals), one small backtest to load every
compiled kernel, then ``run_backtest(bars)`` with MACD entries and OHLC ticks, all preparation included.

* whole market: 5,000 stocks x 1,000 days (5 M bars). Target: under 0.6 s warm; baseline: vectorbt's
  ``from_signals`` on the same closes and entries as a wide frame, in the same process.
* minute bars: 300 stocks x 250 days x 240 minutes (18 M bars), the same path.
* memory, both: the run's peak RSS over the loaded bars; target: bars plus the run under 2x the bars.

    python bench/scale.py            # both cases, about 3 minutes
    python bench/scale.py --only market

Figures go to ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from common import machine

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
CASES = {
    "market": {"stocks": 5000, "days": 1000, "freq": "1d", "target_s": 0.6, "from_signals": True},
    "minutes": {"stocks": 300, "days": 250, "freq": "1m", "target_s": None, "from_signals": False},
}
MEMORY_TARGET = 2.0  # (bars + the run's peak over them) / bars

PROBE = textwrap.dedent(
    """
    import gc, json, statistics, time
    import numpy as np
    import pandas as pd
    from miniqmt_lab.backtest import run_backtest
    from miniqmt_lab.bars import sample_bars

    def status_mb(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024

    t0 = time.perf_counter()
    bars = sample_bars(STOCKS, DAYS, seed=7, freq=FREQ)
    bars = bars.astype({"stock_code": "category", "stock_name": "category"})
    gc.collect()
    data_s = time.perf_counter() - t0
    bars_mb = bars.memory_usage(deep=True).sum() / 2**20
    run_backtest(sample_bars(20, 60, seed=1, freq=FREQ))  # every kernel loaded before memory is measured
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # Linux: "5" resets the peak RSS to the current RSS
        f.write("5")
    rss_before = status_mb("VmRSS:")
    t1 = time.perf_counter()
    result = run_backtest(bars)
    first_s = time.perf_counter() - t1
    peak = status_mb("VmHWM:")
    trades = len(result.trades)
    del result
    warm = []
    for _ in range(3):
        t2 = time.perf_counter()
        run_backtest(bars)
        warm.append(time.perf_counter() - t2)
    out = dict(rows=len(bars), bars_mb=bars_mb, data_s=data_s, first_run_s=first_s,
               warm_run_s=statistics.median(warm), trades=trades, rss_before_mb=rss_before, peak_rss_mb=peak,
               run_over_bars_mb=peak - rss_before)
    if FROM_SIGNALS:
        import vectorbt as vbt
        from miniqmt_lab.backtest import prepare_bars
        data = prepare_bars(bars)
        close = data.close_frame()
        grid = np.zeros(data.shape, dtype=bool)
        rows = data.stream
        grid[np.repeat(rows.group_bar, np.diff(rows.start)), rows.col] = data.macd_entries()
        entries = pd.DataFrame(grid, index=close.index, columns=close.columns)
        def from_signals():
            return vbt.Portfolio.from_signals(close, entries, False, sl_stop=0.075, tp_stop=0.06, sl_trail=True,
                                              fees=0.0003, init_cash=1_000_000.0)
        from_signals()
        times = []
        for _ in range(3):
            t3 = time.perf_counter()
            from_signals()
            times.append(time.perf_counter() - t3)
        out["from_signals_warm_s"] = statistics.median(times)
    print(json.dumps(out))
    """
)


def probe(case: dict[str, Any]) -> dict[str, Any]:
    header = (f"STOCKS = {case['stocks']}\nDAYS = {case['days']}\nFREQ = {case['freq']!r}\n"
              f"FROM_SIGNALS = {case['from_signals']}\n")
    proc = subprocess.run([sys.executable, "-c", header + PROBE], capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ))
    if proc.returncode != 0:
        raise RuntimeError(f"probe failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(figures: dict[str, Any]) -> str:
    lines = [f"backtests at scale ({figures['machine']['cpus']} CPUs); targets in brackets", "-" * 100]
    for name, f in figures["cases"].items():
        case = CASES[name]
        shape = f"{case['stocks']} stocks x {case['days']} days, {case['freq']}: {f['rows'] / 1e6:.1f} M bars"
        lines.append(f"{name}: {shape}, {f['bars_mb']:.0f} MB loaded")
        target = f" [< {case['target_s']} s]" if case["target_s"] else ""
        baseline = ""
        if "from_signals_warm_s" in f:
            speedup = f["from_signals_warm_s"] / f["warm_run_s"]
            baseline = f"; from_signals {f['from_signals_warm_s']:.2f} s: x{speedup:.1f}"
        lines.append(f"  run_backtest warm {f['warm_run_s']:8.2f} s{target}{baseline}; first {f['first_run_s']:.2f} s,"
                     f" {f['trades']} trades")
        ratio = (f["bars_mb"] + f["run_over_bars_mb"]) / f["bars_mb"]
        lines.append(f"  peak memory: bars {f['bars_mb']:.0f} MB + run {f['run_over_bars_mb']:.0f} MB ="
                     f" x{ratio:.2f} of the bars [< x{MEMORY_TARGET:.0f}]")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Backtests at the whole market's and minute bars' scale")
    parser.add_argument("--only", choices=sorted(CASES), help="run one case")
    args = parser.parse_args()
    started = time.perf_counter()
    previous = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    cases = dict(previous.get("cases", {}))
    for name in [args.only] if args.only else list(CASES):
        cases[name] = probe(CASES[name])
    figures = {"machine": machine(), "cases": cases,
               "bench_seconds": time.perf_counter() - started}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(report(figures))
    print(f"({figures['bench_seconds']:.0f} s; figures in {RESULTS})")


if __name__ == "__main__":
    main()
