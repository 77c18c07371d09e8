"""Price bands: the day's up- and down-limit from its base price, by board, ST name and listing age.

Widths (rules.md): ±10% main boards, ±20% ChiNext and STAR, ±30% Beijing, ±5% ST names; rounded to
0.01 half up by the kernel's ``limit_prices_nb``. A stock has no limits on its first five trading days
after listing, where the listing date is known.
"""

from __future__ import annotations

import datetime as dt
import functools

from miniqmt_lab.market.calendar import CALENDAR, TradingCalendar, trading_day_number
from miniqmt_lab.market.codes import Board, board_of, is_st
from miniqmt_lab.rules.nb import limit_prices_nb

LIMIT_WIDTH = {
    Board.SH_MAIN: 0.10,
    Board.SZ_MAIN: 0.10,
    Board.CHINEXT: 0.20,
    Board.STAR: 0.20,
    Board.BJ: 0.30,
}
ST_LIMIT_WIDTH = 0.05
NEW_LISTING_FREE_DAYS = 5
"""A new listing trades without price limits on its first five trading days."""


def limit_width(code: str, name: str | None = None) -> float:
    """Daily price-limit width: 5% for ST names, else by board."""
    return ST_LIMIT_WIDTH if is_st(name) else _board_width(code)


@functools.lru_cache(maxsize=65536)
def _board_width(code: str) -> float:
    return LIMIT_WIDTH[board_of(code)]


def limit_prices(code: str, prev_close: float, name: str | None = None) -> tuple[float, float]:
    """(up-limit, down-limit) rounded to 0.01 from the day's base price; NaNs when there is none."""
    return limit_prices_nb(float(prev_close), limit_width(code, name))


def last_unlimited_day(listing_date: dt.date, calendar: TradingCalendar = CALENDAR) -> dt.date:
    """The last of a new listing's first five trading days (its listing day counts as the first)."""
    return trading_day_number(calendar, listing_date, NEW_LISTING_FREE_DAYS)


def has_limits(day: dt.date, listing_date: dt.date | None, calendar: TradingCalendar = CALENDAR) -> bool:
    """False on a stock's first five trading days after listing (listing date known), else True."""
    return listing_date is None or day > last_unlimited_day(listing_date, calendar)
