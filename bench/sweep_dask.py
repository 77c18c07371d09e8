"""A 200-combination sweep at the whole-market shape: a local Dask cluster against threads.

Issue 14, item 5. 5,000 stocks x 1,000 days (``whole_market.py``), MACD entries, OHLC ticks, 10 stop
losses x 20 initial take-profits. The baseline is ``sweep(..., scheduler="threads")`` in this process;
then the same sweep with ``scheduler="dask"`` (a ``LocalCluster`` of one worker process with a thread
per CPU, started and closed by the sweep: cluster start and the scatter of the prepared bars
included), and on a running ``LocalCluster`` of one single-threaded worker process per CPU
(``scheduler=client``: the scatter included, one copy of the bars per process). The tables must be
equal. On one machine Dask can only add the cost of moving the bars to the workers; what it buys
is more machines (``dask worker tcp://...`` on each). Writes ``bench/results/sweep_dask.json``.

    python bench/sweep_dask.py
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from common import finish, machine
from whole_market import N_DAYS, N_STOCKS, SEED, whole_market_bars

RESULTS = Path(__file__).resolve().parent / "results" / "sweep_dask.json"
GRID = {
    "stop_loss_ratio": [round(-0.03 - 0.01 * i, 2) for i in range(10)],
    "initial_take_profit_ratio": [round(0.02 + 0.005 * i, 3) for i in range(20)],
}


def once(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> dict[str, Any]:
    from distributed import Client, LocalCluster

    from miniqmt_lab.backtest import prepare_bars, sweep

    workers = os.cpu_count() or 1
    data = prepare_bars(whole_market_bars())
    sweep(data, {"stop_loss_ratio": [-0.05, -0.06]}, progress=False)  # loads the loop, computes the entries
    n_combos = len(GRID["stop_loss_ratio"]) * len(GRID["initial_take_profit_ratio"])
    bar_evals = data.close.size * n_combos

    threads_s, on_threads = once(lambda: sweep(data, GRID, progress=False, scheduler="threads", n_jobs=workers))
    dask_s, on_dask = once(lambda: sweep(data, GRID, progress=False, scheduler="dask", n_jobs=workers))
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        sweep(data, {"stop_loss_ratio": [-0.05]}, progress=False, scheduler=client)  # workers load the loop
        client_s, on_client = once(lambda: sweep(data, GRID, progress=False, scheduler=client))
    for other in (on_dask, on_client):
        pd.testing.assert_frame_equal(other.table, on_threads.table)
        pd.testing.assert_frame_equal(other.equity, on_threads.equity)
    return {
        "machine": machine(),
        "data": {"stocks": N_STOCKS, "days": N_DAYS, "seed": SEED, "combinations": n_combos, "workers": workers},
        "threads_s": threads_s,
        "dask_local_cluster_s": dask_s,
        "dask_running_cluster_s": client_s,
        "ratio_dask_local_cluster_vs_threads": dask_s / threads_s,
        "ratio_dask_running_cluster_vs_threads": client_s / threads_s,
        "bar_evals_per_s_threads": bar_evals / threads_s,
        "bar_evals_per_s_dask_running_cluster": bar_evals / client_s,
        "tables_identical": True,
    }


def report(f: dict[str, Any]) -> str:
    d = f["data"]
    rows = [
        (f"threads ({d['workers']})", f["threads_s"], "baseline"),
        (f"scheduler='dask' (1 worker process x {d['workers']} threads, started, closed)", f["dask_local_cluster_s"],
         f"x{f['ratio_dask_local_cluster_vs_threads']:.2f} the time of threads"),
        (f"Client of a running cluster ({d['workers']} processes x 1 thread)", f["dask_running_cluster_s"],
         f"x{f['ratio_dask_running_cluster_vs_threads']:.2f} the time of threads"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"sweep of {d['combinations']} combinations, {d['stocks']} stocks x {d['days']} days, OHLC ticks, "
             f"{f['machine']['cpus']} CPUs, load {f['machine']['load_average'][0]:.1f}", "-" * (width + 50)]
    lines += [f"{name:<{width}}  {seconds:7.1f} s  {note}" for name, seconds, note in rows]
    lines.append(f"tables identical: {f['tables_identical']}; "
                 f"{f['bar_evals_per_s_threads'] / 1e6:.0f} M bar-evaluations/s on threads")
    return "\n".join(lines)


if __name__ == "__main__":
    finish(main, report, RESULTS)
