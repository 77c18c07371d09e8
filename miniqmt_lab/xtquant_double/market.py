"""The market the double's client serves: prices, instruments, bars, corporate actions, suspensions
and the trading calendar, kept in the units xtdata reports (``shared/spec/xtquant.md``).

:class:`FakeMarket` is what a test sets up; :mod:`miniqmt_lab.xtquant_double.xtdata` reads it the
way the real ``xtdata`` functions answer.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from miniqmt_lab import market as mkt
from miniqmt_lab.rules import ex_rights_price_nb

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
QuoteCallback = Callable[[dict[str, list[dict[str, Any]]]], Any]

DAILY_OR_LONGER = ("1d", "1w", "1mon")


def _now() -> dt.datetime:
    return dt.datetime.now(mkt.SHANGHAI)


def epoch_ms(moment: dt.datetime) -> int:
    return int(mkt.to_shanghai(moment).timestamp() * 1000)


def _day(value: dt.date | str) -> dt.date:
    return pd.Timestamp(value).date()


@dataclass
class _Instrument:
    name: str
    prev_close: float
    price_tick: float
    open_date: str  # 'YYYYMMDD', as get_instrument_detail gives OpenDate; '' unknown


@dataclass
class _Quote:
    price: float
    time: dt.datetime
    open: float
    high: float
    low: float
    volume: int  # lots, as xtdata reports it
    amount: float


@dataclass(frozen=True)
class Action:
    """One ex-date in xtdata's own terms (``get_divid_factors``): per share before tax."""

    interest: float = 0.0  # cash dividend
    stock_bonus: float = 0.0  # bonus shares
    stock_gift: float = 0.0  # shares transferred from reserves
    allot_num: float = 0.0  # rights
    allot_price: float = 0.0

    def reference_price(self, prev_close: float) -> float:
        """The exchange's ex-rights reference price: what ``preClose`` shows on the ex-date."""
        return float(ex_rights_price_nb(prev_close, self.interest, self.stock_bonus + self.stock_gift,
                                        self.allot_num, self.allot_price))


class FakeMarket:
    """Prices, instruments, bars, corporate actions, suspensions and the trading calendar.

    ``set_price`` is the market moving: resting orders that become marketable fill, and quote
    subscribers get a push. The first price of a new day makes the last one of the day before the
    previous close (today's price limits follow). A NaN or non-positive price is stored as given,
    so a feed can be shown a bad tick. Bars are given in the bar store's units (volume in shares)
    and served in xtdata's (lots).
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or _now
        self._lock = threading.Lock()
        self._instruments: dict[str, _Instrument] = {}
        self._quotes: dict[str, _Quote] = {}
        self._ticks: dict[str, list[dict[str, Any]]] = {}
        self._bars: dict[tuple[str, str], pd.DataFrame] = {}
        self._actions: dict[str, dict[dt.date, Action]] = {}
        self._suspended: dict[str, set[dt.date]] = {}
        self._calendar: tuple[dt.date, ...] | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._subscriptions: dict[int, tuple[str, str, QuoteCallback]] = {}
        self._seq = itertools.count(1)

    # -- setting up ---------------------------------------------------------------------------------
    def set_instrument(self, code: str, name: str = "", prev_close: float = math.nan, price_tick: float = 0.01,
                       open_date: dt.date | str | None = None) -> None:
        """A stock the client knows; ``open_date`` is its listing date (``OpenDate``)."""
        code = mkt.normalize_code(code)
        listed = _day(open_date).strftime("%Y%m%d") if open_date is not None else ""
        with self._lock:
            old = self._instruments.get(code)
            if open_date is None and old is not None:
                listed = old.open_date
            self._instruments[code] = _Instrument(name or code, float(prev_close), float(price_tick), listed)

    def set_price(self, code: str, price: float, *, volume: int = 0, time: dt.datetime | None = None) -> None:
        """A trade at ``price`` of ``volume`` shares (xtdata counts them in lots) at ``time`` (default: now)."""
        code = mkt.normalize_code(code)
        moment = mkt.to_shanghai(time) if time is not None else self.clock()
        price = float(price)
        with self._lock:
            if code not in self._instruments:
                self._instruments[code] = _Instrument(code, price, 0.01, "")
            old = self._quotes.get(code)
            if old is not None and old.time.date() < moment.date() and old.price > 0:
                # a new trading day: yesterday's last price is today's previous close
                self._instruments[code] = replace(self._instruments[code], prev_close=old.price)
            if old is None or old.time.date() != moment.date():
                quote = _Quote(price, moment, price, price, price, 0, 0.0)
            else:
                quote = replace(old, price=price, time=moment, high=max(old.high, price), low=min(old.low, price))
            if math.isfinite(price) and price > 0:
                quote.volume += int(volume) // mkt.LOT
                quote.amount += price * int(volume)
            self._quotes[code] = quote
            listeners = list(self._listeners)
            subscribers = [(p, f) for c, p, f in self._subscriptions.values() if c == code]
        tick = self.full_tick(code)
        with self._lock:
            self._ticks.setdefault(code, []).append(tick)
        for listener in listeners:
            listener(code)
        for period, callback in subscribers:
            payload = tick if period == "tick" else self._running_bar(tick)
            try:
                callback({code: [payload]})
            except Exception:  # xtdata swallows exceptions of quote callbacks; so does the double
                log.exception("quote callback for %s raised", code)

    def add_bars(self, bars: pd.DataFrame, period: str = "1d") -> None:
        """Bars in the bar store's long format (stock_code, date or time, open, high, low, close, volume
        in shares, amount); ``period`` is xtdata's ('1d', '1w', '1mon', '1m', ...)."""
        time_column = "date" if "date" in bars.columns else "time"
        for code, rows in bars.groupby("stock_code"):
            frame = rows.assign(stamp=pd.to_datetime(rows[time_column])).set_index("stamp").sort_index()
            if "amount" not in frame:
                frame["amount"] = frame["close"] * frame["volume"]
            columns = ["open", "high", "low", "close", "volume", "amount"]
            with self._lock:
                key = (mkt.normalize_code(str(code)), period)
                old = self._bars.get(key)
                merged = frame[columns] if old is None else pd.concat([old, frame[columns]])
                self._bars[key] = merged[~merged.index.duplicated(keep="last")].sort_index()

    def add_action(self, code: str, ex_date: dt.date | str, *, interest: float = 0.0, stock_bonus: float = 0.0,
                   stock_gift: float = 0.0, allot_num: float = 0.0, allot_price: float = 0.0) -> None:
        """An ex-rights / ex-dividend date of ``code``, per share: served by ``get_divid_factors`` and
        shown in that day's K-line ``preClose`` as the exchange's reference price."""
        action = Action(float(interest), float(stock_bonus), float(stock_gift), float(allot_num), float(allot_price))
        with self._lock:
            self._actions.setdefault(mkt.normalize_code(code), {})[_day(ex_date)] = action

    def suspend(self, code: str, days: Iterable[dt.date | str]) -> None:
        """Days ``code`` did not trade: its daily K-lines show them filled with the last close, volume 0
        and ``suspendFlag`` 1, as xtdata does with ``fill_data=True``."""
        with self._lock:
            self._suspended.setdefault(mkt.normalize_code(code), set()).update(_day(d) for d in days)

    def set_calendar(self, days: Iterable[dt.date]) -> None:
        with self._lock:
            self._calendar = tuple(sorted(days))

    # -- reading -------------------------------------------------------------------------------------
    def price(self, code: str) -> float:
        with self._lock:
            quote = self._quotes.get(code)
        return quote.price if quote is not None else math.nan

    def name(self, code: str) -> str:
        with self._lock:
            inst = self._instruments.get(code)
        return inst.name if inst is not None else ""

    def limits(self, code: str) -> tuple[float, float]:
        """(up, down) price limits of today from the instrument's previous close; NaNs when unknown."""
        with self._lock:
            inst = self._instruments.get(code)
        if inst is None:
            return math.nan, math.nan
        return mkt.limit_prices(code, inst.prev_close, inst.name)

    def instrument_detail(self, code: str) -> dict[str, Any] | None:
        with self._lock:
            inst = self._instruments.get(code)
        if inst is None:
            return None
        up, down = self.limits(code)
        return {
            "ExchangeID": code[7:],
            "InstrumentID": code[:6],
            "InstrumentName": inst.name,
            "OpenDate": inst.open_date,
            "PreClose": inst.prev_close if math.isfinite(inst.prev_close) else 0.0,
            "UpStopPrice": up if math.isfinite(up) else 0.0,
            "DownStopPrice": down if math.isfinite(down) else 0.0,
            "PriceTick": inst.price_tick,
        }

    def full_tick(self, code: str) -> dict[str, Any]:
        """The last snapshot of ``code``, whatever its date (xtdata keeps yesterday's after the close)."""
        with self._lock:
            quote = self._quotes[code]
            inst = self._instruments[code]
        step = inst.price_tick
        return {
            "time": epoch_ms(quote.time),
            "lastPrice": quote.price,
            "open": quote.open,
            "high": quote.high,
            "low": quote.low,
            "lastClose": inst.prev_close if math.isfinite(inst.prev_close) else 0.0,
            "amount": quote.amount,
            "volume": quote.volume,
            "pvolume": quote.volume * mkt.LOT,
            "stockStatus": 0,
            "openInt": 13,
            "lastSettlementPrice": 0.0,
            "askPrice": [round(quote.price + step * i, 2) for i in range(1, 6)],
            "bidPrice": [round(quote.price - step * i, 2) for i in range(5)],
            "askVol": [10] * 5,
            "bidVol": [10] * 5,
        }

    def quoted_codes(self, codes: Iterable[str]) -> list[str]:
        with self._lock:
            return [c for c in codes if c in self._quotes]

    def has_data(self, code: str, period: str) -> bool:
        with self._lock:
            return (code, period) in self._bars if period != "tick" else bool(self._ticks.get(code))

    def klines(self, code: str, period: str) -> pd.DataFrame | None:
        """``code``'s K-lines as xtdata serves them, indexed by bar time: volume in lots, ``preClose``
        (the exchange's reference price on an ex-date) and ``suspendFlag`` (daily: suspended days filled)."""
        with self._lock:
            bars = self._bars.get((code, period))
            actions = dict(self._actions.get(code, {}))
            suspended = set(self._suspended.get(code, ())) if period == "1d" else set()
        if bars is None:
            return None
        frame = bars.copy()
        frame["suspendFlag"] = 0
        if suspended:
            frame = _fill_suspended(frame, suspended)
        frame["volume"] = (frame["volume"] / mkt.LOT).round()  # whole lots
        previous = frame["close"].shift(1)
        pre_close = []
        for stamp, prev in zip(frame.index, previous, strict=True):
            action = actions.get(stamp.date()) if period == "1d" else None
            if not (prev > 0):
                pre_close.append(0.0)
            else:
                pre_close.append(action.reference_price(prev) if action is not None else float(prev))
        frame["preClose"] = pre_close
        return frame

    def ticks(self, code: str) -> list[dict[str, Any]]:
        """Every snapshot of ``code`` so far (the ``'tick'`` period's history)."""
        with self._lock:
            return list(self._ticks.get(code, ()))

    def actions(self, code: str) -> dict[dt.date, Action]:
        with self._lock:
            return dict(self._actions.get(code, {}))

    def calendar(self) -> tuple[dt.date, ...] | None:
        with self._lock:
            return self._calendar

    @staticmethod
    def _running_bar(tick: dict[str, Any]) -> dict[str, Any]:
        return {
            "time": tick["time"], "open": tick["open"], "high": tick["high"], "low": tick["low"],
            "close": tick["lastPrice"], "volume": tick["volume"], "amount": tick["amount"],
            "preClose": tick["lastClose"],
        }

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """``listener(code)`` runs after every price change of ``code`` (the double's client fills orders)."""
        with self._lock:
            self._listeners.append(listener)

    def subscribe_quote(self, code: str, period: str, callback: QuoteCallback) -> int:
        seq = next(self._seq)
        with self._lock:
            self._subscriptions[seq] = (code, period, callback)
        return seq

    def unsubscribe_quote(self, seq: int) -> None:
        with self._lock:
            self._subscriptions.pop(seq, None)


def _fill_suspended(frame: pd.DataFrame, days: set[dt.date]) -> pd.DataFrame:
    """Daily bars with each suspended day after the first bar as xtdata fills it: the last close as
    every price, volume and amount 0, ``suspendFlag`` 1 (a bar given for such a day is replaced)."""
    traded = frame[[s.date() not in days for s in frame.index]]
    first = traded.index[0].date()
    extra = pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in days if d > first))
    merged = pd.concat([traded, pd.DataFrame(index=extra, columns=frame.columns, dtype=float)]).sort_index()
    merged["close"] = merged["close"].ffill()
    for column in ("open", "high", "low"):
        merged[column] = merged[column].fillna(merged["close"])
    merged[["volume", "amount"]] = merged[["volume", "amount"]].fillna(0.0)
    merged["suspendFlag"] = [1 if s.date() in days else 0 for s in merged.index]
    return merged
