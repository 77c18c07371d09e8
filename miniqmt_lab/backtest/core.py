"""``run_backtest``: bars through the simulation loop, wrapped as trades, equity, stats and a vectorbt Portfolio.

vectorbt costs seconds to import, so it is imported only when ``.portfolio`` (or what derives from
it) is first used; trades, equity and the summary come straight from the loop's records.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from miniqmt_lab.backtest.analytics import POSITIONS_NOTE, build_portfolio, portfolio_stats, summary_metrics
from miniqmt_lab.backtest.nb import SIDE_BUY, BarGrid, SimOutput, TickRounds, simulate_nb
from miniqmt_lab.backtest.prepare import (
    BARS_PER_YEAR,
    BarData,
    Entries,
    TickMode,
    bar_grid,
    entry_signals,
    prepare_bars,
    rule_settings,
    tick_rounds,
)
from miniqmt_lab.config import FeeSettings, RuleSettings
from miniqmt_lab.market import fee_params
from miniqmt_lab.rules.params import rule_table
from miniqmt_lab.schema import RULE_NAMES, SUMMARY_METRICS, TRADE_COLUMNS

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import vectorbt as vbt


def simulate(
    rounds: TickRounds, grid: BarGrid, rules: list[RuleSettings], fees: FeeSettings, init_cash: float
) -> SimOutput:
    """The loop over ``rounds`` for the combinations ``rules`` (one cash pool each), keeping every trade."""
    if not init_cash > 0:
        raise ValueError(f"init_cash must be > 0, got {init_cash!r}")
    args = (rounds, grid, rule_table(rules), fee_params(fees), float(init_cash))
    # trades are rare next to ticks: guess generously, run again with the exact count if short
    capacity = len(rules) * max(4096, int(np.count_nonzero(rounds.price > 0)) // 32)
    out = simulate_nb(*args, capacity)
    if out.n_trades.sum() > capacity:
        out = simulate_nb(*args, int(out.n_trades.sum()))
    return out


def run_backtest(
    bars: pd.DataFrame | BarData,
    params: RuleSettings | Mapping[str, Any] | None = None,
    entries: Entries = "macd",
    init_cash: float = 1_000_000.0,
    tick_mode: TickMode = "ohlc",
    realism: bool = True,
    fees: FeeSettings | None = None,
) -> BacktestResult:
    """Run the rules of ``params`` over ``bars`` with one shared cash pool (docs/contracts.md).

    ``bars``: a long bar frame (as the bar store returns) or :func:`prepare_bars` of one, to reuse.
    ``entries``: ``"macd"``, ``"always"``, ``"none"`` or a boolean (bar time x stock_code) frame.
    ``realism``: apply the daily price limits (also needs ``params.price_limits``).
    """
    data = prepare_bars(bars)
    rules = rule_settings(params)
    fee_settings = fees or FeeSettings()
    grid = bar_grid(data, entry_signals(data, entries), limits=realism)
    out = simulate(tick_rounds(data, tick_mode), grid, [rules], fee_settings, init_cash)
    return BacktestResult(data, rules, fee_settings, float(init_cash), tick_mode, out)


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """One backtest: the loop's records, with trades, equity, stats and plots derived from them."""

    bars: BarData = field(repr=False)
    params: RuleSettings
    fees: FeeSettings
    init_cash: float
    tick_mode: str  # "ohlc", "close", or "journal" for a replayed engine session
    output: SimOutput = field(repr=False)

    @functools.cached_property
    def trades(self) -> pd.DataFrame:
        """Filled orders in processing order, columns ``TRADE_COLUMNS``."""
        return trades_frame(self.output.records, self.bars)

    @functools.cached_property
    def equity(self) -> pd.Series:
        """Cash plus holdings at each bar's close (a missing bar values the stock at its last close)."""
        return pd.Series(self.output.equity[:, 0], index=self.bars.index, name="equity")

    @property
    def drawdown(self) -> pd.Series:
        return (self.equity / self.equity.cummax() - 1.0).rename("drawdown")

    @property
    def cash(self) -> float:
        """Cash at the end."""
        return float(self.output.cash[0])

    @functools.cached_property
    def summary(self) -> pd.Series:
        """total_return, max_drawdown, sharpe, trades (closed positions), win_rate: as in the sweep table.

        Computed from the loop's equity and position counts, without vectorbt. Its name says how its
        trades and win rate differ from vectorbt's stats (``analytics.POSITIONS_NOTE``).
        """
        metrics = summary_metrics(
            self.output.equity, self.init_cash, self.output.closed, self.output.wins, BARS_PER_YEAR[self.bars.freq]
        )
        return pd.Series({name: metrics[name][0] for name in SUMMARY_METRICS}, name=POSITIONS_NOTE)

    @functools.cached_property
    def portfolio(self) -> vbt.Portfolio:
        """A ``vbt.Portfolio`` (one group, shared cash) built from the loop's order records."""
        return build_portfolio(self.output.records, self.bars, self.init_cash)

    def stats(self, **kwargs: Any) -> pd.Series:
        """vectorbt's portfolio stats, annualised with the bars' trading year (252 days).

        The shared-cash group's series come from the loop (vectorbt's per-stock arrays only with
        ``group_by``); the default stats end with the summary's closed positions and why they differ
        from vectorbt's trades. ``kwargs`` go to ``vbt.Portfolio.stats``; see
        :func:`~miniqmt_lab.backtest.analytics.portfolio_stats`.
        """
        return portfolio_stats(self, **kwargs)

    def plot_equity(self) -> go.Figure:
        from miniqmt_lab.backtest.plots import equity_figure

        return equity_figure(self.equity, self.drawdown, self.trades)

    def plot_trades(self, code: str) -> go.Figure:
        from miniqmt_lab.backtest.plots import trades_figure

        return trades_figure(self.bars, self.trades, code)


def trades_frame(records: np.ndarray, bars: BarData) -> pd.DataFrame:
    """Order records of one combination as a TRADE_COLUMNS frame."""
    n_stocks = bars.shape[1]
    codes = np.array(bars.codes, dtype=object)
    volume = records["size"].astype(np.int64)
    return pd.DataFrame(
        {
            "time": bars.index[records["idx"]],
            "stock_code": codes[records["col"] % n_stocks],
            "side": np.where(records["side"] == SIDE_BUY, "BUY", "SELL"),
            "price": records["price"],
            "volume": volume,
            "amount": records["price"] * volume,
            "commission": records["fees"],
            "rule": np.array(RULE_NAMES, dtype=object)[records["rule"]],
        },
        columns=list(TRADE_COLUMNS),
    )
