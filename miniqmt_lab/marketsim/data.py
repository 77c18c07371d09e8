"""Long bar frames to the market simulation's row stream: :class:`MarketData`, built once, read by both sides.

Rows stay in the frame's own order when it is sorted by (bar time, stock code), as the bar store returns it,
and the price columns are used in place: preparing a whole market costs a few arrays of one number per
row, never a (bar x stock) grid. Codes given as a pandas Categorical (the store's) are factorised for free.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from miniqmt_lab.market import (
    check_actions,
    check_instruments,
    is_st,
    last_unlimited_day,
    limit_width,
    lot_rule,
    normalize_code,
)
from miniqmt_lab.marketsim.nb import (
    day_bases_nb,
    floor_to_day_nb,
    group_starts_nb,
    last_row_of_col_nb,
    macd_entries_nb,
    macd_state_nb,
    pivot_nb,
    stream_order_nb,
    traded_rows_nb,
)
from miniqmt_lab.marketsim.ticks import DAILY_STAMP, tick_offsets
from miniqmt_lab.rules.nb import limit_prices_nb


class TickStream(NamedTuple):
    """Rows of bars (or recorded ticks) in the order of work, as the simulation loops read them."""

    start: np.ndarray  # (n_groups + 1,) int64: group g is rows start[g]:start[g + 1], ascending columns
    group_bar: np.ndarray  # (n_groups,) int64 non-decreasing: the output bar each group belongs to
    group_day: np.ndarray  # (n_groups,) int64 non-decreasing: trading day number (T+1 roll, fees, actions)
    col: np.ndarray  # (n_rows,) int32 stock column
    open: np.ndarray  # (n_rows,) float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    traded: np.ndarray  # (n_rows,) bool: the row gives ticks (not a suspension, rules.md; not a bad price)
    bar_close: np.ndarray  # (n_rows,) bool: the row's last tick closes its bar (entries act there)
    n_ticks: int  # ticks per row: 4 (O, L/H, H/L, C), 1 (close)

US_PER_DAY = 86_400_000_000
_EMPTY_F8 = np.empty(0)
_EMPTY_BOOL = np.empty(0, dtype=np.bool_)


@dataclass(frozen=True, eq=False)
class MarketData:
    """Bars (or recorded ticks) as a row stream with the facts of each trading day.

    Rows are sorted by (group, column); group ``g`` is rows ``start[g]:start[g + 1]``, all at one time
    (``group_times``), on trading day ``group_day[g]`` and belonging to output bar ``group_bar[g]``. For
    bars a group is one bar time; for a replayed journal, one tick round. Build with :func:`market_data`.
    """

    codes: tuple[str, ...]  # ascending: the order of work in a round
    names: tuple[str, ...]  # each stock's last name
    freq: str  # "1d" or "1m"
    index: pd.DatetimeIndex  # bar stamps: 15:00 of the date for daily bars, the bar time for minute bars
    day_dates: np.ndarray  # (n_days,) datetime64[D]
    group_times: np.ndarray  # (n_groups,) datetime64[us]: the bar's time (bars) or the round's time (journal)
    offsets: np.ndarray  # (n_ticks,) timedelta64[us]: when a group's ticks are seen, from its time
    stream: TickStream  # the rows in the order of work
    row_order: np.ndarray | None  # rows of the source frame in stream order; None: the frame's own order
    st: np.ndarray  # (n_rows,) bool ST name, or empty: none is
    free_until: np.ndarray  # (n_stocks,) int64 last day number of a new listing's unlimited days, -1: none
    seed_close: np.ndarray  # (n_stocks,) float64 base price before the first bar (NaN: none)
    actions: pd.DataFrame  # the corporate actions applied (schema.ACTION_COLUMNS), with day and col
    act_start: np.ndarray  # (n_days + 1,) int64: actions of day d are rows act_start[d]:act_start[d + 1]
    act_col: np.ndarray  # (n_actions,) int64
    act_values: np.ndarray  # (n_actions, 4): cash dividend, bonus ratio, rights ratio, rights price

    @property
    def shape(self) -> tuple[int, int]:
        """(bars, stocks)."""
        return len(self.index), len(self.codes)

    @property
    def n_rows(self) -> int:
        return int(self.stream.col.shape[0])

    @property
    def n_ticks(self) -> int:
        return self.stream.n_ticks

    @property
    def day(self) -> np.ndarray:
        """Trading day number of each bar."""
        out = np.empty(self.shape[0], dtype=np.int64)
        out[self.stream.group_bar] = self.stream.group_day
        return out

    @functools.cached_property
    def lots(self) -> np.ndarray:
        """(n_stocks, 3) int64: each board's LotRule (min buy, step, min sell)."""
        return np.array([tuple(lot_rule(c)) for c in self.codes], dtype=np.int64).reshape(-1, 3)

    @functools.cached_property
    def board_width(self) -> np.ndarray:
        return np.array([limit_width(c) for c in self.codes], dtype=np.float64)

    def _bases(self, row_base: np.ndarray) -> np.ndarray:
        rows = self.stream
        return day_bases_nb(rows.start, rows.group_day, rows.col, rows.close, rows.traded, self.free_until,
                            self.seed_close, self.act_start, self.act_col, self.act_values, row_base)

    @functools.cached_property
    def bases(self) -> np.ndarray:
        """(n_days, n_stocks) base price of each day's band: previous traded close or ex-rights reference;
        NaN where there is none or on a new listing's first five days (no band)."""
        return self._bases(_EMPTY_F8)

    def row_base(self) -> np.ndarray:
        """Each row's base price (``Tick.prev_close``): previous traded close or ex-rights reference."""
        out = np.empty(self.n_rows)
        self._bases(out)
        return out

    def band(self, day: int, code: str) -> tuple[float, float]:
        """(up, down) of ``code`` on trading day number ``day`` by its board (NaN: no band)."""
        s = self.codes.index(code)
        return limit_prices_nb(float(self.bases[day, s]), float(self.board_width[s]))

    def row_limited(self) -> np.ndarray:
        """Each row's ``Tick.limits``: False on a new listing's first five trading days."""
        rows = self.stream
        return np.repeat(rows.group_day, np.diff(rows.start)) > self.free_until[rows.col]

    def macd_entries(self, history: np.ndarray | None = None) -> np.ndarray:
        """MACD golden crosses on each stock's own daily closes, on the row they are acted on (n_rows bool).

        ``history``: earlier daily closes (days x stocks in ``codes`` order, NaN: no trade) to start from.
        """
        if history is None and "_macd" in self.__dict__:
            return self.__dict__["_macd"]
        past = np.empty((0, len(self.codes))) if history is None else np.asarray(history, dtype=np.float64)
        rows = self.stream
        entries = macd_entries_nb(rows.start, rows.group_day, rows.col, rows.close, rows.traded, macd_state_nb(past))
        if history is None:
            self.__dict__["_macd"] = entries
        return entries

    @functools.cached_property
    def _grids(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n_bars, n_stocks = self.shape
        rows = self.stream
        return pivot_nb(rows.start, rows.group_bar, rows.col, rows.open, rows.high, rows.low, rows.close,
                        rows.traded, n_bars, n_stocks)

    # (bar x stock) grids of traded bars, NaN elsewhere: built on first use, for charts and vectorbt only

    @property
    def open(self) -> np.ndarray:
        return self._grids[0]

    @property
    def high(self) -> np.ndarray:
        return self._grids[1]

    @property
    def low(self) -> np.ndarray:
        return self._grids[2]

    @property
    def close(self) -> np.ndarray:
        return self._grids[3]

    def close_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.close, index=self.index, columns=pd.Index(self.codes, name="stock_code"))

    def row_codes(self) -> np.ndarray:
        return np.array(self.codes, dtype=object)[self.stream.col]

    def tick_times(self) -> np.ndarray:
        """(n_groups, n_ticks) datetime64[us]: when each tick of a group is seen (the engine's round times)."""
        return self.group_times[:, None] + self.offsets[None, :]


def naive_shanghai(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Times as naive Asia/Shanghai datetime64[us] (aware times are converted, naive ones kept)."""
    if isinstance(values, np.ndarray | pd.Series) and isinstance(values.dtype, np.dtype) and values.dtype.kind == "M":
        return np.asarray(values, dtype="datetime64[us]")  # naive already: no parsing (a whole market's dates)
    stamps = pd.DatetimeIndex(pd.to_datetime(values))
    if stamps.tz is not None:
        stamps = stamps.tz_convert("Asia/Shanghai").tz_localize(None)
    return stamps.to_numpy(dtype="datetime64[us]")


def stock_columns(stock_codes: pd.Series | pd.Categorical | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(normalized codes in ascending order, column of each row as int32): the order of work in a round.

    A Categorical costs one normalisation per category; other values are factorised first.
    """
    values = stock_codes.array if isinstance(stock_codes, pd.Series) else stock_codes
    if isinstance(values, pd.Categorical):
        raw, code_of_row = np.asarray(values.categories, dtype=object), values.codes
    else:
        code_of_row, uniques = pd.factorize(np.asarray(values, dtype=object))
        raw = np.asarray(uniques, dtype=object)
    if (code_of_row < 0).any():
        raise ValueError("bars have a missing stock_code")
    normalized = np.array([normalize_code(c) for c in raw], dtype=object)
    codes = np.unique(normalized)
    col_of_raw = np.searchsorted(codes, normalized).astype(np.int32)
    return codes, col_of_raw[code_of_row]


def _st_rows(names: pd.Series, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ST flag per row or empty, name index per row, the names) of a stock_name column."""
    values = names.array
    if isinstance(values, pd.Categorical):
        uniques, of_row = np.asarray(values.categories, dtype=object), values.codes.astype(np.int64)
    else:
        of_row, uniques = pd.factorize(names.fillna("").to_numpy(dtype=object))
        uniques = np.asarray(uniques, dtype=object)
    uniques = np.append(uniques, "")  # index -1 (missing) reads ""
    flags = np.array([is_st(str(n)) for n in uniques], dtype=np.bool_)
    st = flags[of_row] if flags.any() else _EMPTY_BOOL
    return st, of_row, uniques


def traded_mask(bars: pd.DataFrame) -> np.ndarray:
    """Rows of a bar frame that trade (rules.md, "Suspensions"): the market simulation's own test."""
    return traded_rows_nb(_float_column(bars, "open", "close"), _float_column(bars, "high", "close"),
                          _float_column(bars, "low", "close"), _float_column(bars, "close"),
                          _float_column(bars, "volume"))


def _float_column(bars: pd.DataFrame, name: str, fallback: str | None = None) -> np.ndarray:
    column = name if name in bars.columns else fallback
    if column is None:
        return _EMPTY_F8
    values = bars[column]
    if values.dtype != np.float64:
        values = pd.to_numeric(values)
    return np.ascontiguousarray(values.to_numpy(dtype=np.float64))  # a float64 column is used in place


def _actions_on_days(actions: pd.DataFrame, codes: np.ndarray, day_dates: np.ndarray) -> pd.DataFrame:
    """The actions falling on the frame's days: each on the first day on or after its ex-date."""
    table = check_actions(actions)
    if table.empty:
        return table.assign(day=np.empty(0, dtype=np.int64), col=np.empty(0, dtype=np.int64))
    known = np.isin(table["stock_code"].to_numpy(dtype=object), codes)
    ex = table["ex_date"].to_numpy(dtype="datetime64[D]")
    inside = known & (ex >= day_dates[0]) & (ex <= day_dates[-1])
    table = table[inside].copy()
    table["day"] = np.searchsorted(day_dates, ex[inside], side="left").astype(np.int64)
    table["col"] = np.searchsorted(codes, table["stock_code"].to_numpy(dtype=object)).astype(np.int64)
    return table.sort_values(["day", "col"], kind="stable").reset_index(drop=True)


def _free_until(instruments: pd.DataFrame | None, codes: np.ndarray, day_dates: np.ndarray) -> np.ndarray:
    out = np.full(len(codes), -1, dtype=np.int64)
    if instruments is None or len(instruments) == 0:
        return out
    table = check_instruments(instruments)
    first, last = day_dates[0], day_dates[-1]
    for code, listed in zip(table["stock_code"], table["listing_date"], strict=True):
        if pd.isna(listed):
            continue
        listed_day = np.datetime64(listed, "D")
        if listed_day > last or listed_day < first - np.timedelta64(30, "D"):
            continue  # listed after the frame, or long before it: no unlimited day inside
        s = int(np.searchsorted(codes, code))
        if s < len(codes) and codes[s] == code:
            free = np.datetime64(last_unlimited_day(pd.Timestamp(listed_day).date()), "D")
            out[s] = int(np.searchsorted(day_dates, free, side="right")) - 1
    return out


def market_data(
    bars: pd.DataFrame,
    *,
    actions: pd.DataFrame | None = None,
    instruments: pd.DataFrame | None = None,
    ohlc: bool = True,
) -> MarketData:
    """The row stream of a long bar frame (``stock_code``, ``date`` or ``time``, ``open``..``close``;
    optional ``stock_name``, ``volume``).

    ``actions`` (``schema.ACTION_COLUMNS``) and ``instruments`` (``schema.INSTRUMENT_COLUMNS``) default to
    ``bars.attrs["actions"]`` / ``bars.attrs["instruments"]`` (set by the bar store). ``ohlc=False``
    accepts a frame with only closes (each row then gives one tick).
    """
    if "time" in bars.columns:
        freq, time_column = "1m", "time"
    elif "date" in bars.columns:
        freq, time_column = "1d", "date"
    else:
        raise ValueError("bars need a 'date' column (daily bars) or a 'time' column (minute bars)")
    needed = ["stock_code", "open", "high", "low", "close"] if ohlc else ["stock_code", "close"]
    missing = [c for c in needed if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {missing}")
    if bars.empty:
        raise ValueError("bars are empty")
    if actions is None:
        actions = bars.attrs.get("actions")
    if instruments is None:
        instruments = bars.attrs.get("instruments")

    codes, col = stock_columns(bars["stock_code"])
    times = naive_shanghai(bars[time_column])
    key = times.view(np.int64)
    if freq == "1d":
        key = floor_to_day_nb(key, US_PER_DAY)
    order_state = stream_order_nb(key, col)
    order: np.ndarray | None = None
    if order_state == 0:
        order = np.lexsort((col, key))
        key, col = key[order], col[order]
        order_state = stream_order_nb(key, col)
    if order_state > 0:
        raise ValueError("bars hold more than one row for some (stock_code, bar time)")

    def column(name: str, fallback: str | None = None) -> np.ndarray:
        values = _float_column(bars, name, fallback)
        return values if order is None or values.size == 0 else values[order]

    close = column("close")
    open_, high, low = column("open", "close"), column("high", "close"), column("low", "close")
    volume = column("volume")
    start = group_starts_nb(key)
    bar_key = key[start[:-1]]
    day_key = bar_key - bar_key % US_PER_DAY
    new_day = np.r_[True, day_key[1:] != day_key[:-1]]
    group_day = np.cumsum(new_day) - 1
    day_dates = day_key[new_day].astype("datetime64[us]").astype("datetime64[D]")
    bar_times = bar_key.astype("datetime64[us]")
    index = pd.DatetimeIndex(bar_times + np.timedelta64(int(DAILY_STAMP.total_seconds()), "s") if freq == "1d"
                             else bar_times)
    if "stock_name" in bars.columns:
        st, name_of_row, names = _st_rows(bars["stock_name"], len(bars))
        if order is not None:
            st = st[order] if st.size else st
            name_of_row = name_of_row[order]
        last = last_row_of_col_nb(col, len(codes))
        stock_names = tuple(str(names[name_of_row[r]]) for r in last)
    else:
        st, stock_names = _EMPTY_BOOL, tuple("" for _ in codes)
    traded = traded_rows_nb(open_, high, low, close, volume)
    applied = _actions_on_days(actions if actions is not None else pd.DataFrame(), codes, day_dates)
    act_start = np.searchsorted(applied["day"].to_numpy(), np.arange(len(day_dates) + 1), side="left")
    return MarketData(
        codes=tuple(str(c) for c in codes),
        names=stock_names,
        freq=freq,
        index=index,
        day_dates=day_dates,
        group_times=bar_times,
        offsets=tick_offsets(freq == "1d", 4 if ohlc else 1),
        stream=TickStream(start, np.arange(len(bar_times), dtype=np.int64), group_day.astype(np.int64), col,
                          open_, high, low, close, traded, traded, 4 if ohlc else 1),
        row_order=order,
        st=st,
        free_until=_free_until(instruments, codes, day_dates),
        seed_close=np.full(len(codes), np.nan),
        actions=applied,
        act_start=act_start.astype(np.int64),
        act_col=applied["col"].to_numpy(dtype=np.int64),
        act_values=np.ascontiguousarray(
            applied[["cash_dividend", "bonus_ratio", "rights_ratio", "rights_price"]].to_numpy(dtype=np.float64)
        ).reshape(-1, 4),
    )


def with_ticks(data: MarketData, n_ticks: int) -> MarketData:
    """The same bars giving ``n_ticks`` ticks a bar (4: OHLC, 1: close only)."""
    if n_ticks == data.n_ticks:
        return data
    fields: dict[str, Any] = {f: getattr(data, f) for f in data.__dataclass_fields__}
    fields["stream"] = data.stream._replace(n_ticks=n_ticks)
    fields["offsets"] = tick_offsets(data.freq == "1d", n_ticks)
    clone = MarketData(**fields)
    for cached in ("bases", "lots", "board_width", "_grids", "_macd"):
        if cached in data.__dict__:
            clone.__dict__[cached] = data.__dict__[cached]
    return clone
