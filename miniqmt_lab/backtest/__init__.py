"""Backtests of the rule kernel: one numba loop over tick rounds, vectorbt for analytics and plots.

Importing this package does not import vectorbt (seconds of start-up); ``BacktestResult.portfolio``
does, on first use.
"""

from miniqmt_lab.backtest.core import BacktestResult, run_backtest
from miniqmt_lab.backtest.drift import DriftReport, drift_report
from miniqmt_lab.backtest.prepare import BarData, prepare_bars
from miniqmt_lab.backtest.replay import replay_journal
from miniqmt_lab.backtest.sweep import SweepResult, sweep

__all__ = [
    "BacktestResult",
    "BarData",
    "DriftReport",
    "SweepResult",
    "drift_report",
    "prepare_bars",
    "replay_journal",
    "run_backtest",
    "sweep",
]
