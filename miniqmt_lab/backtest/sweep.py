"""Parameter sweeps: every combination of a grid is one more cash pool of the same simulation loop.

Combinations run in chunks, on threads (the loop releases the GIL), local processes or a Dask
cluster (:mod:`miniqmt_lab.backtest.schedulers`); the progress bar counts combinations. A sweep keeps
each combination's equity curve and summary, not its trades: ``SweepResult.run(i)`` replays one
combination with trades and a portfolio.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from miniqmt_lab.backtest.analytics import summary_metrics
from miniqmt_lab.backtest.core import SUMMARY_METRICS, BacktestResult, run_backtest
from miniqmt_lab.backtest.nb import SimOutput
from miniqmt_lab.backtest.prepare import (
    BARS_PER_YEAR,
    BarData,
    Entries,
    TickMode,
    day_facts,
    entry_signals,
    grid_combinations,
    prepare_bars,
    rule_settings,
    tick_stream,
)
from miniqmt_lab.backtest.schedulers import check_scheduler, loop_inputs, run_chunks
from miniqmt_lab.config import FeeSettings, RuleSettings, Settings
from miniqmt_lab.market import fee_table
from miniqmt_lab.rules.params import rule_table

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from distributed import Client


def sweep(
    bars: pd.DataFrame | BarData,
    grid: Mapping[str, Any],
    entries: Entries = "macd",
    init_cash: float = 1_000_000.0,
    tick_mode: TickMode = "ohlc",
    progress: bool | Callable[[int, int], object] = True,
    *,
    base: RuleSettings | Mapping[str, Any] | None = None,
    realism: bool = True,
    fees: FeeSettings | None = None,
    chunk_size: int | None = None,
    n_jobs: int | None = None,
    scheduler: str | Client | None = None,
    actions: pd.DataFrame | None = None,
    instruments: pd.DataFrame | None = None,
) -> SweepResult:
    """Backtest every combination of ``grid`` (``{flat RuleSettings field: list of values}``).

    Fields not in the grid come from ``base`` (default settings). The bars are prepared once; chunks
    of ``chunk_size`` combinations run where ``scheduler`` says (:mod:`~miniqmt_lab.backtest.schedulers`):
    ``None``/``"threads"`` (``n_jobs`` threads, default one per CPU), ``"processes"`` (``n_jobs`` local
    processes), ``"dask"`` (a local Dask cluster: one worker process of ``n_jobs`` threads, closed
    afterwards), a Dask scheduler address ``"tcp://host:8786"`` or a ``distributed.Client``. The
    table is the same wherever it runs.
    ``progress``: a tqdm bar over combinations when True, or a callable given ``(combinations done,
    combinations in all)`` after each chunk (a widget's progress bar). ``actions`` / ``instruments``:
    corporate actions and listing dates, as in ``run_backtest`` (default: ``bars.attrs``).
    """
    data = prepare_bars(bars, actions=actions, instruments=instruments)
    base_rules = rule_settings(base)
    combos = grid_combinations(grid)
    settings = Settings(rules=base_rules)
    rules = [settings.with_values(**combo).rules for combo in combos]
    if not init_cash > 0:
        raise ValueError(f"init_cash must be > 0, got {init_cash!r}")
    check_scheduler(scheduler)
    days = day_facts(data, entry_signals(data, entries))
    fee = fee_table(fees or FeeSettings(), data.day_dates)
    # simulate_nb's arguments but the rule table (each chunk's own), with no room for trades or signals
    inputs = loop_inputs((tick_stream(data, tick_mode), days, None, fee, bool(realism), float(init_cash), 0, 0))
    done: dict[int, SimOutput] = {}
    with _progress(len(rules), progress) as advance:
        for chunk, output in run_chunks(inputs, rule_table(rules), scheduler, n_jobs, chunk_size):
            done[chunk.start] = output
            advance(len(chunk))
    outputs = [done[start] for start in sorted(done)]
    equity = np.hstack([o.equity for o in outputs])
    metrics = summary_metrics(
        equity,
        float(init_cash),
        np.concatenate([o.closed for o in outputs]),
        np.concatenate([o.wins for o in outputs]),
        BARS_PER_YEAR[data.freq],
    )
    params = pd.DataFrame(combos, columns=list(grid))
    result_table = pd.concat([params, pd.DataFrame(metrics, columns=list(SUMMARY_METRICS))], axis=1)
    result_table.index.name = "combination"
    return SweepResult(
        table=result_table,
        equity=pd.DataFrame(equity, index=data.index, columns=result_table.index),
        rules=tuple(rules),
        bars=data,
        entries=entries,
        init_cash=float(init_cash),
        tick_mode=tick_mode,
        realism=realism,
        fees=fees or FeeSettings(),
    )


@contextlib.contextmanager
def _progress(total: int, progress: bool | Callable[[int, int], object]) -> Iterator[Callable[[int], None]]:
    """A function to call with the number of combinations each finished chunk held."""
    done = 0
    if callable(progress):

        def report(n: int) -> None:
            nonlocal done
            done += n
            progress(done, total)

        yield report
    elif progress:
        from tqdm.auto import tqdm

        with tqdm(total=total, desc="sweep", unit="combination") as bar:
            yield bar.update
    else:
        yield lambda n: None


@dataclass(frozen=True, eq=False)
class SweepResult:
    """Every combination of a sweep: its parameters, summary metrics and equity curve."""

    table: pd.DataFrame  # one row per combination: the grid's fields, then SUMMARY_METRICS
    equity: pd.DataFrame = field(repr=False)  # bar x combination
    rules: tuple[RuleSettings, ...] = field(repr=False)
    bars: BarData = field(repr=False)
    entries: Entries = field(repr=False)
    init_cash: float
    tick_mode: TickMode
    realism: bool
    fees: FeeSettings

    @property
    def params(self) -> list[str]:
        """The swept fields."""
        return [c for c in self.table.columns if c not in SUMMARY_METRICS]

    def best(self, metric: str = "total_return") -> pd.Series:
        """The row with the highest ``metric`` (max_drawdown is negative: highest is shallowest)."""
        return self.table.loc[self.table[metric].idxmax()]

    def run(self, combination: int) -> BacktestResult:
        """The full backtest (trades, portfolio) of one combination, a row label of ``table``."""
        return run_backtest(self.bars, self.rules[combination], self.entries, self.init_cash, self.tick_mode,
                            self.realism, self.fees)

    def heatmap(self, x: str, y: str, metric: str = "total_return") -> go.Figure:
        from miniqmt_lab.backtest.plots import sweep_heatmap

        return sweep_heatmap(self.table, x, y, metric)
