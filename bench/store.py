"""Bar store speed: ``BarStore.query()`` of a whole-market store against a plain fetch sorted in pandas.

Builds a store of seeded synthetic bars (2,700 stocks x 1,000 days = 2.7 M bars, the size of the whole
A-share market over about two years) in a temporary folder, with an instruments row per stock and a
cash dividend for a third of the stocks, then times:

1. ``store.query()`` of everything: what a backtest gets (sorted by date then code, codes and names as
   categoricals, attrs with actions and instruments), against the 1 s target; wall time, and the CPU
   time of the process, which a machine shared with other work inflates less;
2. the baseline in the same process: ``SELECT *`` fetched with ``.df()`` and sorted by date and code in
   pandas. Runs alternate between the two, so a shared machine's load falls on both; the ratio is the
   median of baseline time / query time over the pairs (how many times faster);
3. ``store.query(adjust="front")``, and the writes that built the store (for the record);
4. the memory of the returned frame against the baseline's, and the peak RSS the query added.

Run: ``python bench/store.py`` (about a minute). Figures go to ``bench/results/store.json``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import finish, machine

from miniqmt_lab.bars import BarStore, sample_bars

N_STOCKS, N_DAYS, SEED = 2700, 1000, 11
REPEATS = 5
TARGET_S = 1.0
RESULTS = Path(__file__).resolve().parent / "results" / "store.json"


def timed(call: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process over all its threads) of one call."""
    started, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - started, time.process_time() - cpu


def rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def reset_peak() -> bool:
    """Linux: writing 5 to clear_refs resets the peak RSS, so a later VmHWM is the peak since now."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def build(path: Path) -> dict[str, float]:
    bars = sample_bars(N_STOCKS, N_DAYS, seed=SEED)
    codes = bars["stock_code"].unique()
    rng = np.random.default_rng(SEED)
    paying = bars[bars["stock_code"].isin(codes[::3])].groupby("stock_code").sample(1, random_state=SEED)
    # a dividend of about 1% of the ex-date's close: always below the previous close
    actions = pd.DataFrame({
        "stock_code": paying["stock_code"],
        "ex_date": paying["date"],
        "cash_dividend": np.round(paying["close"] * rng.uniform(0.005, 0.015, len(paying)), 3),
    })
    instruments = pd.DataFrame({"stock_code": codes, "listing_date": pd.Timestamp("2010-01-04")})
    with BarStore(path) as store:
        started = time.perf_counter()
        store.write_frame(bars)
        written = time.perf_counter() - started
        store.write_actions(actions)
        store.write_instruments(instruments)
    return {"rows": float(len(bars)), "write_frame_s": written, "actions": float(len(actions))}


def main() -> dict[str, Any]:
    import duckdb

    figures: dict[str, Any] = {
        "machine": machine(duckdb=duckdb.__version__, pandas=pd.__version__),
        "data": {"stocks": N_STOCKS, "days": N_DAYS, "seed": SEED},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bars.duckdb"
        figures["build"] = build(path)
        load_before = os.getloadavg()[0]
        with BarStore(path, read_only=True) as store:
            store.query(codes=["600000.SH"])  # first connection and imports out of the timing

            def baseline() -> pd.DataFrame:
                with duckdb.connect(str(path), read_only=True) as con:
                    frame = con.execute("SELECT * FROM stock_daily_data").df()
                return frame.sort_values(["date", "stock_code"], ignore_index=True)

            # interleaved, so that the load of a shared machine falls on both alike
            base_times, query_times, adjusted_times, query_cpu, base_cpu = [], [], [], [], []
            for _ in range(REPEATS):
                wall, cpu = timed(baseline)
                base_times.append(wall)
                base_cpu.append(cpu)
                wall, cpu = timed(store.query)
                query_times.append(wall)
                query_cpu.append(cpu)
                adjusted_times.append(timed(lambda: store.query(adjust="front"))[0])
            base_mb = baseline().memory_usage(deep=True).sum() / 2**20
            got = store.query()
            rows = len(got)
            query_mb = got.memory_usage(deep=True).sum() / 2**20
            del got
            peak_known = reset_peak()
            before = rss_mb("VmRSS:")
            got = store.query()
            peak_added = rss_mb("VmHWM:") - before if peak_known else float("nan")
            del got
    query_s, base_s = statistics.median(query_times), statistics.median(base_times)
    figures["query"] = {
        "rows": rows,
        "query_s": query_s,
        "query_best_s": min(query_times),
        "query_runs_s": query_times,
        "query_cpu_s": statistics.median(query_cpu),
        "baseline_cpu_s": statistics.median(base_cpu),
        "target_s": TARGET_S,
        "baseline_select_df_sort_s": base_s,
        "baseline_best_s": min(base_times),
        "speedup_vs_baseline": statistics.median(b / q for b, q in zip(base_times, query_times, strict=True)),
        "adjusted_front_s": statistics.median(adjusted_times),
        "frame_mb": query_mb,
        "baseline_frame_mb": base_mb,
        "peak_rss_added_mb": peak_added,
        "load_average_before_after": [load_before, os.getloadavg()[0]],
    }
    return figures


def report(f: dict[str, Any]) -> str:
    q, b = f["query"], f["build"]
    rows = [
        (f"query() of {q['rows'] / 1e6:.1f} M bars, median of {REPEATS}", f"{q['query_s']:6.2f} s",
         f"target {q['target_s']:.1f} s: {'met' if q['query_s'] <= q['target_s'] else 'MISSED'}"
         f" (best {q['query_best_s']:.2f} s)"),
        ("  baseline: SELECT * .df() + pandas sort", f"{q['baseline_select_df_sort_s']:6.2f} s",
         f"query x{q['speedup_vs_baseline']:.1f} faster (best {q['baseline_best_s']:.2f} s)"),
        ("  CPU time of the process (all threads)", f"{q['query_cpu_s']:6.2f} s",
         f"baseline {q['baseline_cpu_s']:.2f} s"),
        ('query(adjust="front")', f"{q['adjusted_front_s']:6.2f} s", ""),
        ("frame memory", f"{q['frame_mb']:6.0f} MB", f"baseline {q['baseline_frame_mb']:.0f} MB"),
        ("peak RSS added by one query", f"{q['peak_rss_added_mb']:6.0f} MB", ""),
        ("write_frame of the whole store", f"{b['write_frame_s']:6.2f} s", ""),
        ("1-min load average before / after", "", "{:.1f} / {:.1f} on {} CPUs".format(
            *q["load_average_before_after"], f["machine"]["cpus"])),
    ]
    width = max(len(r[0]) for r in rows)
    head = f"bar store benchmark ({f['data']['stocks']} stocks x {f['data']['days']} days, {f['machine']['cpus']} CPUs)"
    lines = [head, "-" * (width + 50)]
    lines += [f"{name:<{width}}  {a}  {c}" for name, a, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    finish(main, report, RESULTS)
