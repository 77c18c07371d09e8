"""The market simulation's numba kernels: bars to ticks, suspensions, base prices and bands, MACD entries.

Everything walks a *row stream*: the bars of a long frame sorted by (bar time, stock column), cut into
groups of one bar time (``start[g]:start[g + 1]``), each group on a trading day (``group_day``). Rows
are never pivoted to a (bar x stock) grid, so memory grows with the bars, not with bars x stocks.
The engine's replay feed and the backtest both call these functions (rules.md, "Real market data").
"""

from __future__ import annotations

import numpy as np
from numba import njit

from miniqmt_lab.indicators import ema_update_nb
from miniqmt_lab.rules.nb import ex_rights_price_nb, limit_prices_nb

MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9


@njit(inline="always")
def bar_tick_nb(open_: float, high: float, low: float, close: float, k: int, n_ticks: int) -> float:
    """Tick ``k`` of a bar (rules.md, "Bars to ticks"): O, L, H, C when close >= open, else O, H, L, C;
    with one tick per bar, the close."""
    if n_ticks == 1 or k == 3:
        return close
    if k == 0:
        return open_
    rising = close >= open_
    if k == 1:
        return low if rising else high
    return high if rising else low


@njit(cache=True)
def tick_table_nb(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                  n_ticks: int) -> np.ndarray:
    """(n_rows, n_ticks) tick prices of every row by :func:`bar_tick_nb` (the replay feed's table)."""
    out = np.empty((close.shape[0], n_ticks))
    for i in range(close.shape[0]):
        for k in range(n_ticks):
            out[i, k] = bar_tick_nb(open_[i], high[i], low[i], close[i], k, n_ticks)
    return out


@njit(cache=True)
def traded_rows_nb(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                   volume: np.ndarray) -> np.ndarray:
    """Rows that trade (rules.md, "Suspensions"): volume > 0 and open, high, low and close present and > 0.

    A zero-length ``volume`` means the frame has no volume column (every row counts as traded by it).
    """
    n = close.shape[0]
    out = np.empty(n, dtype=np.bool_)
    has_volume = volume.shape[0] == n
    for i in range(n):
        ok = open_[i] > 0.0 and high[i] > 0.0 and low[i] > 0.0 and close[i] > 0.0
        if has_volume:
            ok = ok and volume[i] > 0.0
        out[i] = ok
    return out


@njit(cache=True)
def floor_to_day_nb(time_key: np.ndarray, unit_per_day: int) -> np.ndarray:
    """Integer times floored to their day (compiled: a division by a constant is a multiply here, not in
    numpy, which matters on a whole market's rows)."""
    out = np.empty_like(time_key)
    for i in range(time_key.shape[0]):
        out[i] = (time_key[i] // unit_per_day) * unit_per_day
    return out


@njit(cache=True)
def stream_order_nb(time_key: np.ndarray, col: np.ndarray) -> int:
    """-1 when rows are sorted by (time, column) without duplicates; 0 when unsorted; else 1 + the index
    of the first row repeating its predecessor's (time, column)."""
    for i in range(1, time_key.shape[0]):
        if time_key[i] < time_key[i - 1] or (time_key[i] == time_key[i - 1] and col[i] < col[i - 1]):
            return 0
        if time_key[i] == time_key[i - 1] and col[i] == col[i - 1]:
            return i + 1
    return -1


@njit(cache=True)
def group_starts_nb(time_key: np.ndarray) -> np.ndarray:
    """Offsets of the groups of equal (sorted) keys, plus the end."""
    n = time_key.shape[0]
    count = 1 if n else 0
    for i in range(1, n):
        if time_key[i] != time_key[i - 1]:
            count += 1
    out = np.empty(count + 1, dtype=np.int64)
    out[0] = 0
    g = 1
    for i in range(1, n):
        if time_key[i] != time_key[i - 1]:
            out[g] = i
            g += 1
    out[count] = n
    return out


@njit(cache=True)
def day_bases_nb(
    start: np.ndarray,
    group_day: np.ndarray,
    col: np.ndarray,
    close: np.ndarray,
    traded: np.ndarray,
    free_until: np.ndarray,
    seed_close: np.ndarray,
    act_start: np.ndarray,
    act_col: np.ndarray,
    act_values: np.ndarray,
    row_base: np.ndarray,
) -> np.ndarray:
    """The base price of the band of every (trading day, stock).

    Base price (rules.md): the stock's previous traded close, carried across suspensions (``seed_close``
    before the first bar, NaN: none), or on an ex-date the ex-rights reference price of the carried close
    (actions of day ``d`` are rows ``act_start[d]:act_start[d + 1]``, ``act_values`` columns cash dividend,
    bonus ratio, rights ratio, rights price). Up to day ``free_until[s]`` the stock is a new listing
    without limits: NaN, as where no base is known (no band: :func:`band_nb` gives NaN). ``row_base``
    (length 0 or one per row) receives each row's base price for ``Tick.prev_close``.
    """
    n_days = act_start.shape[0] - 1
    n_stocks = seed_close.shape[0]
    base = np.empty((n_days, n_stocks))
    latest = seed_close.copy()
    listed = np.flatnonzero(free_until >= 0)
    fill_rows = row_base.shape[0] == close.shape[0]
    day = -1
    for g in range(start.shape[0] - 1):
        if group_day[g] != day:
            day = group_day[g]
            for a in range(act_start[day], act_start[day + 1]):
                s = act_col[a]
                latest[s] = ex_rights_price_nb(latest[s], act_values[a, 0], act_values[a, 1], act_values[a, 2],
                                               act_values[a, 3])
            base[day, :] = latest
            for s in listed:
                if day <= free_until[s]:
                    base[day, s] = np.nan
        for i in range(start[g], start[g + 1]):
            if fill_rows:
                row_base[i] = base[day, col[i]] if day > free_until[col[i]] else latest[col[i]]
            if traded[i]:
                latest[col[i]] = close[i]
    return base


@njit(inline="always")
def band_nb(base: float, st: np.ndarray, i: int, board_width: float, st_width: float) -> tuple[float, float]:
    """(up, down) of row ``i``'s day from its base price: ``st_width`` when the row's name is ST (``st`` empty:
    no name is), else its board's width. NaN without a base (never flags a tick, never blocks)."""
    width = st_width if st.shape[0] > i and st[i] else board_width
    return limit_prices_nb(base, width)


@njit(inline="always")
def _macd_step_nb(state: np.ndarray, s: int, x: float) -> bool:
    """Feed one daily close of stock ``s`` to its MACD state; True on a golden cross (rules.md, "Entries").

    ``state[s]``: EMA fast, slow and signal as (average, weight) pairs, then the previous DIF and DEA and a
    has-previous flag. The arithmetic is :func:`~miniqmt_lab.indicators.ema_nb`'s, step by step, so a
    stock's crosses equal ``macd_nb`` over its own series of closes. Inlined: a call passing the state
    array would reference-count it on every close.
    """
    state[s, 0], state[s, 1] = ema_update_nb(state[s, 0], state[s, 1], x, MACD_FAST)
    state[s, 2], state[s, 3] = ema_update_nb(state[s, 2], state[s, 3], x, MACD_SLOW)
    dif = state[s, 0] - state[s, 2]
    state[s, 4], state[s, 5] = ema_update_nb(state[s, 4], state[s, 5], dif, MACD_SIGNAL)
    dea = state[s, 4]
    cross = state[s, 8] > 0.0 and state[s, 6] <= state[s, 7] and dif > dea
    state[s, 6], state[s, 7], state[s, 8] = dif, dea, 1.0
    return cross


@njit(cache=True)
def macd_state_nb(history: np.ndarray) -> np.ndarray:
    """MACD states of the columns of ``history`` (earlier daily closes, days x stocks; NaN: no trade)."""
    n_stocks = history.shape[1]
    state = np.empty((n_stocks, 9))
    for s in range(n_stocks):
        state[s, 0], state[s, 1] = np.nan, 1.0
        state[s, 2], state[s, 3] = np.nan, 1.0
        state[s, 4], state[s, 5] = np.nan, 1.0
        state[s, 6], state[s, 7], state[s, 8] = np.nan, np.nan, 0.0
        for t in range(history.shape[0]):
            if history[t, s] > 0.0:
                _macd_step_nb(state, s, history[t, s])
    return state


@njit(cache=True)
def macd_entries_nb(
    start: np.ndarray, group_day: np.ndarray, col: np.ndarray, close: np.ndarray, traded: np.ndarray,
    state: np.ndarray,
) -> np.ndarray:
    """MACD golden crosses on each stock's own series of daily closes, on the row they are acted on.

    A stock's daily close is the close of its last traded row of the day (daily bars: its bar); days it
    does not trade are absent, not blank, so its signals never depend on the other stocks of the frame.
    The cross of a day is acted on at that row. ``state`` (from :func:`macd_state_nb`) is advanced.
    """
    n_stocks = state.shape[0]
    out = np.zeros(close.shape[0], dtype=np.bool_)
    last_row = np.full(n_stocks, -1, dtype=np.int64)
    touched = np.empty(n_stocks, dtype=np.int64)
    n_groups = start.shape[0] - 1
    g = 0
    while g < n_groups:
        h = g  # the day's groups are g..h
        while h + 1 < n_groups and group_day[h + 1] == group_day[g]:
            h += 1
        if h == g:  # one bar time a day (daily bars): each traded row is its stock's close of the day
            for i in range(start[g], start[g + 1]):
                if traded[i]:
                    out[i] = _macd_step_nb(state, col[i], close[i])
        else:
            n_touched = 0
            for i in range(start[g], start[h + 1]):
                if traded[i]:
                    s = col[i]
                    if last_row[s] < 0:
                        touched[n_touched] = s
                        n_touched += 1
                    last_row[s] = i
            for j in range(n_touched):
                s = touched[j]
                row = last_row[s]
                out[row] = _macd_step_nb(state, s, close[row])
                last_row[s] = -1
        g = h + 1
    return out


@njit(cache=True)
def last_row_of_col_nb(col: np.ndarray, n_stocks: int) -> np.ndarray:
    """The last row of each column (-1: none)."""
    out = np.full(n_stocks, -1, dtype=np.int64)
    for i in range(col.shape[0]):
        out[col[i]] = i
    return out


@njit(cache=True)
def pivot_nb(
    start: np.ndarray, group_bar: np.ndarray, col: np.ndarray, open_: np.ndarray, high: np.ndarray,
    low: np.ndarray, close: np.ndarray, traded: np.ndarray, n_bars: int, n_stocks: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bar x stock) open, high, low and close of the traded rows (first, highest, lowest, last of a bar's
    rows), NaN where a stock has none: for charts and vectorbt, never for the simulation."""
    o = np.full((n_bars, n_stocks), np.nan)
    h = np.full((n_bars, n_stocks), np.nan)
    lo = np.full((n_bars, n_stocks), np.nan)
    c = np.full((n_bars, n_stocks), np.nan)
    for g in range(start.shape[0] - 1):
        b = group_bar[g]
        for i in range(start[g], start[g + 1]):
            if not traded[i]:
                continue
            s = col[i]
            if np.isnan(o[b, s]):
                o[b, s], h[b, s], lo[b, s] = open_[i], high[i], low[i]
            else:
                h[b, s] = max(h[b, s], high[i])
                lo[b, s] = min(lo[b, s], low[i])
            c[b, s] = close[i]
    return o, h, lo, c
