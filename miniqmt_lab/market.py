"""The A-share market model: stock codes, boards and price limits, lots, fees, T+1 and trading time.

Fees and limit rounding are computed by the rule kernel (``miniqmt_lab.rules.nb``); this module is
the plain-Python face of those facts plus the calendar. It sits between the kernel and the settings:
``config`` validates stock codes and takes its fee defaults from here, never the other way round.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import re
import threading
from collections.abc import Sequence
from enum import Enum
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

from miniqmt_lab.errors import InvalidPrice, InvalidStockCode, InvalidVolume
from miniqmt_lab.rules import FeeParams, fee_parts_nb, limit_prices_nb
from miniqmt_lab.schema import LOT

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
SESSIONS: tuple[tuple[dt.time, dt.time], ...] = (
    (dt.time(9, 30), dt.time(11, 30)),
    (dt.time(13, 0), dt.time(15, 0)),
)


class Board(Enum):
    SH_MAIN = "SH main board"
    SZ_MAIN = "SZ main board"
    CHINEXT = "ChiNext"
    STAR = "STAR market"
    BJ = "Beijing exchange"


LIMIT_WIDTH = {
    Board.SH_MAIN: 0.10,
    Board.SZ_MAIN: 0.10,
    Board.CHINEXT: 0.20,
    Board.STAR: 0.20,
    Board.BJ: 0.30,
}
ST_LIMIT_WIDTH = 0.05

_CODE_RE = re.compile(r"^(?:(SH|SZ|BJ)\.?)?(\d{6})(?:\.(SH|SZ|BJ))?$")


def _board_of(digits: str, exchange: str) -> Board | None:
    if exchange == "SH":
        if digits.startswith(("600", "601", "603", "605")):
            return Board.SH_MAIN
        if digits.startswith(("688", "689")):
            return Board.STAR
    elif exchange == "SZ":
        if digits.startswith(("000", "001", "002", "003")):
            return Board.SZ_MAIN
        if digits.startswith(("300", "301")):
            return Board.CHINEXT
    elif exchange == "BJ" and digits.startswith(("43", "83", "87", "88", "92")):
        return Board.BJ
    return None


def _exchange_from_digits(digits: str) -> str | None:
    if digits.startswith("6"):
        return "SH"
    if digits.startswith(("0", "3")):
        return "SZ"
    if digits.startswith(("4", "8", "92")):
        return "BJ"
    return None


@functools.lru_cache(maxsize=16384)
def normalize_code(code: object) -> str:
    """``'600000.SH'`` form of an A-share stock code, or :class:`InvalidStockCode`.

    Accepts ``600000.sh``, ``SH600000``, ``sh.600000`` and a bare ``600000`` (exchange inferred
    from the prefix). Indices, funds, bonds and codes on the wrong exchange are refused.
    """
    if not isinstance(code, str):
        raise InvalidStockCode(f"stock code must be a string like '600000.SH', got {code!r}")
    text = code.strip().upper()
    m = _CODE_RE.match(text)
    if not m or (m.group(1) and m.group(3)):
        raise InvalidStockCode(f"invalid stock code {code!r}: expected six digits and an exchange, like '600000.SH'")
    digits = m.group(2)
    exchange = m.group(1) or m.group(3) or _exchange_from_digits(digits)
    if exchange is None or _board_of(digits, exchange) is None:
        raise InvalidStockCode(
            f"invalid stock code {code!r}: {digits} is not an A-share stock"
            + (f" on {exchange}" if exchange else "")
        )
    return f"{digits}.{exchange}"


def board_of(code: str) -> Board:
    norm = normalize_code(code)
    board = _board_of(norm[:6], norm[7:])
    assert board is not None  # normalize_code guarantees it
    return board


def is_st(name: str | None) -> bool:
    return bool(name) and "ST" in str(name).upper()


def limit_width(code: str, name: str | None = None) -> float:
    """Daily price-limit width: 5% for ST names, else by board."""
    return ST_LIMIT_WIDTH if is_st(name) else LIMIT_WIDTH[board_of(code)]


def limit_prices(code: str, prev_close: float, name: str | None = None) -> tuple[float, float]:
    """(up-limit, down-limit) rounded to 0.01 from the previous close; NaNs when there is none."""
    return limit_prices_nb(float(prev_close), limit_width(code, name))


def min_buy_volume(code: str) -> int:
    """Smallest buy: one lot of 100 shares, 200 on the STAR market."""
    return 200 if board_of(code) is Board.STAR else LOT


def check_buy_volume(code: str, volume: object) -> int:
    v = _as_whole_number(volume)
    least = min_buy_volume(code)
    if v < least or v % LOT:
        raise InvalidVolume(
            f"buy volume {volume!r} for {code}: must be a whole lot of {LOT} shares and at least {least}"
        )
    return v


def check_sell_volume(volume: object, held: int, available: int) -> int:
    """A sell is whole lots, or any number that sells the whole remaining holding."""
    v = _as_whole_number(volume)
    if v <= 0:
        raise InvalidVolume(f"sell volume {volume!r}: must be positive")
    if v % LOT and v != held:
        raise InvalidVolume(
            f"sell volume {volume!r}: must be a whole lot of {LOT} shares unless it sells the whole holding ({held})"
        )
    return v


def _as_whole_number(volume: object) -> int:
    if isinstance(volume, bool) or not isinstance(volume, int | float):
        raise InvalidVolume(f"volume must be a number of shares, got {volume!r}")
    if isinstance(volume, float) and (not math.isfinite(volume) or volume != int(volume)):
        raise InvalidVolume(f"volume must be a whole number of shares, got {volume!r}")
    return int(volume)


def check_price(price: object, *, what: str = "price") -> float:
    """A usable price: a finite number > 0."""
    if isinstance(price, bool) or not isinstance(price, int | float):
        raise InvalidPrice(f"{what} must be a number, got {price!r}")
    p = float(price)
    if not math.isfinite(p) or p <= 0:
        raise InvalidPrice(f"{what} must be a finite number > 0, got {price!r}")
    return p


COMMISSION_RATE = 0.00025
MIN_COMMISSION = 5.0
STAMP_DUTY_SCHEDULE: tuple[tuple[str, float], ...] = (("1990-12-19", 0.001), ("2023-08-28", 0.0005))
"""Stamp duty on sells, ``(from_date, rate)``: 0.1% until 2023-08-27, 0.05% from 2023-08-28."""
TRANSFER_FEE_SCHEDULE: tuple[tuple[str, float], ...] = (("1990-12-19", 0.00002), ("2022-04-29", 0.00001))
"""Transfer fee both ways, ``(from_date, rate)``: 0.002% until 2022-04-28, 0.001% from 2022-04-29."""


class FeeSettingsLike(Protocol):
    @property
    def commission_rate(self) -> float: ...

    @property
    def min_commission(self) -> float: ...

    @property
    def stamp_duty_schedule(self) -> tuple[tuple[str, float], ...]: ...

    @property
    def transfer_fee_schedule(self) -> tuple[tuple[str, float], ...]: ...


def rate_on(schedule: Sequence[tuple[str, float]], day: dt.date | None) -> float:
    """The rate of a dated ``(from_date, rate)`` schedule on ``day`` (None: the latest rate)."""
    if day is None:
        return float(schedule[-1][1])
    rate = float(schedule[0][1])
    for start, value in schedule:
        if dt.date.fromisoformat(start) <= day:
            rate = float(value)
    return rate


def fee_params(fees: FeeSettingsLike | None = None, day: dt.date | None = None) -> FeeParams:
    """The kernel's fee parameters on trading day ``day`` (None: today's rates); ``fees`` is a
    ``FeeSettings`` (None: the A-share defaults)."""
    if fees is None:
        return FeeParams(COMMISSION_RATE, MIN_COMMISSION, rate_on(STAMP_DUTY_SCHEDULE, day),
                         rate_on(TRANSFER_FEE_SCHEDULE, day))
    return FeeParams(
        float(fees.commission_rate),
        float(fees.min_commission),
        rate_on(fees.stamp_duty_schedule, day),
        rate_on(fees.transfer_fee_schedule, day),
    )


class Fees(NamedTuple):
    commission: float
    stamp_duty: float
    transfer_fee: float

    @property
    def total(self) -> float:
        return round(self.commission + self.stamp_duty + self.transfer_fee, 2)


def order_fees(
    amount: float, side: str, fee_settings: FeeSettingsLike | None = None, day: dt.date | None = None
) -> Fees:
    """Fees of one order of ``amount`` yuan, side 'BUY' or 'SELL', on trading day ``day`` (None: today's
    rates), by the kernel's arithmetic; ``fee_settings`` is a ``FeeSettings`` (None: A-share defaults)."""
    return Fees(*fee_parts_nb(float(amount), side.upper() == "SELL", fee_params(fee_settings, day)))


# -- trading calendar and time --------------------------------------------------------------------


class TradingCalendar:
    """XSHG trading days from ``exchange_calendars``; weekdays past the calendar's range (warned once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: frozenset[dt.date] | None = None
        self._first: dt.date | None = None
        self._last: dt.date | None = None
        self._warned = False

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
        if self._first is not None and self._last is not None and self._first <= day <= self._last:
            return day in self._sessions
        if self._last is not None and not self._warned:
            self._warned = True
            log.warning(
                "date %s is outside the XSHG calendar (%s..%s): treating weekdays as trading days",
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
