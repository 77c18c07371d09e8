"""The small protocols the parts talk through: clock, feed, broker, and the face of an engine.

Paper (``SimBroker``, ``ReplayFeed``, ``ReplayClock``) and live (``QmtBroker``, ``QmtFeed``,
``WallClock``) implement the same protocols, so the engine holds no ``if simulation`` branch; an
``Engine`` in this process and an ``EngineClient`` of a served engine both offer :class:`EngineFace`,
so the panels work on either. Like :mod:`miniqmt_lab.schema`, nothing else of the package is imported.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from miniqmt_lab.schema import (
    BrokerAsset,
    BrokerEvent,
    BrokerOrder,
    BrokerPosition,
    BrokerStatus,
    EngineSnapshot,
    OrderRequest,
    TickRound,
)

if TYPE_CHECKING:
    import pandas as pd


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Current time, aware Asia/Shanghai."""
        ...

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Wait up to ``seconds`` (clock time); return True at once when ``stop`` is set."""
        ...


class EngineClock(Clock, Protocol):
    def is_trading_time(self) -> bool:
        """True when an order may be placed now."""
        ...

    def seconds_to_next_session(self) -> float:
        """Clock seconds until the market opens again; 0 while it is open."""
        ...


class Feed(Protocol):
    """A source of tick rounds. The engine calls ``open`` at every start and ``close`` at every stop,
    so one feed serves an engine that is stopped and started again."""

    def open(self) -> None:
        """Get ready to deliver: called at every start, so after a ``close`` too (a restart)."""
        ...

    def watch(self, codes: Sequence[str]) -> None:
        """Set the codes whose prices the feed delivers (held stocks and the stock pool)."""
        ...

    def next_round(self, timeout: float) -> TickRound | None:
        """The next round of ticks, or None when none arrived within ``timeout`` (or the stream ended)."""
        ...

    def finished(self) -> bool:
        """True when a finite stream (replay) has delivered its last round; always False live."""
        ...

    def close(self) -> None:
        """Stop delivering; a waiting ``next_round`` returns None at once."""
        ...


@runtime_checkable
class Broker(Protocol):
    """A venue. Every outcome of an order (updates, fills, errors) arrives on ``events``.

    ``live`` is the one fact that decides paper or live: True when orders reach a real account.
    """

    name: str
    live: bool
    events: queue.Queue[BrokerEvent]

    def connect(self) -> None:
        """Connect or raise a typed error (``QmtUnavailable`` for a missing client); after ``close``
        it connects again (the engine calls it at every start)."""
        ...

    def close(self) -> None: ...

    def submit(self, order: OrderRequest) -> str:
        """Send an order; return the broker's order id. Refusals raise ``OrderRejected``."""
        ...

    def cancel(self, order_id: str) -> None: ...

    def positions(self) -> list[BrokerPosition]: ...

    def asset(self) -> BrokerAsset: ...

    def orders(self) -> list[BrokerOrder]:
        """Today's orders as the broker knows them, each with the signal id it was sent with."""
        ...

    def status(self) -> BrokerStatus: ...


@runtime_checkable
class EngineFace(Protocol):
    """What the panels and the web page use of an engine, here or served (``EngineClient``)."""

    @property
    def version(self) -> int: ...

    @property
    def running(self) -> bool: ...

    @property
    def mode(self) -> str: ...

    def snapshot(self) -> EngineSnapshot: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def set_auto_trading(self, on: bool) -> None: ...

    def set_trading_state(self, state: str, reason: str = "") -> None: ...

    def buy(self, code: str, volume: int | None = None, *, amount: float | None = None,
            price: float | None = None) -> str: ...

    def sell(self, code: str, volume: int, *, price: float | None = None) -> str: ...

    def positions(self) -> pd.DataFrame: ...

    def trades(self) -> pd.DataFrame: ...

    def signals(self) -> pd.DataFrame: ...


__all__ = ["Broker", "Clock", "EngineClock", "EngineFace", "Feed"]
