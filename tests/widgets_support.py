"""What the widget tests share: an engine double with the face the panels use, and waits on events.

The double lets a test put the engine in any state (live mode, a halt, a dead thread, a broker
outage) and see every command the widgets send. ``wait_until`` waits on trait notifications of the
widgets and the watch, never on a sleep: a condition is checked again each time one of its sources
changes, and the timeout only turns a hang into a failure.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import traitlets

from miniqmt_lab.market import SHANGHAI
from miniqmt_lab.protocols import EngineFace
from miniqmt_lab.schema import SIGNAL_COLUMNS, TRADE_COLUMNS, BrokerStatus, EngineSnapshot, ThreadHealth
from miniqmt_lab.widgets import EngineControlPanel

CLOCK = dt.datetime(2024, 1, 2, 10, 0, 7, tzinfo=SHANGHAI)  # the double's engine clock


def heartbeat(*hms: int) -> float:
    """Epoch seconds of a heartbeat at that Shanghai time of 2024-01-02, as the engine reports it."""
    return dt.datetime(2024, 1, 2, *hms, tzinfo=SHANGHAI).timestamp()


POSITION = {
    "stock_code": "600000.SH", "stock_name": "浦发银行", "volume": 1000, "available": 1000, "cost": 10.0,
    "base_cost": 10.0, "price": 10.8, "price_time": CLOCK - dt.timedelta(seconds=3), "market_value": 10800.0,
    "profit_ratio": 0.08, "open_date": "2024-01-02", "tp_done": True, "high": 11.0, "stop_loss_price": 9.25,
    "dynamic_exit_level": 10.56, "next_grid_price": 9.3, "grid_k": 0,
}


def wait_until(predicate: Callable[[], bool], *sources: traitlets.HasTraits, timeout: float = 20.0) -> None:
    """Return once ``predicate()`` holds, checking it again whenever a trait of a source changes."""
    changed = threading.Condition()

    def poke(_: object) -> None:
        with changed:
            changed.notify_all()

    for source in sources:
        source.observe(poke)
    try:
        with changed:
            if not changed.wait_for(predicate, timeout):
                raise AssertionError("the condition was not met: no change of its sources made it true")
    finally:
        for source in sources:
            source.unobserve(poke)


class FakeEngine:
    """Engine-faced double (``miniqmt_lab.protocols.EngineFace``): records commands, bumps ``version``
    on every change."""

    def __init__(self, mode: str = "paper") -> None:
        self.mode = mode
        self.version = 1
        self.running = False
        self.auto_trading = False
        self.trading_state = "active"
        self.state_reason = ""
        self.database = "/srv/miniqmt/data/paper.sqlite"
        self.time: dt.datetime | None = CLOCK
        self.calls: list[tuple[object, ...]] = []
        self.snapshot_calls = 0
        self.fail_buy: Exception | None = None
        self.fail_state: Exception | None = None
        self.threads = (ThreadHealth("strategy", "RUNNING", True, heartbeat(10, 0, 5), 0),)
        self.broker = BrokerStatus(connected=True, name="SimBroker", account="12****78")
        self._positions = pd.DataFrame(columns=list(POSITION))
        self._trades = pd.DataFrame(columns=list(TRADE_COLUMNS))
        self._signals = pd.DataFrame(columns=list(SIGNAL_COLUMNS))

    def _changed(self) -> None:
        self.version += 1

    def start(self) -> None:
        self.calls.append(("start",))
        self.running = True
        self._changed()

    def stop(self) -> None:
        self.calls.append(("stop",))
        self.running = False
        self._changed()

    def set_auto_trading(self, on: bool) -> None:
        self.calls.append(("auto", on))
        self.auto_trading = on
        self._changed()

    def set_trading_state(self, state: str, reason: str = "") -> None:
        self.calls.append(("state", state, reason))
        if self.fail_state is not None:
            raise self.fail_state
        self.trading_state, self.state_reason = state, reason
        self._changed()

    def halt_itself(self, reason: str) -> None:
        """What the engine does on a lost fill or a broker that stays away."""
        self.trading_state, self.state_reason = "halted", reason
        self._changed()

    def buy(self, code: str, volume: int | None = None, *, amount: float | None = None,
            price: float | None = None) -> str:
        self.calls.append(("buy", code, volume, amount, price))
        if self.fail_buy is not None:
            raise self.fail_buy
        return "order-1"

    def sell(self, code: str, volume: int, *, price: float | None = None) -> str:
        self.calls.append(("sell", code, volume, price))
        return "order-2"

    def open_position(self, **values: Any) -> None:
        self._positions = pd.DataFrame([{**POSITION, **values}])
        self._trades = pd.DataFrame(
            [[pd.Timestamp("2024-01-02 15:00"), "600000.SH", "BUY", 10.0, 1000, 10000.0, 5.1, "entry"]],
            columns=list(TRADE_COLUMNS),
        )
        self._signals = pd.DataFrame(
            [
                [1, pd.Timestamp("2024-01-02 14:57"), "600000.SH", "entry", "BUY", 10.0, 1000, "executed", ""],
                [2, pd.Timestamp("2024-01-03 10:30"), "600000.SH", "stop_loss", "SELL", 9.2, 1000, "not_executed",
                 "auto trading is off"],
            ],
            columns=list(SIGNAL_COLUMNS),
        )
        self._changed()

    def set_trades(self, trades: pd.DataFrame) -> None:
        self._trades = trades
        self._changed()

    def set_signals(self, signals: pd.DataFrame) -> None:
        self._signals = signals
        self._changed()

    def snapshot(self) -> EngineSnapshot:
        self.snapshot_calls += 1
        return EngineSnapshot(
            self.version, self.time, self.mode, self.auto_trading, self.running, 990_000.0, 1_000_800.0, (),
            self.threads, self.broker, "", trading_state=self.trading_state, state_reason=self.state_reason,
            database=self.database,
        )

    def positions(self) -> pd.DataFrame:
        return self._positions

    def trades(self) -> pd.DataFrame:
        return self._trades

    def signals(self) -> pd.DataFrame:
        return self._signals


def many_trades(n: int) -> pd.DataFrame:
    """``n`` trades a minute apart, alternating two stocks and the two sides."""
    times = pd.date_range("2024-01-02 09:31", periods=n, freq="min")
    codes = ["600000.SH" if i % 2 == 0 else "000001.SZ" for i in range(n)]
    sides = ["BUY" if i % 4 < 2 else "SELL" for i in range(n)]
    rules = ["entry" if side == "BUY" else "stop_loss" for side in sides]
    return pd.DataFrame(
        {"time": times, "stock_code": codes, "side": sides, "price": [10.0 + i / 100 for i in range(n)],
         "volume": [100 * (1 + i % 3) for i in range(n)], "amount": [1000.0 + i for i in range(n)],
         "commission": [5.0] * n, "rule": rules},
        columns=list(TRADE_COLUMNS),
    )


FACE = tuple(name for name in vars(EngineFace) if not name.startswith("_"))


class FaceOnly:
    """An engine seen through :class:`EngineFace` alone, as ``EngineClient`` offers it: anything else a
    panel reached for (``engine.trader``, ``engine.settings``...) raises."""

    def __init__(self, engine: Any) -> None:
        object.__setattr__(self, "_engine", engine)

    def __getattr__(self, name: str) -> Any:
        if name not in FACE:
            raise AttributeError(f"{name!r} is not part of EngineFace: a panel must not use it")
        return getattr(self._engine, name)


def open_panel(engine: EngineFace) -> EngineControlPanel:
    """A control panel on ``engine`` through its face only, once its first snapshot is drawn (the thread
    table is drawn last)."""
    panel = EngineControlPanel(FaceOnly(engine), poll_interval=0.02)
    wait_until(lambda: "strategy" in panel.threads.value, panel.threads)
    return panel
