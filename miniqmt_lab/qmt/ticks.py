"""From ``get_full_tick`` snapshots to the engine's ticks, and the feed's own poll thread.

A snapshot is a tick of today only when its ``time`` is today: xtdata keeps the last snapshot whatever
its date (yesterday's 15:00 tick before the open, a suspended stock's last one). A stock in its first
five trading days since listing trades without price limits (``Tick.limits`` False).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Callable
from typing import Any

from miniqmt_lab import market as mkt
from miniqmt_lab.qmt.history import number
from miniqmt_lab.schema import Tick

CLOSE_TICK_TIME = dt.time(14, 57)
"""From here on a live tick is the daily bar's last one (the replay's close tick has this time)."""

NO_LIMIT_DAYS = 5
"""A new listing trades without price limits on its first five trading days (rules.md)."""


def tick_from_xt(code: str, raw: Any, name: str, today: dt.date, *, limits: bool = True) -> tuple[Tick | None, str]:
    """A Tick of ``today`` from a ``get_full_tick`` entry, or (None, why it is unusable)."""
    if not isinstance(raw, dict):
        return None, "no tick"
    price = number(raw.get("lastPrice"))
    if not (math.isfinite(price) and price > 0):
        return None, f"bad lastPrice {raw.get('lastPrice')!r}"
    stamp_ms = number(raw.get("time"))
    if not (stamp_ms > 0):
        return None, f"no time ({raw.get('time')!r})"
    moment = dt.datetime.fromtimestamp(stamp_ms / 1000, mkt.SHANGHAI)
    if moment.date() != today:
        return None, f"stale snapshot of {moment:%Y-%m-%d %H:%M}, not a price of {today}"
    prev_close = number(raw.get("lastClose"))
    return Tick(
        code=code,
        price=price,
        time=moment,
        bar_close=moment.time() >= CLOSE_TICK_TIME,
        prev_close=prev_close if math.isfinite(prev_close) and prev_close > 0 else math.nan,
        name=name,
        limits=limits,
    ), ""


def has_price_limits(listed: dt.date | None, day: dt.date) -> bool:
    """False on a stock's first :data:`NO_LIMIT_DAYS` trading days (from its listing date, if known)."""
    if listed is None or day < listed:
        return True
    count, current = 0, listed
    while current <= day and count <= NO_LIMIT_DAYS:
        if mkt.CALENDAR.is_trading_day(current):
            count += 1
        current += dt.timedelta(days=1)
    return count > NO_LIMIT_DAYS


class Poll:
    """One call on its own daemon thread (a hung one must not keep the process alive at exit)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self._call = call
        threading.Thread(target=self._run, name="qmt-feed-poll", daemon=True).start()

    def _run(self) -> None:
        try:
            self.value = self._call()
        except BaseException as exc:  # handed to the waiting poll
            self.error = exc
        finally:
            self.done.set()
