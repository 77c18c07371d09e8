"""``QmtFeed``: live prices and history from ``xtquant.xtdata`` (the Feed protocol, plus downloads).

Live rounds come from polling ``get_full_tick`` for the watched codes: it needs no subscription
and no callback thread, and a poll that fails (client restarting) costs one round, not a thread.
A tick is delivered once (a code's tick whose time has not advanced is skipped); a tick with a
missing, NaN or non-positive price is dropped and logged. Opened again after ``close`` (an engine
stopped and started), the feed starts over as a new one would: its first round carries the latest
tick of every watched code, so the restarted engine has prices at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from miniqmt_lab import market as mkt
from miniqmt_lab.config import Settings
from miniqmt_lab.errors import QmtUnavailable
from miniqmt_lab.qmt.loader import XtModules, client_errors, resolve
from miniqmt_lab.schema import Tick, TickRound

log = logging.getLogger(__name__)

CLOSE_TICK_TIME = dt.time(14, 57)
"""From here on a live tick is the daily bar's last one (the replay's close tick has this time)."""

STORABLE_PERIODS: dict[str, Literal["1d", "1m"]] = {"1d": "1d", "1m": "1m"}  # xtdata period -> bar store freq


@dataclass(frozen=True, slots=True)
class Instrument:
    code: str
    name: str
    prev_close: float
    up_limit: float
    down_limit: float
    price_tick: float


def xt_time(value: Any) -> str:
    """``'YYYYMMDD'`` for a date, ``'YYYYMMDDhhmmss'`` for a moment with a time of day, ``''`` for None."""
    if value is None or value == "":
        return ""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert(mkt.SHANGHAI).tz_localize(None)
    return stamp.strftime("%Y%m%d") if stamp == stamp.normalize() else stamp.strftime("%Y%m%d%H%M%S")


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def tick_from_xt(code: str, raw: Any, name: str, now: dt.datetime) -> tuple[Tick | None, str]:
    """A Tick from a ``get_full_tick`` entry, or (None, why it is unusable)."""
    if not isinstance(raw, dict):
        return None, "no tick"
    price = _number(raw.get("lastPrice"))
    if not (math.isfinite(price) and price > 0):
        return None, f"bad lastPrice {raw.get('lastPrice')!r}"
    stamp_ms = _number(raw.get("time"))
    moment = dt.datetime.fromtimestamp(stamp_ms / 1000, mkt.SHANGHAI) if stamp_ms > 0 else now
    prev_close = _number(raw.get("lastClose"))
    return Tick(
        code=code,
        price=price,
        time=moment,
        bar_close=moment.time() >= CLOSE_TICK_TIME,
        prev_close=prev_close if math.isfinite(prev_close) and prev_close > 0 else math.nan,
        name=name,
    ), ""


def bars_from_xt(data: dict[str, pd.DataFrame], period: str, names: dict[str, str]) -> pd.DataFrame:
    """The bar store's long frame from ``get_market_data_ex`` output; suspended and empty bars dropped."""
    time_column = "date" if period == "1d" else "time"
    fmt = "%Y%m%d" if period in ("1d", "1w") else "%Y%m%d%H%M%S"
    columns = ["stock_code", "stock_name", time_column, "open", "high", "low", "close", "volume", "amount"]
    frames = []
    for code, frame in data.items():
        if frame is None or frame.empty:
            continue
        rows = pd.DataFrame({
            "stock_code": code,
            "stock_name": names.get(code, ""),
            time_column: pd.to_datetime(pd.Index(frame.index).astype(str), format=fmt),
            **{c: pd.to_numeric(frame[c], errors="coerce").to_numpy(float)
               for c in ("open", "high", "low", "close", "volume", "amount")},
        })
        usable = rows["close"].gt(0) & rows[["open", "high", "low", "close"]].notna().all(axis=1)
        if "suspendFlag" in frame:
            usable &= pd.to_numeric(frame["suspendFlag"], errors="coerce").fillna(0).to_numpy() != 1
        frames.append(rows[usable.to_numpy()])
    if not frames:
        return pd.DataFrame({c: [] for c in columns})
    return pd.concat(frames, ignore_index=True).sort_values([time_column, "stock_code"], ignore_index=True)


class QmtFeed:
    """The Feed protocol on ``xtquant.xtdata``, plus history downloads, instrument facts and the calendar.

    ``modules`` supplies xtquant (default: the installed package, imported on first use).
    ``poll_interval`` is the pause between ``get_full_tick`` polls while a round is awaited.
    """

    def __init__(self, settings: Settings, *, modules: XtModules | None = None, poll_interval: float = 1.0) -> None:
        self.settings = settings
        self._modules = modules
        self._xtdata: Any = None
        self._poll_interval = poll_interval
        self._lock = threading.Lock()
        self._codes: tuple[str, ...] = ()
        self._last_time: dict[str, dt.datetime] = {}
        self._names: dict[str, str] = {}
        self._bad: set[str] = set()  # codes whose bad tick was already logged
        self._closed = threading.Event()
        self._client_down = False
        self.last_error = ""

    # -- Feed protocol -------------------------------------------------------------------------------
    def open(self) -> None:
        self._last_time.clear()
        self._bad.clear()
        self._closed.clear()

    def watch(self, codes: Sequence[str]) -> None:
        normalized = tuple(sorted({mkt.normalize_code(c) for c in codes}))
        with self._lock:
            self._codes = normalized

    def next_round(self, timeout: float) -> TickRound | None:
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            ticks = self._poll()
            if ticks:
                return TickRound(time=max(t.time for t in ticks), ticks=tuple(ticks))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._closed.wait(min(self._poll_interval, remaining))
        return None

    def finished(self) -> bool:
        return False

    def close(self) -> None:
        self._closed.set()

    # -- facts ---------------------------------------------------------------------------------------
    def instrument(self, code: str) -> Instrument | None:
        """Name, previous close, today's limits and price tick; None when the client does not know the code."""
        code = mkt.normalize_code(code)
        with client_errors():
            detail = self._data().get_instrument_detail(code)
        if not detail:
            return None
        name = str(detail.get("InstrumentName") or "")
        with self._lock:
            self._names[code] = name
        return Instrument(
            code=code, name=name, prev_close=_number(detail.get("PreClose")),
            up_limit=_number(detail.get("UpStopPrice")), down_limit=_number(detail.get("DownStopPrice")),
            price_tick=_number(detail.get("PriceTick")),
        )

    def trading_days(self, start: Any, end: Any) -> list[dt.date]:
        """Trading days from ``start`` to ``end`` inclusive: the client's calendar, else the XSHG calendar."""
        first, last = pd.Timestamp(start).date(), pd.Timestamp(end).date()
        try:
            with client_errors():
                days = self._data().get_trading_calendar("SH", xt_time(first), xt_time(last))
            parsed = [dt.datetime.strptime(str(d), "%Y%m%d").date() for d in days or ()]
            if parsed:
                return [d for d in parsed if first <= d <= last]
            log.info("the client's trading calendar is empty for %s..%s; using the XSHG calendar", first, last)
        except Exception as exc:  # the client's calendar needs its holiday data; ours does not
            log.info("the client's trading calendar is unavailable (%s); using the XSHG calendar", exc)
        out, day = [], first
        while day <= last:
            if mkt.CALENDAR.is_trading_day(day):
                out.append(day)
            day += dt.timedelta(days=1)
        return out

    # -- history -------------------------------------------------------------------------------------
    def download_history(
        self,
        codes: str | Iterable[str],
        start: Any,
        end: Any = None,
        period: str = "1d",
        store: Any = None,
        progress: bool = True,
        dividend_type: str = "none",
    ) -> pd.DataFrame:
        """Download bars into the client's cache, read them, and return them in the bar store's long
        format; with ``store`` (a ``BarStore`` or a path to one) they are also written there.

        ``dividend_type='none'`` keeps traded prices, which the live engine and price limits use;
        ``'front'`` gives forward-adjusted prices.
        """
        wanted = [mkt.normalize_code(c) for c in ([codes] if isinstance(codes, str) else codes)]
        if store is not None and period not in STORABLE_PERIODS:
            raise ValueError(f"the bar store keeps {sorted(STORABLE_PERIODS)} bars; period {period!r} cannot be stored")
        start_text, end_text = xt_time(start), xt_time(end)
        xtdata = self._data()
        bar = _progress_bar(len(wanted), period, progress)
        failures: list[str] = []

        def on_progress(payload: dict[str, Any]) -> None:
            bar.update(max(int(payload.get("finished", 0)) - bar.n, 0))
            bar.set_postfix_str(str(payload.get("stockcode", "")), refresh=False)
            if payload.get("message"):
                failures.append(f"{payload.get('stockcode')}: {payload['message']}")

        try:
            with client_errors():
                xtdata.download_history_data2(wanted, period, start_text, end_text, on_progress)
                data = xtdata.get_market_data_ex([], wanted, period, start_text, end_text, -1, dividend_type, True)
        finally:
            bar.close()
        for failure in failures:
            log.warning("download %s: %s", period, failure)
        names = {code: self._name(code) for code in wanted}
        frame = bars_from_xt(data, period, names)
        if isinstance(store, str | Path):
            from miniqmt_lab.bars.store import BarStore

            with BarStore(store) as opened:
                opened.write_frame(frame, STORABLE_PERIODS[period])
        elif store is not None:
            store.write_frame(frame, STORABLE_PERIODS[period])
        return frame

    # -- internals -----------------------------------------------------------------------------------
    def _data(self) -> Any:
        if self._xtdata is None:
            self._xtdata = resolve(self._modules).xtdata
        return self._xtdata

    def _name(self, code: str) -> str:
        with self._lock:
            if code in self._names:
                return self._names[code]
        try:
            found = self.instrument(code)
        except Exception as exc:  # a missing name must not cost a price
            log.debug("no instrument detail for %s: %s", code, exc)
            return ""
        name = found.name if found is not None else ""
        with self._lock:
            self._names[code] = name
        return name

    def _poll(self) -> list[Tick]:
        with self._lock:
            codes = self._codes
        if not codes:
            return []
        try:
            with client_errors():
                raw = self._data().get_full_tick(list(codes))
        except QmtUnavailable as exc:
            if not self._client_down:
                log.warning("QMT feed: %s", exc)
            self._client_down, self.last_error = True, str(exc)
            return []
        if self._client_down:
            log.info("QMT feed: the client answers again")
            self._client_down = False
        now = dt.datetime.now(mkt.SHANGHAI)
        ticks = []
        for code in codes:
            tick, problem = tick_from_xt(code, (raw or {}).get(code), self._name(code), now)
            if tick is None:
                if code not in self._bad:
                    self._bad.add(code)
                    log.warning("QMT feed: tick of %s dropped: %s", code, problem)
                continue
            self._bad.discard(code)
            if self._last_time.get(code) == tick.time:
                continue
            self._last_time[code] = tick.time
            ticks.append(tick)
        return ticks


def _progress_bar(total: int, period: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"download {period}", unit="code", disable=not enabled)

