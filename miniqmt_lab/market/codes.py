"""Stock codes and boards: which six digits on which exchange are A-share stocks, and of which board.

Boards (rules.md, "Order sizes by board"): SH main 600/601/603/605, STAR 688/689, SZ main
000/001/002/003, ChiNext 300/301/302, Beijing 4xxxxx/8xxxxx/920xxx. Codes come as ``600000.SH``,
``600000.XSHG``, ``SH600000``, ``sh.600000`` or bare six digits; anything else that is a real security
(a B-share, a fund, a bond, an index, a repo) is refused with a message saying what it is.
"""

from __future__ import annotations

import functools
import re
from enum import Enum

from miniqmt_lab.errors import InvalidStockCode


class Board(Enum):
    SH_MAIN = "SH main board"
    SZ_MAIN = "SZ main board"
    CHINEXT = "ChiNext"
    STAR = "STAR market"
    BJ = "Beijing exchange"


# exchange suffixes and prefixes as vendors write them (Wind/QMT, JoinQuant/RiceQuant, Yahoo)
_EXCHANGE_ALIASES = {
    "SH": "SH", "SS": "SH", "XSHG": "SH", "SSE": "SH",
    "SZ": "SZ", "XSHE": "SZ", "SZSE": "SZ",
    "BJ": "BJ", "BSE": "BJ", "XBSE": "BJ", "BJSE": "BJ",
}
_ALIAS = "|".join(sorted(_EXCHANGE_ALIASES, key=len, reverse=True))
_CODE_RE = re.compile(rf"^(?:({_ALIAS})\.?)?([0-9]{{6}})(?:\.({_ALIAS}))?$")  # ASCII digits only

_STOCK_PREFIXES: dict[str, tuple[tuple[tuple[str, ...], Board], ...]] = {
    "SH": ((("600", "601", "603", "605"), Board.SH_MAIN), (("688", "689"), Board.STAR)),
    "SZ": ((("000", "001", "002", "003"), Board.SZ_MAIN), (("300", "301", "302"), Board.CHINEXT)),
    "BJ": ((("920",), Board.BJ), (("4",), Board.BJ), (("8",), Board.BJ)),
}

# what other six-digit codes of each exchange are: checked in order, first prefix match wins
_OTHER_KINDS: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "SH": (
        (("000",), "an SSE index"),
        (("900",), "a B-share (traded in US dollars)"),
        (("50", "51", "52", "53", "56", "58"), "a fund (ETF/LOF)"),
        (("01", "02", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19"), "a bond"),
        (("20",), "a repo"),
        (("7",), "a subscription or rights code, not a tradable stock"),
    ),
    "SZ": (
        (("399", "98"), "an SZSE index"),
        (("200", "201"), "a B-share (traded in HK dollars)"),
        (("15", "16", "18"), "a fund (ETF/LOF)"),
        (("131",), "a repo"),
        (("10", "11", "12", "13"), "a bond"),
    ),
    "BJ": ((("899",), "a Beijing exchange index"),),
}


def _board_of(digits: str, exchange: str) -> Board | None:
    if _kind_of(digits, exchange) is not None:  # 899xxx on BJ is an index, not a stock of the 8 range
        return None
    for prefixes, board in _STOCK_PREFIXES.get(exchange, ()):
        if digits.startswith(prefixes):
            return board
    return None


def _kind_of(digits: str, exchange: str) -> str | None:
    for prefixes, kind in _OTHER_KINDS.get(exchange, ()):
        if digits.startswith(prefixes):
            return kind
    return None


def _exchange_from_digits(digits: str) -> str | None:
    """The exchange a bare code most likely means (a bare 000001 is the SZ stock, not the SSE index)."""
    if digits.startswith(("6", "9", "5", "7")) and not digits.startswith("92"):
        return "SH"
    if digits.startswith(("0", "3", "2", "1")):
        return "SZ"
    if digits.startswith(("4", "8", "92")):
        return "BJ"
    return None


@functools.lru_cache(maxsize=65536)
def normalize_code(code: object) -> str:
    """``'600000.SH'`` form of an A-share stock code, or :class:`InvalidStockCode` saying why not.

    Accepts ``600000.sh``, ``600000.XSHG``, ``000001.XSHE``, ``430047.BJ``, ``SH600000``, ``sh.600000``
    and a bare ``600000`` (exchange inferred from the prefix). B-shares, funds, bonds, indices and codes
    on the wrong exchange are refused with a message naming what they are.
    """
    if not isinstance(code, str):
        raise InvalidStockCode(f"stock code must be a string like '600000.SH', got {code!r}")
    text = code.strip().upper()
    m = _CODE_RE.match(text)
    if not m or (m.group(1) and m.group(3)):
        raise InvalidStockCode(f"invalid stock code {code!r}: expected six digits and an exchange, like '600000.SH'")
    digits = m.group(2)
    alias = m.group(1) or m.group(3)
    exchange = _EXCHANGE_ALIASES[alias] if alias else _exchange_from_digits(digits)
    if exchange is None:
        raise InvalidStockCode(f"invalid stock code {code!r}: {digits} is not an A-share stock")
    if _board_of(digits, exchange) is None:
        kind = _kind_of(digits, exchange)
        what = f"{kind}, not an A-share stock" if kind else f"not an A-share stock on {exchange}"
        raise InvalidStockCode(f"invalid stock code {code!r}: {digits}.{exchange} is {what}")
    return f"{digits}.{exchange}"


def is_stock_code(code: object) -> bool:
    """True when ``code`` normalizes to an A-share stock code (for bulk imports that skip the rest)."""
    try:
        normalize_code(code)
    except InvalidStockCode:
        return False
    return True


def board_of(code: str) -> Board:
    norm = normalize_code(code)
    board = _board_of(norm[:6], norm[7:])
    assert board is not None  # normalize_code guarantees it
    return board


def is_st(name: str | None) -> bool:
    """An ST or *ST name: ``ST`` in the bar's stock name (5% limits)."""
    return bool(name) and "ST" in str(name).upper()
