"""Clocks injected into the engine: the wall clock live, a replay clock driven by a recorded stream.

Besides ``now`` and ``sleep``, an engine clock (:class:`miniqmt_lab.protocols.EngineClock`) answers
whether it is trading time, because that answer differs by source: live it comes from the exchange
calendar; in replay the stream itself is the market, so a delivered round is trading
time by definition and the next round is always due at once (no idle waiting between rounds).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from miniqmt_lab import market


class WallClock:
    """Real time in Asia/Shanghai with the XSHG calendar."""

    def __init__(self, calendar: market.TradingCalendar = market.CALENDAR) -> None:
        self.calendar = calendar

    def now(self) -> dt.datetime:
        return dt.datetime.now(market.SHANGHAI)

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, seconds))

    def is_trading_time(self) -> bool:
        return market.is_trading_time(self.now(), self.calendar)

    def seconds_to_next_session(self) -> float:
        return market.seconds_to_next_session(self.now(), self.calendar)


class ReplayClock:
    """Time that moves only when a replay feed delivers a round.

    ``sleep`` does not wait while the bound feed has rounds left (replay runs at full speed, or at
    ``pace`` real seconds per wait when set); once the stream is drained it waits in real time, so
    an engine that finished its replay idles instead of spinning.
    """

    def __init__(self, start: dt.datetime | None = None, *, pace: float = 0.0) -> None:
        if pace < 0:
            raise ValueError(f"pace must be >= 0 seconds, got {pace!r}")
        self._lock = threading.Lock()
        self._now = market.to_shanghai(start) if start is not None else None
        self._delivered = False
        self._pending: Callable[[], bool] = lambda: False
        self.pace = float(pace)
        self.calendar = market.CALENDAR

    def bind(self, pending: Callable[[], bool], first_time: dt.datetime | None) -> None:
        """Attach the feed that drives this clock: ``pending()`` tells whether rounds are left."""
        with self._lock:
            self._pending = pending
            if self._now is None and first_time is not None:
                self._now = market.to_shanghai(first_time)

    def advance_to(self, moment: dt.datetime) -> None:
        """Move to the time of a delivered round; time never goes back."""
        moment = market.to_shanghai(moment)
        with self._lock:
            if self._now is not None and moment < self._now:
                raise ValueError(f"replay time cannot go back from {self._now} to {moment}")
            self._now = moment
            self._delivered = True

    def now(self) -> dt.datetime:
        with self._lock:
            if self._now is None:
                raise RuntimeError("the replay clock has no time yet: give it a start or bind it to a replay feed")
            return self._now

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        if self._pending():
            return stop.wait(self.pace) if self.pace else stop.is_set()
        return stop.wait(max(0.0, seconds))

    def is_trading_time(self) -> bool:
        with self._lock:
            if self._delivered:
                return True
        return market.is_trading_time(self.now(), self.calendar)

    def seconds_to_next_session(self) -> float:
        if self._pending() or self.is_trading_time():
            return 0.0
        return market.seconds_to_next_session(self.now(), self.calendar)
