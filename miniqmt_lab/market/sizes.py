"""Order sizes by board (rules.md, "Fills, fees and A-share rules").

Main boards and ChiNext buy in whole lots of 100 and sell in whole lots, or an odd lot only when it sells
the whole available remainder. STAR buys at least 200 and Beijing at least 100 shares, then any number in
1-share steps; a sell under that minimum only when it sells the whole available remainder. The kernel
reads these facts as a :class:`~miniqmt_lab.rules.nb.LotRule` of plain numbers.
"""

from __future__ import annotations

import functools
import math

from miniqmt_lab.errors import InsufficientPosition, InvalidPrice, InvalidVolume
from miniqmt_lab.market.codes import Board, board_of
from miniqmt_lab.rules.nb import LotRule
from miniqmt_lab.schema import LOT

LOT_RULES: dict[Board, LotRule] = {
    Board.SH_MAIN: LotRule(LOT, LOT, LOT),
    Board.SZ_MAIN: LotRule(LOT, LOT, LOT),
    Board.CHINEXT: LotRule(LOT, LOT, LOT),
    Board.STAR: LotRule(200, 1, 200),
    Board.BJ: LotRule(100, 1, 100),
}


@functools.lru_cache(maxsize=65536)
def lot_rule(code: str) -> LotRule:
    """The board's order sizes for ``code``: (min_buy, step, min_sell)."""
    return LOT_RULES[board_of(code)]


def min_buy_volume(code: str) -> int:
    """Smallest buy: one lot of 100 shares, 200 on the STAR market."""
    return lot_rule(code).min_buy


def check_buy_volume(code: str, volume: object) -> int:
    """A buy the board accepts: at least its minimum, in its steps (100 shares; 1 share on STAR and BJ)."""
    v = _as_whole_number(volume)
    rule = lot_rule(code)
    if v < rule.min_buy or v % rule.step:
        steps = f"whole lots of {LOT} shares" if rule.step == LOT else "any whole number of shares"
        raise InvalidVolume(
            f"buy volume {volume!r} for {code}: must be at least {rule.min_buy} shares, in {steps}"
        )
    return v


def check_sell_volume(volume: object, held: int, available: int, code: str | None = None) -> int:
    """A sell the board accepts: in its steps and at least its minimum, or exactly the whole available
    remainder. More than is available: :class:`InsufficientPosition` saying what you hold. ``code``
    None: main-board sizes."""
    v = _as_whole_number(volume)
    if v <= 0:
        raise InvalidVolume(f"sell volume {volume!r}: must be positive")
    if v > available:
        raise InsufficientPosition(f"sell volume {volume!r}: you hold {held} ({max(available, 0)} available)")
    rule = lot_rule(code) if code is not None else LOT_RULES[Board.SH_MAIN]
    if v != available and (v % rule.step or v < rule.min_sell):
        what = f"a whole lot of {LOT} shares" if rule.step == LOT else f"at least {rule.min_sell} shares"
        raise InvalidVolume(
            f"sell volume {volume!r}: must be {what} unless it sells all {available} available"
            f" (you hold {held})"
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
