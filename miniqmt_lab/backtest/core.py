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
from miniqmt_lab.backtest.nb import SIDE_BUY, DayFacts, SimOutput, simulate_nb
from miniqmt_lab.backtest.prepare import (
    BARS_PER_YEAR,
    BarData,
    Entries,
    TickMode,
    day_facts,
    entry_signals,
    prepare_bars,
    rule_settings,
    tick_stream,
)
from miniqmt_lab.config import FeeSettings, RuleSettings
from miniqmt_lab.market import action_message, fee_table
from miniqmt_lab.marketsim import TickStream, with_ticks
from miniqmt_lab.rules.params import rule_table
from miniqmt_lab.schema import (
    BLOCKED_NAMES,
    EVENT_COLUMNS,
    RULE_NAMES,
    SIGNAL_COLUMNS,
    SUMMARY_METRICS,
    TRADE_COLUMNS,
    Blocked,
    Rule,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import vectorbt as vbt

SELL_RULES = np.array([int(r) for r in Rule if r.sells])


def simulate(
    stream: TickStream,
    days: DayFacts,
    rules: list[RuleSettings],
    fees: FeeSettings,
    init_cash: float,
    day_dates: np.ndarray,
    *,
    realism: bool = True,
) -> SimOutput:
    """The loop over ``stream`` for the combinations ``rules`` (one cash pool each), keeping every trade
    and every blocked decision.

    ``day_dates``: the date of each trading day number of the stream; each trade pays its day's fees.
    """
    if not init_cash > 0:
        raise ValueError(f"init_cash must be > 0, got {init_cash!r}")
    args = (stream, days, rule_table(rules), fee_table(fees, day_dates), bool(realism), float(init_cash))
    # trades are rare next to rows: guess generously, run again with the exact counts if short; blocked
    # decisions are mostly entries without cash: at most one per entry signal, plus room for sells
    guess = len(rules) * (4096 + stream.col.shape[0] // 32)
    signal_guess = guess + len(rules) * int(np.count_nonzero(days.entries))
    out = simulate_nb(*args, guess, signal_guess)
    if out.n_trades.sum() > guess or out.n_signals.sum() > signal_guess:
        out = simulate_nb(*args, max(guess, int(out.n_trades.sum())), max(signal_guess, int(out.n_signals.sum())))
    return out


def run_backtest(
    bars: pd.DataFrame | BarData,
    params: RuleSettings | Mapping[str, Any] | None = None,
    entries: Entries = "macd",
    init_cash: float = 1_000_000.0,
    tick_mode: TickMode = "ohlc",
    realism: bool = True,
    fees: FeeSettings | None = None,
    *,
    actions: pd.DataFrame | None = None,
    instruments: pd.DataFrame | None = None,
) -> BacktestResult:
    """Run the rules of ``params`` over ``bars`` with one shared cash pool (docs/contracts.md).

    ``bars``: a long bar frame (as the bar store returns it) or :func:`prepare_bars` of one, to reuse.
    ``entries``: ``"macd"``, ``"always"``, ``"none"`` or a boolean (bar time x stock_code) frame.
    ``realism``: apply the daily price limits (also needs ``params.price_limits``).
    ``actions`` / ``instruments``: corporate actions and listing dates (default: ``bars.attrs``, as the bar
    store sets them).
    """
    data = prepare_bars(bars, actions=actions, instruments=instruments)
    rules = rule_settings(params)
    fee_settings = fees or FeeSettings()
    days = day_facts(data, entry_signals(data, entries))
    out = simulate(tick_stream(data, tick_mode), days, [rules], fee_settings, init_cash, data.day_dates,
                   realism=realism)
    return BacktestResult(with_ticks(data, 4 if tick_mode == "ohlc" else 1), rules, fee_settings, float(init_cash),
                          tick_mode, out)


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
    def signals(self) -> pd.DataFrame:
        """Fired rules that came out as no action, with the kernel's outcome (``SIGNAL_COLUMNS`` but ``id``):
        what the engine's signals table records as price_limit, no_cash, zero_lot, max_position or
        nothing_available. Every such tick is kept (the engine spaces out repeats of one holding state)."""
        return signals_frame(self.output.signals, self.bars)

    @functools.cached_property
    def events(self) -> pd.DataFrame:
        """Corporate actions applied to holdings (``EVENT_COLUMNS``): bonus shares and cash dividends."""
        return events_frame(self.output.events, self.bars)

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
        return portfolio_stats(self.portfolio, self.bars, self.output, self.init_cash, self.summary, **kwargs)

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


def signals_frame(signals: np.ndarray, bars: BarData) -> pd.DataFrame:
    """Blocked decisions of one combination as a frame of ``SIGNAL_COLUMNS`` without ``id``; ``time`` is
    the tick's time (the engine's detection time on the replay clock)."""
    n_stocks = bars.shape[1]
    times = bars.tick_times()
    rounds = signals["round"]
    rules = signals["rule"]
    return pd.DataFrame(
        {
            "time": pd.DatetimeIndex(times[rounds // bars.n_ticks, rounds % bars.n_ticks]),
            "stock_code": np.array(bars.codes, dtype=object)[signals["col"] % n_stocks],
            "rule": np.array(RULE_NAMES, dtype=object)[rules],
            "side": np.where(np.isin(rules, SELL_RULES), "SELL", "BUY"),
            "price": signals["price"],
            "volume": np.zeros(len(signals), dtype=np.int64),
            "outcome": np.array(BLOCKED_NAMES, dtype=object)[signals["outcome"]],
            "message": np.array([Blocked(o).message for o in range(len(BLOCKED_NAMES))], dtype=object)[
                signals["outcome"]],
        },
        columns=[c for c in SIGNAL_COLUMNS if c != "id"],
    )


def events_frame(events: np.ndarray, bars: BarData) -> pd.DataFrame:
    """Corporate actions applied to holdings of one combination (``EVENT_COLUMNS``), ``time`` the ex-date."""
    n_stocks = bars.shape[1]
    cols = events["col"] % n_stocks
    applied = bars.actions.set_index(["day", "col"])
    rows = []
    for ev, s in zip(events, cols, strict=True):
        action = applied.loc[(int(ev["day"]), int(s))]
        rows.append(
            {
                "time": pd.Timestamp(bars.day_dates[ev["day"]]),
                "stock_code": bars.codes[s],
                "kind": "ex_rights",
                "volume_before": int(ev["volume_before"]),
                "volume_after": int(ev["volume_after"]),
                "cash": float(ev["cash"]),
                "message": action_message(action["cash_dividend"], action["bonus_ratio"], int(ev["volume_before"]),
                                          int(ev["volume_after"]), float(ev["cash"])),
            }
        )
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS)).astype({"volume_before": np.int64,
                                                                    "volume_after": np.int64, "cash": float})

