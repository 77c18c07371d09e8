"""Backtest analytics at the whole-market shape: the summary without vectorbt, ``stats()`` once it is loaded.

Targets (issue 14, item 2), on 5,000 stocks x 1,000 days (``whole_market.py``), MACD entries, OHLC ticks:
the summary metrics (total return, max drawdown, Sharpe, trades, win rate) under 0.2 s without
importing vectorbt; ``result.stats()`` under 1 s on a result once vectorbt is loaded. The baseline,
run in the same process on the same portfolios, is vectorbt's own ``Portfolio.stats`` (what
``stats()`` called before: the group rebuilt from per-stock arrays of every bar). Each timed call gets
a result of its own ``run_backtest`` (nothing derived yet), the Portfolio build included.
Writes ``bench/results/analytics.json``.

    python bench/analytics.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from common import finish, machine
from whole_market import N_DAYS, N_STOCKS, SEED, whole_market_bars

RESULTS = Path(__file__).resolve().parent / "results" / "analytics.json"
SUMMARY_TARGET_S, STATS_TARGET_S = 0.2, 1.0


def timed(fn: Callable[[Any], Any], new_result: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``fn(result)`` over ``repeat`` results of their own (the machine may be shared:
    the median resists outliers); making each result is not timed."""
    times = []
    for _ in range(repeat):
        result = new_result()
        start = time.perf_counter()
        fn(result)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def largest_difference(ours: pd.Series, theirs: pd.Series) -> float:
    """Largest relative difference over vectorbt's numeric rows; inf if a row is missing or differs in kind."""
    worst = 0.0
    for name, expected in theirs.items():
        got = ours.get(name)
        if isinstance(expected, float):
            if pd.isna(expected) and pd.isna(got):
                continue
            worst = max(worst, abs(got - expected) / max(abs(expected), 1e-12))
        elif got != expected:
            return float("inf")
    return worst


def main() -> dict[str, Any]:
    from miniqmt_lab.backtest import prepare_bars, run_backtest
    from miniqmt_lab.backtest.analytics import year_freq

    data = prepare_bars(whole_market_bars())
    result = run_backtest(data)  # compiles or loads the loop, computes the MACD entries once

    def fresh() -> Any:
        return run_backtest(data)  # a result of its own for every timed call: nothing derived yet

    summary_s = timed(lambda r: r.summary, fresh, 5)
    vectorbt_after_summary = "vectorbt" in sys.modules

    start = time.perf_counter()
    import vectorbt  # noqa: F401  (the import the targets exclude)

    import_s = time.perf_counter() - start
    first_stats_s = timed(lambda r: r.stats(), fresh, 1)
    portfolio_s = timed(lambda r: r.portfolio, fresh, 3)
    stats_s = timed(lambda r: r.stats(), fresh, 5)
    settings = {"year_freq": year_freq(data)}
    vectorbt_stats_s = timed(lambda r: r.portfolio.stats(settings=settings), fresh, 3)
    ours, theirs = result.stats(), fresh().portfolio.stats(settings=settings)
    return {
        "machine": machine(vectorbt=sys.modules["vectorbt"].__version__, pandas=pd.__version__),
        "data": {"stocks": N_STOCKS, "days": N_DAYS, "seed": SEED, "orders": len(result.output.records)},
        "summary_s": summary_s,
        "summary_target_s": SUMMARY_TARGET_S,
        "vectorbt_imported_by_summary": vectorbt_after_summary,
        "import_vectorbt_s": import_s,
        "first_stats_in_process_s": first_stats_s,
        "portfolio_build_s": portfolio_s,
        "stats_s": stats_s,
        "stats_target_s": STATS_TARGET_S,
        "vectorbt_own_stats_s": vectorbt_stats_s,
        "speedup_stats_vs_vectorbt_own": vectorbt_stats_s / stats_s,
        "speedup_summary_vs_vectorbt_own_stats": vectorbt_stats_s / summary_s,
        "stats_largest_relative_difference": largest_difference(ours, theirs),
        "summary": {k: float(v) for k, v in result.summary.items()},
    }


def report(f: dict[str, Any]) -> str:
    def s(seconds: float) -> str:
        return f"{seconds:8.3f} s"

    rows = [
        ("summary metrics (no vectorbt)", s(f["summary_s"]), f"target < {f['summary_target_s']:g} s",
         f"x{f['speedup_summary_vs_vectorbt_own_stats']:.0f} vs vectorbt's stats"),
        ("  vectorbt imported by it", f"{f['vectorbt_imported_by_summary']!s:>10}", "", ""),
        ("result.stats(), Portfolio build included", s(f["stats_s"]), f"target < {f['stats_target_s']:g} s",
         f"x{f['speedup_stats_vs_vectorbt_own']:.1f} vs vectorbt's stats"),
        ("  of which building the vbt.Portfolio", s(f["portfolio_build_s"]), "", ""),
        ("vectorbt's own Portfolio.stats, build incl.", s(f["vectorbt_own_stats_s"]), "baseline", ""),
        ("  largest relative difference to it", f"{f['stats_largest_relative_difference']:10.1e}", "", ""),
        ("import vectorbt", s(f["import_vectorbt_s"]), "", ""),
        ("first stats() in the process", s(f["first_stats_in_process_s"]), "", "(vectorbt compiles its reducers)"),
    ]
    width = max(len(r[0]) for r in rows)
    d = f["data"]
    head = (f"backtest analytics ({d['stocks']} stocks x {d['days']} days, {d['orders']} orders, "
            f"{f['machine']['cpus']} CPUs, load {f['machine']['load_average'][0]:.1f})")
    lines = [head, "-" * (width + 60)]
    lines += [f"{name:<{width}}  {a}  {b:<16}  {c}".rstrip() for name, a, b, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    finish(main, report, RESULTS)
