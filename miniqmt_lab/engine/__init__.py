"""The live engine: threads around the rule kernel, with injected broker, feed and clock.

Importing this package imports neither vectorbt nor compiles a numba kernel (kernels compile, or
load from numba's cache, on first call).
"""

from miniqmt_lab.engine.clock import ReplayClock, WallClock
from miniqmt_lab.engine.engine import Engine
from miniqmt_lab.engine.entries import EntrySource, FrameEntries, MacdEntries, macd_bar_entries
from miniqmt_lab.engine.replay import IdleFeed, ReplayFeed
from miniqmt_lab.engine.sim_broker import SimBroker
from miniqmt_lab.engine.threads import ThreadState
from miniqmt_lab.records import read_journal
from miniqmt_lab.schema import TRADE_COLUMNS, EngineSnapshot, Outcome, PositionView, ThreadHealth

__all__ = [
    "TRADE_COLUMNS",
    "Engine",
    "EngineSnapshot",
    "EntrySource",
    "FrameEntries",
    "IdleFeed",
    "MacdEntries",
    "Outcome",
    "PositionView",
    "ReplayClock",
    "ReplayFeed",
    "SimBroker",
    "ThreadHealth",
    "ThreadState",
    "WallClock",
    "macd_bar_entries",
    "read_journal",
]
