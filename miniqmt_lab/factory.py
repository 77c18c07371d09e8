"""The one place an engine is built from settings: what the CLI, the notebooks, the web service and the
README use. No snippet builds a ``QmtBroker`` by hand.

Three ways, decided by the arguments and ``engine.simulation`` (the broker then decides the mode):

* **paper on a replay** (``replay=`` bars or a ``ReplayFeed``): the paper broker on the replay clock;
* **paper on live QMT quotes** (``simulation = true``): the paper broker fills at the prices the QMT
  client sends; nothing reaches the account;
* **live** (``simulation = false``, with an account and the client's userdata folder): the QMT broker.

``modules`` passes an xtquant stand-in (``miniqmt_lab.xtquant_double.FakeQmt``) for tests and demos.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pandas as pd

from miniqmt_lab.config import Settings
from miniqmt_lab.engine import Engine, ReplayFeed, SimBroker
from miniqmt_lab.engine.engine import ModeMismatch
from miniqmt_lab.schema import TickMode

if TYPE_CHECKING:
    from miniqmt_lab.engine.entries import EntrySource

REPLAY_ORDERS_PER_MINUTE = 1_000_000
"""A replay compresses a trading day into a few tick rounds of replay time, so the per-minute rate limit
(meant to stop a runaway live loop) is lifted for it; the kill switch and the order-value cap still hold."""


def build_engine(
    settings: Settings | None = None,
    *,
    replay: pd.DataFrame | ReplayFeed | None = None,
    tick_mode: TickMode = "ohlc",
    pace: float = 0.0,
    entries: EntrySource | pd.DataFrame | str | None = None,
    database: str | os.PathLike[str] | None = None,
    modules: Any = None,
) -> Engine:
    """An engine for ``settings`` (default: paper settings).

    ``replay``: long bars (``stock_code``, ``date``/``time``, OHLC) or a ``ReplayFeed``: a paper engine
    on that stream, ``pace`` real seconds per tick round (0: full speed). ``entries``: as ``Engine``.
    ``database``: another engine database than the settings' ``paper.sqlite`` / ``live.sqlite``.
    """
    settings = settings if settings is not None else Settings()
    if replay is not None:
        if not settings.engine.simulation:
            raise ModeMismatch("a replay trades on paper: set simulation = true (the settings say live)")
        feed = replay if isinstance(replay, ReplayFeed) else ReplayFeed.from_bars(replay, tick_mode=tick_mode)
        feed.clock.pace = pace
        settings = settings.with_values(
            max_orders_per_minute=max(settings.engine.max_orders_per_minute, REPLAY_ORDERS_PER_MINUTE)
        )
        broker = SimBroker(settings, clock=feed.clock)
        return Engine(settings, broker=broker, feed=feed, entries=entries, database=database)

    from miniqmt_lab.qmt import QmtBroker, QmtFeed

    quotes = QmtFeed(settings, modules=modules)
    if settings.engine.simulation:
        return Engine(settings, broker=SimBroker(settings), feed=quotes, entries=entries, database=database)
    return Engine(settings, broker=QmtBroker(settings, modules=modules), feed=quotes, entries=entries,
                  database=database)


__all__ = ["REPLAY_ORDERS_PER_MINUTE", "build_engine"]
