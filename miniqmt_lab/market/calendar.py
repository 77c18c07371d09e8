"""Trading calendar and sessions: XSHG trading days and the continuous sessions in Asia/Shanghai time."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable
from zoneinfo import ZoneInfo

log = logging.getLogger("miniqmt_lab.market")

SHANGHAI = ZoneInfo("Asia/Shanghai")
SESSIONS: tuple[tuple[dt.time, dt.time], ...] = (
    (dt.time(9, 30), dt.time(11, 30)),
    (dt.time(13, 0), dt.time(15, 0)),
)

class TradingCalendar:
    """XSHG trading days from ``exchange_calendars``; weekdays past the calendar's range (warned once),
    less the holidays added from the settings (``engine.holidays``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: frozenset[dt.date] | None = None
        self._first: dt.date | None = None
        self._last: dt.date | None = None
        self._warned = False
        self._closed: frozenset[dt.date] = frozenset()

    def add_holidays(self, days: Iterable[dt.date]) -> None:
        """Exchange closures the calendar package does not record (a year past its last, a sudden
        closure): never trading days, whatever the package says. For the whole process."""
        with self._lock:
            self._closed = self._closed | frozenset(days)

    def _load(self) -> None:
        if self._sessions is not None:
            return
        with self._lock:
            if self._sessions is not None:
                return
            try:
                import exchange_calendars as xcals

                cal = xcals.get_calendar("XSHG")
                days = frozenset(ts.date() for ts in cal.sessions)
                self._first, self._last = min(days), max(days)
            except Exception as exc:  # a broken calendar package must not stop trading decisions
                log.warning("XSHG calendar unavailable (%s); using weekdays as trading days", exc)
                days = frozenset()
            self._sessions = days

    def is_trading_day(self, day: dt.date) -> bool:
        self._load()
        assert self._sessions is not None
        if day in self._closed:
            return False
        if self._first is not None and self._last is not None and self._first <= day <= self._last:
            return day in self._sessions
        if self._last is not None and not self._warned:
            self._warned = True
            log.warning(
                "date %s is outside the XSHG calendar (%s..%s): treating weekdays as trading days, less the"
                " engine.holidays of the settings (upgrade exchange_calendars once it records the year)",
                day, self._first, self._last,
            )
        return day.weekday() < 5

    def next_trading_day(self, day: dt.date) -> dt.date:
        nxt = day + dt.timedelta(days=1)
        while not self.is_trading_day(nxt):
            nxt += dt.timedelta(days=1)
        return nxt

    def previous_trading_day(self, day: dt.date) -> dt.date:
        prev = day - dt.timedelta(days=1)
        while not self.is_trading_day(prev):
            prev -= dt.timedelta(days=1)
        return prev


CALENDAR = TradingCalendar()


def to_shanghai(moment: dt.datetime) -> dt.datetime:
    """Aware Shanghai time; a naive datetime is taken as Shanghai local time."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=SHANGHAI)
    return moment.astimezone(SHANGHAI)


def in_session(moment: dt.datetime) -> bool:
    """Inside a continuous session (09:30-11:30, 13:00-15:00), ignoring the calendar."""
    t = to_shanghai(moment).time()
    return any(start <= t <= end for start, end in SESSIONS)


def is_trading_time(moment: dt.datetime, calendar: TradingCalendar = CALENDAR) -> bool:
    local = to_shanghai(moment)
    return in_session(local) and calendar.is_trading_day(local.date())


def seconds_to_next_session(moment: dt.datetime, calendar: TradingCalendar = CALENDAR) -> float:
    """Seconds until the next continuous session opens (0 inside a session)."""
    local = to_shanghai(moment)
    if is_trading_time(local, calendar):
        return 0.0
    day = local.date()
    for _ in range(60):
        if calendar.is_trading_day(day):
            for start, _end in SESSIONS:
                opening = dt.datetime.combine(day, start, tzinfo=SHANGHAI)
                if opening > local:
                    return (opening - local).total_seconds()
        day += dt.timedelta(days=1)
    return 86400.0  # pragma: no cover - two months without a trading day


def is_new_trading_day(previous: dt.date | None, current: dt.date) -> bool:
    """T+1 roll: shares bought on ``previous`` become available when ``current`` is a later day."""
    return previous is not None and current > previous


def trading_day_number(calendar: TradingCalendar, first: dt.date, n: int) -> dt.date:
    """The ``n``-th trading day counting ``first`` (itself a trading day, or the next one) as day 1."""
    day = first if calendar.is_trading_day(first) else calendar.next_trading_day(first)
    for _ in range(n - 1):
        day = calendar.next_trading_day(day)
    return day
