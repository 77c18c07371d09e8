"""``QmtFeed``: live prices and history from ``xtquant.xtdata`` (the Feed protocol, plus downloads).

Live rounds come from polling ``get_full_tick`` for the watched codes: it needs no subscription
and no callback thread, and a poll that fails (client restarting) costs one round, not a thread.
A tick is delivered once (a code's tick whose time has not advanced is skipped); a tick with a
missing, NaN or non-positive price is dropped and logged, and so is a stale snapshot: xtdata keeps
the last tick whatever its date (yesterday's 15:00 tick before the open, a suspended stock's last
one), which is not a price of today. Opened again after ``close`` (an engine stopped and started),
the feed starts over as a new one would: its first round carries the latest tick of every watched
code, so the restarted engine has prices at once.

xtdata is imported when the feed is built (the first import runs a slow update check) and its
connection banner is turned off (``enable_hello = False``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pandas as pd

from miniqmt_lab import market as mkt
from miniqmt_lab.config import Settings
from miniqmt_lab.errors import QmtUnavailable
from miniqmt_lab.qmt.history import (
    actions_from_xt,
    bars_from_xt,
    day_actions,
    instruments_from_xt,
    listing_date,
    number,
    ticks_from_xt,
    unexplained_base_prices,
    xt_time,
)
from miniqmt_lab.qmt.loader import XtModules, client_errors, preload, resolve
from miniqmt_lab.qmt.ticks import Poll, has_price_limits, tick_from_xt
from miniqmt_lab.schema import ACTION_COLUMNS, HISTORY_DAYS, Tick, TickRound

log = logging.getLogger(__name__)

STORABLE_PERIODS: dict[str, Literal["1d", "1m"]] = {"1d": "1d", "1m": "1m"}  # xtdata period -> bar store freq
DOWNLOADABLE_PERIODS = ("1m", "5m", "15m", "30m", "1h", "1d", "1w", "1mon", "tick")


class HistoryStore(Protocol):
    """Where :meth:`QmtFeed.download_history` writes: a ``miniqmt_lab.bars.BarStore``."""

    def write_frame(self, df: pd.DataFrame, freq: Literal["1d", "1m"] = "1d") -> int: ...

    def write_actions(self, frame: pd.DataFrame) -> int: ...

    def write_instruments(self, frame: pd.DataFrame) -> int: ...


@dataclass(frozen=True, slots=True)
class Instrument:
    code: str
    name: str
    prev_close: float
    up_limit: float
    down_limit: float
    price_tick: float
    listing_date: dt.date | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(mkt.SHANGHAI)


class QmtFeed:
    """The Feed protocol on ``xtquant.xtdata``, plus history downloads, corporate actions, instrument
    facts and the calendar.

    ``modules`` supplies xtquant (default: the installed package, imported here; if it cannot be,
    every use raises QmtUnavailable saying why). ``poll_interval`` is the pause between
    ``get_full_tick`` polls while a round is awaited; ``clock`` gives "now" (aware Shanghai time),
    whose date tells today's ticks from stale snapshots.
    """

    def __init__(self, settings: Settings, *, modules: XtModules | None = None, poll_interval: float = 1.0,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.settings = settings
        self._modules = modules
        xt, problem = preload(modules, ("xtdata",))
        self._xtdata: Any = None if problem else xt.xtdata
        if self._xtdata is not None:
            self._xtdata.enable_hello = False  # no banner on stdout at every (re)connect
        self._clock = clock or _now
        self._poll_interval = poll_interval
        self._lock = threading.Lock()
        self._codes: tuple[str, ...] = ()
        self._last_time: dict[str, dt.datetime] = {}
        self._details: dict[str, Instrument | None] = {}
        self._bad: dict[str, str] = {}  # code -> the problem already logged for it
        self._closed = threading.Event()
        self._pending: Poll | None = None
        self._client_down = False
        self.last_error = problem

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
        """The next round of new ticks; None after ``timeout`` even when the client hangs."""
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            ticks = self._poll(max(deadline - time.monotonic(), 0.0))
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
        """Name, previous close, today's limits, price tick and listing date; None when the client
        does not know the code."""
        code = mkt.normalize_code(code)
        with client_errors():
            detail = self._data().get_instrument_detail(code)
        found = None
        if detail:
            found = Instrument(
                code=code, name=str(detail.get("InstrumentName") or ""), prev_close=number(detail.get("PreClose")),
                up_limit=number(detail.get("UpStopPrice")), down_limit=number(detail.get("DownStopPrice")),
                price_tick=number(detail.get("PriceTick")), listing_date=listing_date(detail),
            )
        with self._lock:
            self._details[code] = found
        return found

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

    def actions_on(self, day: dt.date) -> list[tuple[str, float, float]]:
        """The engine's question before a day's first tick: (stock_code, cash_dividend, bonus_ratio) of the
        watched stocks whose ex-date is ``day`` (rights change only the base price, which the client's
        previous close already carries)."""
        with self._lock:
            codes = self._codes
        if not codes:
            return []
        frame = self.corporate_actions(codes, day)
        return [(str(c), float(d), float(b)) for c, d, b in
                zip(frame["stock_code"], frame["cash_dividend"], frame["bonus_ratio"], strict=True)]

    def corporate_actions(self, codes: str | Iterable[str], day: Any) -> pd.DataFrame:
        """``ACTION_COLUMNS`` rows of ``codes`` whose ex-date is ``day``: what the live engine applies
        to its holdings before that day's open. The client must have the day's data (its history
        download, or the daily update it makes by itself)."""
        wanted = _codes(codes)
        when = pd.Timestamp(day).date()
        text = xt_time(when)
        frames = [day_actions(self._actions(code, text, text), when) for code in wanted]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame({c: [] for c in ACTION_COLUMNS})
        return pd.concat(frames, ignore_index=True)

    # -- history -------------------------------------------------------------------------------------
    def refresh_history(self, codes: str | Iterable[str], store: HistoryStore, days: int = HISTORY_DAYS) -> None:
        """Bring the daily bars, corporate actions and instruments of ``codes`` for the last ``days``
        calendar days into ``store``: the engine's data thread calls it once a trading day, so MACD
        entries see yesterday's close when the engine runs several days in a row."""
        today = mkt.to_shanghai(self._clock()).date()
        self.download_history(codes, today - dt.timedelta(days=days), today, store=store, progress=False)

    def download_history(
        self,
        codes: str | Iterable[str],
        start: Any,
        end: Any = None,
        period: str = "1d",
        store: HistoryStore | None = None,
        progress: bool = True,
        dividend_type: str = "none",
    ) -> pd.DataFrame:
        """Download bars (or, for ``period='tick'``, snapshots) into the client's cache, read them,
        and return them in the bar store's long format with volume in shares (and ``prev_close``,
        the day's base price). With ``store`` (a ``BarStore``), '1d' and '1m' bars are written there
        with the codes' corporate actions (``get_divid_factors`` over the same dates) and
        instruments (name and listing date).

        ``dividend_type='none'`` keeps traded prices, which the live engine and price limits use;
        ``'front'`` gives forward-adjusted prices.
        """
        wanted = _codes(codes)
        if period not in DOWNLOADABLE_PERIODS:
            raise ValueError(f"period must be one of {list(DOWNLOADABLE_PERIODS)}, got {period!r}")
        if store is not None:
            if period not in STORABLE_PERIODS:
                raise ValueError(
                    f"the bar store keeps {sorted(STORABLE_PERIODS)} bars; period {period!r} cannot be stored"
                )
            if dividend_type != "none":
                raise ValueError(f"the bar store keeps traded prices: download with dividend_type='none', not"
                                 f" {dividend_type!r}, to store (BarStore.query(adjust=...) adjusts them)")
            if not all(callable(getattr(store, m, None)) for m in ("write_frame", "write_actions",
                                                                    "write_instruments")):
                raise TypeError(f"store must be a BarStore (pass BarStore(path)), got {type(store).__name__}")
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
        names = {code: self._details_of(code)[0] for code in wanted}
        if period == "tick":
            return ticks_from_xt(data, names)
        frame = bars_from_xt(data, period, names)
        check = period == "1d" and dividend_type == "none"
        if check or store is not None:
            actions = self._all_actions(wanted, start_text, end_text)
            if check:
                for row in unexplained_base_prices(frame, actions).itertuples():
                    log.warning("%s on %s: the exchange's base price %.2f is not the previous close %.2f and no"
                                " corporate action is known for that day", row.stock_code,
                                pd.Timestamp(row.date).date(), row.prev_close, row.last_close)
            if store is not None:
                store.write_frame(frame, STORABLE_PERIODS[period])
                store.write_actions(actions)
                store.write_instruments(instruments_from_xt({c: self._raw_detail(c) for c in wanted}))
        return frame

    # -- internals -----------------------------------------------------------------------------------
    def _data(self) -> Any:
        if self._xtdata is None:
            xtdata = resolve(self._modules).xtdata  # QmtUnavailable again when it still cannot be imported
            xtdata.enable_hello = False
            self._xtdata, self.last_error = xtdata, ""
        return self._xtdata

    def _actions(self, code: str, start_text: str, end_text: str) -> pd.DataFrame:
        with client_errors():
            factors = self._data().get_divid_factors(code, start_text, end_text)
        return actions_from_xt(code, factors)

    def _all_actions(self, codes: list[str], start_text: str, end_text: str) -> pd.DataFrame:
        frames = [self._actions(code, start_text, end_text) for code in codes]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame({c: [] for c in ACTION_COLUMNS})
        return pd.concat(frames, ignore_index=True)

    def _raw_detail(self, code: str) -> dict[str, Any] | None:
        with client_errors():
            detail = self._data().get_instrument_detail(code)
        return detail or None

    def _details_of(self, code: str) -> tuple[str, dt.date | None]:
        """(name, listing date) of ``code``, asked of the client once; ('', None) when unknown."""
        with self._lock:
            known = code in self._details
            found = self._details.get(code)
        if not known:
            try:
                found = self.instrument(code)
            except Exception as exc:  # a missing name must not cost a price
                log.debug("no instrument detail for %s: %s", code, exc)
                with self._lock:
                    self._details[code] = None
                found = None
        return (found.name, found.listing_date) if found is not None else ("", None)

    def _fetch(self, codes: tuple[str, ...], wait: float) -> tuple[bool, Any]:
        """(answered, snapshots) of ``codes`` from the feed's own poll thread, waiting up to ``wait``.

        xtdata calls have no timeout: a poll runs on a ``qmt-feed-poll`` thread, and while one has not
        answered no other is started, so a hung client holds one thread, never the caller. The poll
        also asks the client, once, for each code's name and listing date.
        """
        with self._lock:
            poll = self._pending
            if poll is None:
                poll = self._pending = Poll(lambda: self._snapshots(codes))
        deadline = time.monotonic() + wait
        while not poll.done.wait(min(0.05, max(deadline - time.monotonic(), 0.0))):
            if self._closed.is_set() or time.monotonic() >= deadline:
                return False, None
        with self._lock:
            if self._pending is poll:
                self._pending = None
        if poll.error is not None:
            raise poll.error
        return True, poll.value

    def _snapshots(self, codes: tuple[str, ...]) -> Any:
        with client_errors():
            raw = self._data().get_full_tick(list(codes))
        for code in codes:
            self._details_of(code)
        return raw

    def _poll(self, wait: float) -> list[Tick]:
        with self._lock:
            codes = self._codes
        if not codes:
            return []
        try:
            answered, raw = self._fetch(codes, wait)
        except QmtUnavailable as exc:
            if not self._client_down:
                log.warning("QMT feed: %s", exc)
            self._client_down, self.last_error = True, str(exc)
            return []
        if not answered:
            if not self._client_down:
                log.warning("QMT feed: get_full_tick has not answered; waiting for it")
            self._client_down, self.last_error = True, "get_full_tick has not answered"
            return []
        if self._client_down:
            log.info("QMT feed: the client answers again")
            self._client_down, self.last_error = False, ""
        today = mkt.to_shanghai(self._clock()).date()
        ticks = []
        for code in codes:
            with self._lock:
                found = self._details.get(code)
            name, listed = (found.name, found.listing_date) if found is not None else ("", None)
            tick, problem = tick_from_xt(code, (raw or {}).get(code), name, today,
                                         limits=has_price_limits(listed, today))
            if tick is None:
                if self._bad.get(code) != problem:
                    self._bad[code] = problem
                    log.warning("QMT feed: tick of %s dropped: %s", code, problem)
                continue
            self._bad.pop(code, None)
            if self._last_time.get(code) == tick.time:
                continue
            self._last_time[code] = tick.time
            ticks.append(tick)
        return ticks


def _codes(codes: str | Iterable[str]) -> list[str]:
    return [mkt.normalize_code(c) for c in ([codes] if isinstance(codes, str) else codes)]


def _progress_bar(total: int, period: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"download {period}", unit="code", disable=not enabled)
