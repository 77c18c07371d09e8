"""Backtest analytics: the summary metrics (no vectorbt), and vectorbt's Portfolio and stats built from the loop.

The loop already knows the shared-cash group's value at every bar and its cash after every trade.
vectorbt would rebuild both from per-stock arrays of every bar (assets, filled closes, asset values:
bars x stocks each, seconds at whole-market size), so :func:`portfolio_stats` hands vectorbt the
group's series and leaves it the work that needs the records (trades, fees). Per-stock analytics
stay on ``result.portfolio``, a plain ``vbt.Portfolio`` built from the loop's order records.

Nothing here imports vectorbt at module level: ``import miniqmt_lab.backtest`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numba import njit

from miniqmt_lab.backtest.prepare import BARS_PER_YEAR, BarData

if TYPE_CHECKING:
    import vectorbt as vbt

    from miniqmt_lab.backtest.nb import SimOutput

BAR_DURATION = {"1d": pd.Timedelta(days=1), "1m": pd.Timedelta(minutes=1)}
"""One bar of each bar frequency as a Timedelta (vectorbt's ``freq``; no string for pandas to parse)."""

POSITIONS_NOTE = (
    "summary trades and win_rate count closed positions (entry to full exit, grid buys included: "
    "vectorbt's trades_type='positions'); vectorbt's Total Trades and Win Rate count exit trades "
    "(one per exit order, so a partial take-profit is a trade of its own)"
)
"""Why the summary's trade count and win rate differ from vectorbt's stats: the summary's name, a stats row."""

STATS_POSITION_ROWS = ("Closed Positions (summary trades)", "Position Win Rate [%] (summary win_rate)",
                       "Trades vs Positions")
"""Rows :func:`portfolio_stats` appends to vectorbt's stats: the summary's counts and why they differ."""

# settings that change the group's series themselves: with either, vectorbt works them out on its own
_OWN_SERIES_SETTINGS = frozenset({"freq", "use_asset_returns"})


def summary_metrics(
    equity: np.ndarray, init_cash: float, closed: np.ndarray, wins: np.ndarray, bars_per_year: int
) -> dict[str, np.ndarray]:
    """The sweep table's metrics per combination (columns of ``equity``).

    Returns per bar are ``value / previous value - 1`` starting from ``init_cash``, as vectorbt's
    ``Portfolio.returns``; the Sharpe ratio is annualised with ``bars_per_year`` (vectorbt's with
    ``year_freq`` set to that many bars); drawdowns are from the running peak of the equity, as
    vectorbt's ``Portfolio.max_drawdown``. ``trades`` counts closed positions (entry to full exit) and
    ``win_rate`` the share of them that made money after all fees (see :data:`POSITIONS_NOTE`).
    """
    previous = np.vstack([np.full((1, equity.shape[1]), init_cash), equity[:-1]])
    returns = equity / previous - 1.0
    std = returns.std(axis=0, ddof=1) if equity.shape[0] > 1 else np.full(equity.shape[1], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > 0, returns.mean(axis=0) / std * np.sqrt(bars_per_year), np.nan)
        win_rate = np.where(closed > 0, wins / np.maximum(closed, 1), np.nan)
    return {
        "total_return": equity[-1] / init_cash - 1.0,
        "max_drawdown": (equity / np.maximum.accumulate(equity, axis=0) - 1.0).min(axis=0),
        "sharpe": sharpe,
        "trades": closed.astype(np.int64),
        "win_rate": win_rate,
    }


def year_freq(bars: BarData) -> pd.Timedelta:
    """vectorbt's ``year_freq`` that makes one year ``BARS_PER_YEAR`` bars of the bars' frequency."""
    return BAR_DURATION[bars.freq] * BARS_PER_YEAR[bars.freq]


def build_portfolio(records: np.ndarray, bars: BarData, init_cash: float) -> vbt.Portfolio:
    """A ``vbt.Portfolio`` (one group, shared cash) of one combination's order records."""
    import vectorbt as vbt
    from vectorbt.base.array_wrapper import ArrayWrapper
    from vectorbt.portfolio.enums import log_dt, order_dt

    orders = np.empty(len(records), dtype=order_dt)
    for name in order_dt.names:
        orders[name] = records[name]
    wrapper = ArrayWrapper(
        index=bars.index,
        columns=pd.Index(bars.codes, name="stock_code"),
        ndim=2,
        freq=BAR_DURATION[bars.freq],
        group_by=True,
    )
    return vbt.Portfolio(
        wrapper,
        bars.close_frame(),
        orders,
        np.empty(0, dtype=log_dt),
        np.array([init_cash]),
        cash_sharing=True,
    )


def portfolio_stats(
    portfolio: vbt.Portfolio, bars: BarData, output: SimOutput, init_cash: float, summary: pd.Series, **kwargs: Any
) -> pd.Series:
    """vectorbt's ``portfolio.stats(**kwargs)`` of the shared-cash group, from the loop's group series.

    The group's value, returns, drawdowns, gross exposure and buy-and-hold benchmark are handed to
    vectorbt through its stats settings (equal to vectorbt's own numbers to rounding); with
    ``group_by`` (per-stock stats) or settings that change those series (``freq``,
    ``use_asset_returns``) vectorbt works everything out itself. Unless ``metrics``, ``tags`` or
    ``group_by`` are given, the stats end with the summary's position counts and why they differ
    from vectorbt's trades (:data:`STATS_POSITION_ROWS`).
    """
    settings = {"year_freq": year_freq(bars), **kwargs.pop("settings", {})}
    group_level = kwargs.get("group_by") is None and kwargs.get("column") in (None, "group")
    if group_level and not _OWN_SERIES_SETTINGS & settings.keys():
        own = group_series(bars, output.equity[:, 0], output.records, init_cash, settings)
        settings = {**own, **settings}
    stats = portfolio.stats(settings=settings, **kwargs)
    if not group_level or kwargs.get("metrics") is not None or kwargs.get("tags") is not None:
        return stats
    positions = [int(summary["trades"]), 100.0 * summary["win_rate"], POSITIONS_NOTE]
    rows = pd.Series(positions, index=list(STATS_POSITION_ROWS), dtype=object)
    return pd.concat([stats.astype(object), rows]).rename(stats.name)


def group_series(
    bars: BarData, equity: np.ndarray, records: np.ndarray, init_cash: float, settings: dict[str, Any]
) -> dict[str, Any]:
    """The shared-cash group's series that ``Portfolio.stats`` would otherwise rebuild per stock.

    Keys are the attribute names on the paths of vectorbt's portfolio metrics (``returns_acc``,
    ``drawdowns``, ``gross_exposure``, ``benchmark_rets``, ``final_value``, ``total_return``), which the
    stats builder takes from its settings before looking them up on the portfolio.
    """
    from vectorbt.generic.drawdowns import Drawdowns

    freq = BAR_DURATION[bars.freq]
    value = pd.Series(equity, index=bars.index, name="group")
    cash = _cash_at_bars(records, len(equity), init_cash)
    with np.errstate(divide="ignore", invalid="ignore"):
        exposure = np.where(equity == 0.0, 0.0, (equity - cash) / equity)
    benchmark = settings.get("benchmark_rets")
    if benchmark is None:
        benchmark = pd.Series(_returns(benchmark_value_nb(bars.close, init_cash), init_cash), index=bars.index,
                              name="group")
    returns = pd.Series(_returns(equity, init_cash), index=bars.index, name="group")
    return {
        "returns_acc": returns.vbt.returns(benchmark_rets=benchmark, freq=freq, year_freq=settings["year_freq"]),
        "drawdowns": Drawdowns.from_ts(value, wrapper_kwargs={"freq": freq}),
        "gross_exposure": pd.Series(exposure, index=bars.index, name="group"),
        "benchmark_rets": benchmark,
        "final_value": float(equity[-1]),
        "total_return": float(equity[-1]) / init_cash - 1.0,
    }


def _returns(value: np.ndarray, init_cash: float) -> np.ndarray:
    """Per-bar returns of a value series that starts from ``init_cash`` (vectorbt's ``returns_nb``)."""
    previous = np.concatenate([[init_cash], value[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        return value / previous - 1.0


def _cash_at_bars(records: np.ndarray, n_bars: int, init_cash: float) -> np.ndarray:
    """The group's cash at each bar's close: the cash after the bar's last trade, carried forward."""
    cash = np.full(n_bars, init_cash)
    if len(records) == 0:
        return cash
    last_of_bar = np.r_[records["idx"][1:] != records["idx"][:-1], True]
    record_at_bar = np.full(n_bars, -1, dtype=np.int64)
    record_at_bar[records["idx"][last_of_bar]] = np.flatnonzero(last_of_bar)
    np.maximum.accumulate(record_at_bar, out=record_at_bar)
    traded = record_at_bar >= 0
    cash[traded] = records["cash"][record_at_bar[traded]]
    return cash


@njit(cache=True, nogil=True)
def benchmark_value_nb(close: np.ndarray, init_cash: float) -> np.ndarray:
    """vectorbt's grouped benchmark: ``init_cash`` split evenly over the stocks, bought at their first
    close and held, each valued at its last close (``Portfolio.get_filled_close``: forward-, then
    back-filled). A stock without any close makes the sum NaN, as in vectorbt."""
    n_bars, n_stocks = close.shape
    first = np.full(n_stocks, np.nan)
    for s in range(n_stocks):
        for t in range(n_bars):
            if not np.isnan(close[t, s]):
                first[s] = close[t, s]
                break
    out = np.empty(n_bars)
    last = first.copy()
    for t in range(n_bars):
        total = 0.0
        for s in range(n_stocks):
            if not np.isnan(close[t, s]):
                last[s] = close[t, s]
            total += last[s] / first[s]
        out[t] = init_cash / n_stocks * total
    return out
