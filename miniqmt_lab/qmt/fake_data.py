"""The market side of the fake client: :class:`FakeMarket` (prices, instruments, bars, calendar)
and :class:`FakeXtData`, the ``xtquant.xtdata`` functions the feed uses.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from miniqmt_lab import market as mkt

log = logging.getLogger(__name__)

CLIENT_DOWN_MESSAGE = "无法连接xtquant服务，请检查QMT-投研版或QMT-极简版是否开启"
"""What every xtdata call raises (as a plain Exception) when no client is running."""

Clock = Callable[[], dt.datetime]
QuoteCallback = Callable[[dict[str, list[dict[str, Any]]]], Any]


def _now() -> dt.datetime:
    return dt.datetime.now(mkt.SHANGHAI)


def _epoch_ms(moment: dt.datetime) -> int:
    return int(mkt.to_shanghai(moment).timestamp() * 1000)


@dataclass
class _Instrument:
    name: str
    prev_close: float
    price_tick: float


@dataclass
class _Quote:
    price: float
    time: dt.datetime
    open: float
    high: float
    low: float
    volume: int  # lots, as xtdata reports it
    amount: float


class FakeMarket:
    """Prices, instruments, bars and the trading calendar the fake client serves.

    ``set_price`` is the market moving: resting orders that become marketable fill, and quote
    subscribers get a push. The first price of a new day makes the last one of the day before the
    previous close (today's price limits follow). A NaN or non-positive price is stored as given,
    so a feed can be shown a bad tick.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or _now
        self._lock = threading.Lock()
        self._instruments: dict[str, _Instrument] = {}
        self._quotes: dict[str, _Quote] = {}
        self._bars: dict[tuple[str, str], pd.DataFrame] = {}
        self._calendar: tuple[dt.date, ...] | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._subscriptions: dict[int, tuple[str, str, QuoteCallback]] = {}
        self._seq = itertools.count(1)

    # -- setting up ---------------------------------------------------------------------------------
    def set_instrument(self, code: str, name: str = "", prev_close: float = math.nan, price_tick: float = 0.01) -> None:
        code = mkt.normalize_code(code)
        with self._lock:
            self._instruments[code] = _Instrument(name or code, float(prev_close), float(price_tick))

    def set_price(self, code: str, price: float, *, volume: int = 0, time: dt.datetime | None = None) -> None:
        code = mkt.normalize_code(code)
        moment = mkt.to_shanghai(time) if time is not None else self.clock()
        price = float(price)
        with self._lock:
            if code not in self._instruments:
                self._instruments[code] = _Instrument(code, price, 0.01)
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
        for listener in listeners:
            listener(code)
        for period, callback in subscribers:
            payload = self.full_tick(code) if period == "tick" else self._running_bar(code)
            try:
                callback({code: [payload]})
            except Exception:  # xtdata swallows exceptions of quote callbacks; so does the fake
                log.exception("quote callback for %s raised", code)

    def add_bars(self, bars: pd.DataFrame, period: str = "1d") -> None:
        """Bars in the bar store's long format (stock_code, date or time, open, high, low, close, volume, amount)."""
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
            "PreClose": inst.prev_close if math.isfinite(inst.prev_close) else 0.0,
            "UpStopPrice": up if math.isfinite(up) else 0.0,
            "DownStopPrice": down if math.isfinite(down) else 0.0,
            "PriceTick": inst.price_tick,
        }

    def full_tick(self, code: str) -> dict[str, Any]:
        with self._lock:
            quote = self._quotes[code]
            inst = self._instruments[code]
        step = inst.price_tick
        return {
            "time": _epoch_ms(quote.time),
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

    def bars(self, code: str, period: str) -> pd.DataFrame | None:
        with self._lock:
            return self._bars.get((code, period))

    def calendar(self) -> tuple[dt.date, ...] | None:
        with self._lock:
            return self._calendar

    def _running_bar(self, code: str) -> dict[str, Any]:
        tick = self.full_tick(code)
        return {
            "time": tick["time"], "open": tick["open"], "high": tick["high"], "low": tick["low"],
            "close": tick["lastPrice"], "volume": tick["volume"], "amount": tick["amount"],
            "preClose": tick["lastClose"],
        }

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """``listener(code)`` runs after every price change of ``code`` (the fake client fills orders)."""
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


def _parse_xt_time(text: str, end: bool) -> pd.Timestamp | None:
    if not text:
        return None
    stamp = pd.Timestamp(dt.datetime.strptime(text, "%Y%m%d%H%M%S" if len(text) == 14 else "%Y%m%d"))
    return stamp + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1) if end and len(text) == 8 else stamp


class FakeXtData:
    """The ``xtdata`` functions the feed uses, over the :class:`FakeMarket`.

    Data must be downloaded before ``get_market_data_ex`` returns it, as with the real client.
    The fake knows no corporate actions: every ``dividend_type`` gives the stored prices.
    """

    XT_COLUMNS = ("time", "open", "high", "low", "close", "volume", "amount", "settelementPrice", "openInterest",
                  "preClose", "suspendFlag")

    def __init__(self, market: FakeMarket, is_running: Callable[[], bool]) -> None:
        self._market = market
        self._is_running = is_running
        self._downloaded: set[tuple[str, str]] = set()
        self.calls: list[str] = []

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if not self._is_running():
            raise Exception(CLIENT_DOWN_MESSAGE)

    def download_history_data(self, stock_code: str, period: str, start_time: str = "", end_time: str = "",
                              incrementally: bool | None = None) -> None:
        self._enter("download_history_data")
        self._downloaded.add((stock_code, period))

    def download_history_data2(self, stock_list: Sequence[str], period: str, start_time: str = "",
                               end_time: str = "", callback: Callable[[dict[str, Any]], Any] | None = None,
                               incrementally: bool | None = None) -> None:
        self._enter("download_history_data2")
        total = len(stock_list)
        for finished, code in enumerate(stock_list, start=1):
            known = self._market.bars(code, period) is not None
            self._downloaded.add((code, period))
            if callback is not None:
                callback({"total": total, "finished": finished, "stockcode": code,
                          "message": "" if known else f"{code} 无{period}数据"})

    def get_market_data_ex(self, field_list: Sequence[str] = (), stock_list: Sequence[str] = (), period: str = "1d",
                           start_time: str = "", end_time: str = "", count: int = -1, dividend_type: str = "none",
                           fill_data: bool = True) -> dict[str, pd.DataFrame]:
        self._enter("get_market_data_ex")
        columns = list(field_list) or list(self.XT_COLUMNS)
        start, end = _parse_xt_time(start_time, False), _parse_xt_time(end_time, True)
        out: dict[str, pd.DataFrame] = {}
        for code in stock_list:
            bars = self._market.bars(code, period) if (code, period) in self._downloaded else None
            if bars is None:
                out[code] = pd.DataFrame(columns=columns, index=pd.Index([], dtype=object))
                continue
            frame = pd.DataFrame({
                "time": [_epoch_ms(s.to_pydatetime()) for s in bars.index],
                "open": bars["open"].to_numpy(float), "high": bars["high"].to_numpy(float),
                "low": bars["low"].to_numpy(float), "close": bars["close"].to_numpy(float),
                "volume": bars["volume"].to_numpy(float),
                "amount": bars["amount"].to_numpy(float),
                "settelementPrice": 0.0, "openInterest": 13, "preClose": bars["close"].shift(1).fillna(0.0).to_numpy(),
                "suspendFlag": 0,
            }, index=[s.strftime("%Y%m%d" if period == "1d" else "%Y%m%d%H%M%S") for s in bars.index])
            keep = [(start is None or s >= start) and (end is None or s <= end) for s in bars.index]
            frame = frame[keep]
            if count > 0:
                frame = frame.tail(count)
            out[code] = frame[columns]
        return out

    def get_full_tick(self, code_list: Sequence[str]) -> dict[str, dict[str, Any]]:
        self._enter("get_full_tick")
        return {code: self._market.full_tick(code) for code in self._market.quoted_codes(code_list)}

    def subscribe_quote(self, stock_code: str, period: str = "1d", start_time: str = "", end_time: str = "",
                        count: int = 0, callback: QuoteCallback | None = None) -> int:
        self._enter("subscribe_quote")
        if callback is None:
            return -1
        return self._market.subscribe_quote(stock_code, period, callback)

    def unsubscribe_quote(self, seq: int) -> None:
        self._enter("unsubscribe_quote")
        self._market.unsubscribe_quote(seq)

    def get_instrument_detail(self, stock_code: str, iscomplete: bool = False) -> dict[str, Any] | None:
        self._enter("get_instrument_detail")
        return self._market.instrument_detail(stock_code)

    def get_trading_calendar(self, market: str, start_time: str = "", end_time: str = "") -> list[str]:
        self._enter("get_trading_calendar")
        days = self._market.calendar()
        if days is None:
            raise Exception("交易日历数据不存在, 请先调用download_holiday_data")
        start = _parse_xt_time(start_time, False)
        end = _parse_xt_time(end_time, True)
        return [d.strftime("%Y%m%d") for d in days
                if (start is None or pd.Timestamp(d) >= start) and (end is None or pd.Timestamp(d) <= end)]
