"""The backtest simulation loop: one ``@njit`` loop over parameter combinations x tick rounds x stocks.

Every decision, size, fee and state transition comes from the rule kernel (``miniqmt_lab.rules.nb``);
this module only walks the tick stream in the order of ``docs/contracts.md`` (parity rules 1-8) and
records what the kernel decided. Inputs and outputs are plain arrays and NamedTuples, so the loop
runs as plain Python under ``NUMBA_DISABLE_JIT=1``.

Layout
------
* A *round* is one tick time: row ``r`` of ``TickRounds.price`` holds the price of every stock at
  that time (NaN: no tick). Bars become rounds (``ohlc``: four per bar, ``close``: one), so do the
  rounds of a recorded engine journal; the loop does not know which.
* A *bar* is one row of the output grid (the vectorbt index): rounds map to it by ``TickRounds.bar``
  and trades are stamped with it.
* Each combination (one row of :class:`RuleTable`) has its own cash pool and holdings and runs
  over the whole stream in turn. Combinations are the outer loop, not the inner one: the kernel's
  parameter arrays are then bound once per combination instead of once per tick (each binding of
  an array is an atomic reference-count update). Measured interleaved on 500 stocks x 1000 days of
  OHLC ticks: ~25 ms per combination outer, 30-45 ms inner.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from miniqmt_lab._cache_guard import drop_stale_cache
from miniqmt_lab.market.fees import FeeTable
from miniqmt_lab.rules import nb as kernel
from miniqmt_lab.rules.nb import RULE_GRID_BUY, FeeParams, HoldingState, LotRule, RuleParams, RuleTable

# The loop inlines the kernel: an edit of the kernel must recompile the loop, not reuse its cache.
drop_stale_cache(__file__, [kernel.__file__])


def _inlined(kernel_function: Any) -> Any:
    """The kernel's own function, compiled inline into the loop instead of called.

    A call across a numba function boundary passes the NamedTuple-of-arrays arguments field by field
    and reference-counts the arrays: measured ~60 ns per ``decide_nb`` call, more than the rules
    themselves (~2-4 ns inlined). Same Python source, so the same decisions; ``drop_stale_cache`` above
    recompiles the loop when the kernel's file changes.
    """
    return njit(inline="always")(getattr(kernel_function, "py_func", kernel_function))


decide_nb = _inlined(kernel.decide_nb)
decide_entry_nb = _inlined(kernel.decide_entry_nb)
observe_price_nb = _inlined(kernel.observe_price_nb)
apply_buy_nb = _inlined(kernel.apply_buy_nb)
apply_sell_nb = _inlined(kernel.apply_sell_nb)
roll_day_nb = _inlined(kernel.roll_day_nb)
rule_params_at_nb = _inlined(kernel.rule_params_at_nb)
limit_prices_nb = _inlined(kernel.limit_prices_nb)

SIDE_BUY = 0  # vectorbt's OrderSide.Buy
SIDE_SELL = 1  # vectorbt's OrderSide.Sell

trade_dt = np.dtype(
    [
        # the first seven fields are vectorbt's order_dt
        ("id", np.int64),
        ("col", np.int64),  # combination * n_stocks + stock
        ("idx", np.int64),  # bar (row of the output grid)
        ("size", np.float64),
        ("price", np.float64),
        ("fees", np.float64),
        ("side", np.int64),
        ("round", np.int64),  # tick round the trade was made on
        ("rule", np.int64),  # RULE_* code of the kernel
        ("cash", np.float64),  # the combination's cash after the trade
    ],
    align=True,
)
"""One filled order, in processing order."""


class TickRounds(NamedTuple):
    """The tick stream: rounds of simultaneous ticks, stocks as columns in ascending code order."""

    price: np.ndarray  # (n_rounds, n_stocks) float64; NaN = the stock has no tick in this round
    last_tick: np.ndarray  # (n_rounds, n_stocks) bool; the tick closes its bar (entries act here)
    bar: np.ndarray  # (n_rounds,) int64 non-decreasing: the bar each round belongs to
    day: np.ndarray  # (n_rounds,) int64 non-decreasing: trading day number, for the T+1 roll


class BarGrid(NamedTuple):
    """Per-bar facts of each stock."""

    close: np.ndarray  # (n_bars, n_stocks) float64 valuation price; NaN = no bar (last close carries)
    entries: np.ndarray  # (n_bars, n_stocks) bool entry signal, acted on at the bar's last tick
    up_limit: np.ndarray  # (n_bars, n_stocks) float64; NaN = no limit
    down_limit: np.ndarray  # (n_bars, n_stocks) float64; NaN = no limit
    lots: np.ndarray  # (n_stocks, 3) int64 the board's LotRule: min buy, step, min sell


class SimOutput(NamedTuple):
    records: np.ndarray  # trade_dt, processing order; at most ``capacity`` of them (see simulate_nb)
    equity: np.ndarray  # (n_bars, n_combos) cash + holdings at each bar's close
    cash: np.ndarray  # (n_combos,) final cash
    closed: np.ndarray  # (n_combos,) holdings opened and closed again
    wins: np.ndarray  # (n_combos,) closed holdings with a positive result after all fees
    n_trades: np.ndarray  # (n_combos,) filled orders


@njit(cache=True)
def prev_close_nb(close: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Each bar's reference close for price limits: the stock's last close on an earlier trading day.

    With daily bars that is the stock's previous bar (across suspensions); with minute bars the
    previous trading day's last close. NaN before the stock's first day.
    """
    n_bars, n_stocks = close.shape
    out = np.empty((n_bars, n_stocks))
    before_today = np.full(n_stocks, np.nan)
    latest = np.full(n_stocks, np.nan)
    for t in range(n_bars):
        new_day = t > 0 and day[t] != day[t - 1]
        for s in range(n_stocks):
            if new_day:
                before_today[s] = latest[s]
            out[t, s] = before_today[s]
            if close[t, s] > 0.0:
                latest[s] = close[t, s]
    return out


@njit(cache=True)
def limit_table_nb(prev_close: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(up-limit, down-limit) of every bar and stock by the kernel's ``limit_prices_nb``."""
    up = np.empty(prev_close.shape)
    down = np.empty(prev_close.shape)
    for t in range(prev_close.shape[0]):
        for s in range(prev_close.shape[1]):
            up[t, s], down[t, s] = limit_prices_nb(prev_close[t, s], width[t, s])
    return up, down


@njit(cache=True)
def ohlc_rounds_nb(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Parity rule 1: each bar's ticks O, L, H, C when close >= open, else O, H, L, C; the k-th tick of
    every stock's bar in round ``4 * bar + k``. Returns (price, last_tick) of the rounds."""
    n_bars, n_stocks = close.shape
    price = np.empty((4 * n_bars, n_stocks))
    last_tick = np.zeros((4 * n_bars, n_stocks), dtype=np.bool_)
    for t in range(n_bars):
        for s in range(n_stocks):
            rising = close[t, s] >= open_[t, s]
            price[4 * t, s] = open_[t, s]
            price[4 * t + 1, s] = low[t, s] if rising else high[t, s]
            price[4 * t + 2, s] = high[t, s] if rising else low[t, s]
            price[4 * t + 3, s] = close[t, s]
            last_tick[4 * t + 3, s] = close[t, s] > 0.0
    return price, last_tick


@njit(inline="always")
def _decide_nb(
    held: bool,
    state: HoldingState,
    p: float,
    cash: float,
    lots: LotRule,
    up: float,
    down: float,
    params: RuleParams,
    fees: FeeParams,
) -> tuple[HoldingState, int, int]:
    """Parity rule 3 on one tick: a held stock observes the price then runs the rules, a stock not
    held (called only with an entry signal on its bar's last tick) runs the entry."""
    if held:
        state = observe_price_nb(state, p)
        rule, v, _ = decide_nb(state, p, cash, lots, up, down, params, fees)
    else:
        rule, v, _ = decide_entry_nb(state, p, cash, lots, up, params, fees)
    return state, rule, v


@njit(inline="always")
def _fees_of_day(rates: FeeTable, day: int) -> FeeParams:
    """The kernel's fee parameters of trading day ``day``: each trade pays its own day's rates."""
    return FeeParams(rates.commission_rate, rates.min_commission, rates.stamp_duty_rate[day],
                     rates.transfer_fee_rate[day])


@njit(inline="always")
def _store_holding_nb(
    state: HoldingState,
    s: int,
    volume: np.ndarray,
    available: np.ndarray,
    cost: np.ndarray,
    base_cost: np.ndarray,
    high: np.ndarray,
    tp_done: np.ndarray,
    grid_k: np.ndarray,
) -> None:
    """Write stock ``s``'s holding back into the loop's column arrays."""
    volume[s] = state.volume
    available[s] = state.available
    cost[s] = state.cost
    base_cost[s] = state.base_cost
    high[s] = state.high
    tp_done[s] = state.tp_done
    grid_k[s] = state.grid_k


@njit(cache=True, nogil=True)
def simulate_nb(
    rounds: TickRounds,
    grid: BarGrid,
    table: RuleTable,
    fee_rates: FeeTable,
    init_cash: float,
    capacity: int,
) -> SimOutput:
    """Run every combination of ``table`` over the tick stream; see the module docstring.

    Per round, stocks in ascending column order, each completely before the next (cash freed by a
    sell pays a later buy of the same round). Before the first round of a new trading day every
    holding goes through ``roll_day_nb``. At most ``capacity`` trade records are written (0: none,
    for sweeps); ``n_trades.sum()`` above it means the caller must run again with more room. A
    fixed buffer, rather than one grown inside the loop, keeps the records array out of the
    loop-carried variables (another reference count per tick).
    """
    price, last_tick, round_bar, round_day = rounds
    close, entries, up_limit, down_limit, lots = grid
    n_rounds, n_stocks = price.shape
    n_bars = close.shape[0]
    n_combos = table.stop_loss_ratio.shape[0]
    volume = np.zeros(n_stocks, dtype=np.int64)
    available = np.zeros(n_stocks, dtype=np.int64)
    cost = np.zeros(n_stocks)
    base_cost = np.zeros(n_stocks)
    high = np.zeros(n_stocks)
    tp_done = np.zeros(n_stocks, dtype=np.bool_)
    grid_k = np.zeros(n_stocks, dtype=np.int64)
    holding_flow = np.zeros(n_stocks)  # cash in minus cash out of the open holding, fees included
    last_close = np.full(n_stocks, np.nan)

    final_cash = np.empty(n_combos)
    equity = np.full((n_bars, n_combos), np.nan)
    closed = np.zeros(n_combos, dtype=np.int64)
    wins = np.zeros(n_combos, dtype=np.int64)
    n_trades = np.zeros(n_combos, dtype=np.int64)
    records = np.empty(capacity, dtype=trade_dt)
    n_records = 0

    for c in range(n_combos):
        params = rule_params_at_nb(table, c)
        limits = table.price_limits[c]
        cash = init_cash
        volume[:] = 0
        available[:] = 0
        cost[:] = 0.0
        base_cost[:] = 0.0
        high[:] = 0.0
        tp_done[:] = False
        grid_k[:] = 0
        holding_flow[:] = 0.0
        last_close[:] = np.nan
        fees = _fees_of_day(fee_rates, round_day[0] if n_rounds else 0)
        for r in range(n_rounds):
            bar = round_bar[r]
            if r > 0 and round_day[r] != round_day[r - 1]:
                fees = _fees_of_day(fee_rates, round_day[r])
                for s in range(n_stocks):
                    if volume[s] > 0:
                        state = roll_day_nb(HoldingState(volume[s], available[s], cost[s], base_cost[s], high[s],
                                                         tp_done[s], grid_k[s]))
                        _store_holding_nb(state, s, volume, available, cost, base_cost, high, tp_done, grid_k)
            for s in range(n_stocks):
                p = price[r, s]
                if not (p > 0.0):
                    continue
                held = volume[s] > 0
                if not held and not (last_tick[r, s] and entries[bar, s]):
                    continue
                up = up_limit[bar, s] if limits else np.nan
                down = down_limit[bar, s] if limits else np.nan
                state = HoldingState(volume[s], available[s], cost[s], base_cost[s], high[s], tp_done[s], grid_k[s])
                state, rule, v = _decide_nb(held, state, p, cash, LotRule(lots[s, 0], lots[s, 1], lots[s, 2]), up, down,
                                             params, fees)
                if v > 0:
                    is_buy = not held or rule == RULE_GRID_BUY
                    if is_buy:
                        state, cash, fee = apply_buy_nb(state, cash, p, v, rule, fees)
                        holding_flow[s] -= v * p + fee
                    else:
                        state, cash, fee, _ = apply_sell_nb(state, cash, p, v, rule, fees)
                        holding_flow[s] += v * p - fee
                        if state.volume == 0:
                            closed[c] += 1
                            if holding_flow[s] > 0.0:
                                wins[c] += 1
                            holding_flow[s] = 0.0
                    n_trades[c] += 1
                    if n_records < capacity:
                        records["id"][n_records] = n_records
                        records["col"][n_records] = c * n_stocks + s
                        records["idx"][n_records] = bar
                        records["size"][n_records] = v
                        records["price"][n_records] = p
                        records["fees"][n_records] = fee
                        records["side"][n_records] = SIDE_BUY if is_buy else SIDE_SELL
                        records["round"][n_records] = r
                        records["rule"][n_records] = rule
                        records["cash"][n_records] = cash
                    n_records += 1
                _store_holding_nb(state, s, volume, available, cost, base_cost, high, tp_done, grid_k)
            if r == n_rounds - 1 or round_bar[r + 1] != bar:
                value = cash
                for s in range(n_stocks):
                    if close[bar, s] > 0.0:
                        last_close[s] = close[bar, s]
                    if volume[s] > 0:
                        value += volume[s] * last_close[s]
                equity[bar, c] = value
        final_cash[c] = cash
    return SimOutput(records[: min(n_records, capacity)], equity, final_cash, closed, wins, n_trades)
