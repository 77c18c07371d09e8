"""The double's ``xtquant.xtdata``: the functions the feed uses, answering over a :class:`FakeMarket`
as the real ones do (``shared/spec/xtquant.md``): data must be downloaded before it is read,
volumes are in lots, suspended days are filled rows flagged ``suspendFlag`` 1, ``get_full_tick``
returns the last snapshot whatever its date, a banner is printed on every (re)connect unless
``enable_hello`` is False, and with no client running every call raises a plain ``Exception``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from miniqmt_lab.xtquant_double.market import DAILY_OR_LONGER, FakeMarket, QuoteCallback, epoch_ms

CLIENT_DOWN_MESSAGE = "无法连接xtquant服务，请检查QMT-投研版或QMT-极简版是否开启"
"""What every xtdata call raises (as a plain Exception) when no client is running."""

HELLO = "***** xtdata连接成功 *****\n设置xtdata.enable_hello = False可隐藏此消息\n"
"""The start and end of the banner xtdata prints to stdout on every (re)connect."""

KLINE_COLUMNS = ("time", "open", "high", "low", "close", "volume", "amount", "settelementPrice", "openInterest",
                 "preClose", "suspendFlag")
DIVID_COLUMNS = ("time", "interest", "stockBonus", "stockGift", "allotNum", "allotPrice", "gugai", "dr")


def _parse_xt_time(text: str, end: bool) -> pd.Timestamp | None:
    if not text:
        return None
    stamp = pd.Timestamp(dt.datetime.strptime(text, "%Y%m%d%H%M%S" if len(text) == 14 else "%Y%m%d"))
    return stamp + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1) if end and len(text) == 8 else stamp


def _within(stamp: pd.Timestamp, start: pd.Timestamp | None, end: pd.Timestamp | None) -> bool:
    return (start is None or stamp >= start) and (end is None or stamp <= end)


class FakeXtData:
    """The ``xtdata`` functions the feed uses, over the :class:`FakeMarket`.

    Every ``dividend_type`` gives the stored (unadjusted) prices. ``calls`` lists the calls made.
    """

    def __init__(self, market: FakeMarket, is_running: Callable[[], bool],
                 admit: Callable[[str, float | None], bool] = lambda name, timeout: True) -> None:
        self.enable_hello = True
        self.calls: list[str] = []
        self._market = market
        self._is_running = is_running
        self._admit = admit
        self._downloaded: set[tuple[str, str]] = set()
        self._connected = False

    def _enter(self, name: str) -> None:
        """Every call connects first: no client raises, a new connection prints the banner. A call
        the client hangs (``FakeQmt.hang``) waits: xtdata calls have no timeout."""
        self.calls.append(name)
        self._admit(name, None)
        if not self._is_running():
            self._connected = False
            raise Exception(CLIENT_DOWN_MESSAGE)
        if not self._connected:
            self._connected = True
            if self.enable_hello:
                print(HELLO)

    def download_history_data(self, stock_code: str, period: str, start_time: str = "", end_time: str = "",
                              incrementally: bool | None = None) -> None:
        self._enter("download_history_data")
        self._downloaded.add((stock_code, period))

    def download_history_data2(self, stock_list: Sequence[str], period: str, start_time: str = "",
                               end_time: str = "", callback: Callable[[dict[str, Any]], Any] | None = None,
                               incrementally: bool | None = None) -> dict[str, Any]:
        self._enter("download_history_data2")
        total = len(stock_list)
        for finished, code in enumerate(stock_list, start=1):
            known = self._market.has_data(code, period)
            self._downloaded.add((code, period))
            if callback is not None:
                callback({"total": total, "finished": finished, "stockcode": code,
                          "message": "" if known else f"{code} 无{period}数据"})
        return {}

    def get_market_data_ex(self, field_list: Sequence[str] = (), stock_list: Sequence[str] = (), period: str = "1d",
                           start_time: str = "", end_time: str = "", count: int = -1, dividend_type: str = "none",
                           fill_data: bool = True) -> dict[str, pd.DataFrame]:
        self._enter("get_market_data_ex")
        start, end = _parse_xt_time(start_time, False), _parse_xt_time(end_time, True)
        out: dict[str, pd.DataFrame] = {}
        for code in stock_list:
            downloaded = (code, period) in self._downloaded
            frame = (self._tick_frame(code) if period == "tick" else self._kline_frame(code, period, fill_data)
                     ) if downloaded else None
            if frame is None:
                out[code] = pd.DataFrame(columns=list(field_list) or list(KLINE_COLUMNS),
                                         index=pd.Index([], dtype=object))
                continue
            stamps = pd.to_datetime(frame["time"], unit="ms", utc=True).dt.tz_convert("Asia/Shanghai")
            keep = [_within(s.tz_localize(None), start, end) for s in stamps]
            frame = frame[keep]
            if count > 0:
                frame = frame.tail(count)
            out[code] = frame[list(field_list)] if field_list else frame
        return out

    def _kline_frame(self, code: str, period: str, fill_data: bool) -> pd.DataFrame | None:
        klines = self._market.klines(code, period)
        if klines is None:
            return None
        if not fill_data:
            klines = klines[klines["suspendFlag"] == 0]
        # the real index format: 'YYYYMMDD' for '1d' only, 'YYYYMMDDhhmmss' for every other period
        fmt = "%Y%m%d" if period == "1d" else "%Y%m%d%H%M%S"
        return pd.DataFrame({
            "time": [epoch_ms(s.to_pydatetime().replace(tzinfo=None)) for s in klines.index],
            "open": klines["open"].to_numpy(float), "high": klines["high"].to_numpy(float),
            "low": klines["low"].to_numpy(float), "close": klines["close"].to_numpy(float),
            "volume": klines["volume"].to_numpy(float), "amount": klines["amount"].to_numpy(float),
            "settelementPrice": 0.0, "openInterest": 13 if period in DAILY_OR_LONGER else 15,
            "preClose": klines["preClose"].to_numpy(float), "suspendFlag": klines["suspendFlag"].to_numpy(int),
        }, index=[s.strftime(fmt) for s in klines.index])

    def _tick_frame(self, code: str) -> pd.DataFrame | None:
        ticks = self._market.ticks(code)
        if not ticks:
            return None
        frame = pd.DataFrame(ticks)
        stamps = pd.to_datetime(frame["time"], unit="ms", utc=True).dt.tz_convert("Asia/Shanghai")
        return frame.set_axis([s.strftime("%Y%m%d%H%M%S") for s in stamps])

    def get_full_tick(self, code_list: Sequence[str]) -> dict[str, dict[str, Any]]:
        self._enter("get_full_tick")
        return {code: self._market.full_tick(code) for code in self._market.quoted_codes(code_list)}

    def get_divid_factors(self, stock_code: str, start_time: str = "", end_time: str = "") -> pd.DataFrame:
        """Ex-dates of ``stock_code`` indexed 'YYYYMMDD' with xtdata's columns (``dr``: the day's
        adjustment factor, previous close over reference price)."""
        self._enter("get_divid_factors")
        start, end = _parse_xt_time(start_time, False), _parse_xt_time(end_time, True)
        klines = self._market.klines(stock_code, "1d")
        rows, index = [], []
        for day, a in sorted(self._market.actions(stock_code).items()):
            if not _within(pd.Timestamp(day), start, end):
                continue
            dr = 1.0
            if klines is not None:
                before = klines.loc[klines.index < pd.Timestamp(day), "close"]
                if len(before) and before.iloc[-1] > 0:
                    dr = float(before.iloc[-1]) / a.reference_price(float(before.iloc[-1]))
            moment = dt.datetime.combine(day, dt.time()).replace(tzinfo=None)
            rows.append((epoch_ms(moment), a.interest, a.stock_bonus, a.stock_gift, a.allot_num, a.allot_price,
                         0.0, dr))
            index.append(day.strftime("%Y%m%d"))
        return pd.DataFrame(rows, columns=list(DIVID_COLUMNS), index=index)

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
        return [d.strftime("%Y%m%d") for d in days if _within(pd.Timestamp(d), start, end)]
