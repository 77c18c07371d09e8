"""Jupyter panels over the engine and the backtest.

The control panel and the tables load eagerly; the tuning and replay panels and replay sessions
(plotly, the backtest) load on first access, so ``from miniqmt_lab.widgets import
EngineControlPanel`` stays quick on the trading machine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from miniqmt_lab.widgets._poll import EngineWatch
from miniqmt_lab.widgets.control import EngineControlPanel
from miniqmt_lab.widgets.tables import OrderForm, PositionsView, SignalsView, TradesView

if TYPE_CHECKING:
    from miniqmt_lab.widgets.replay import SignalReplayPanel
    from miniqmt_lab.widgets.sessions import (
        ReplaySession,
        bars_session,
        engine_session,
        journal_session,
        recorded_sessions,
    )
    from miniqmt_lab.widgets.tuning import BacktestTuningPanel

_LAZY = {
    "BacktestTuningPanel": "miniqmt_lab.widgets.tuning",
    "SignalReplayPanel": "miniqmt_lab.widgets.replay",
    "ReplaySession": "miniqmt_lab.widgets.sessions",
    "bars_session": "miniqmt_lab.widgets.sessions",
    "engine_session": "miniqmt_lab.widgets.sessions",
    "journal_session": "miniqmt_lab.widgets.sessions",
    "recorded_sessions": "miniqmt_lab.widgets.sessions",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BacktestTuningPanel",
    "EngineControlPanel",
    "EngineWatch",
    "OrderForm",
    "PositionsView",
    "ReplaySession",
    "SignalReplayPanel",
    "SignalsView",
    "TradesView",
    "bars_session",
    "engine_session",
    "journal_session",
    "recorded_sessions",
]
