"""The backtest simulation loop: one ``@njit`` loop over parameter combinations x tick groups x rows.

Every decision, size, fee and state transition comes from the rule kernel (``miniqmt_lab.rules.nb``),
every tick price from the market simulation (``miniqmt_lab.marketsim``); this module only walks the tick
stream in the order of ``docs/contracts.md`` (parity rules) and records what the kernel decided. Inputs
and outputs are plain arrays and NamedTuples, so the loop runs as plain Python under ``NUMBA_DISABLE_JIT=1``.

Layout
------
* The stream is the bars' own rows (no bar x stock grid): a *group* is the rows of one bar time in
  ascending stock column; each row gives ``n_ticks`` ticks (O, L/H, H/L, C or the close), the k-th tick
  of every row of a group at one time, so a group is ``n_ticks`` rounds. A recorded engine journal is a
  stream too: a group per tick round, one tick per row; the loop does not know which.
* A *bar* is one row of the output (the vectorbt index): groups map to it by ``TickStream.group_bar``
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
from miniqmt_lab.marketsim import nb as marketsim
from miniqmt_lab.marketsim.data import TickStream
from miniqmt_lab.marketsim.nb import band_nb, bar_tick_nb
from miniqmt_lab.rules import nb as kernel
from miniqmt_lab.rules.nb import RULE_GRID_BUY, RULE_NONE, FeeParams, HoldingState, LotRule, RuleParams, RuleTable

# The loop inlines the kernel: an edit of the kernel must recompile the loop, not reuse its cache.
drop_stale_cache(__file__, [kernel.__file__, marketsim.__file__])


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
apply_action_nb = _inlined(kernel.apply_action_nb)
quiet_band_nb = _inlined(kernel.quiet_band_nb)
outside_band_nb = _inlined(kernel.outside_band_nb)

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
        ("round", np.int64),  # tick round the trade was made on: group * ticks per row + tick
        ("rule", np.int64),  # RULE_* code of the kernel
        ("cash", np.float64),  # the combination's cash after the trade
    ],
    align=True,
)
"""One filled order, in processing order."""

signal_dt = np.dtype(
    [
        ("col", np.int64),
        ("idx", np.int64),
        ("round", np.int64),
        ("rule", np.int64),
        ("price", np.float64),
        ("outcome", np.int64),  # the kernel's Blocked code
    ],
    align=True,
)
"""A fired rule that came out as no action (the kernel's outcome says why), in processing order."""

event_dt = np.dtype(
    [
        ("col", np.int64),
        ("idx", np.int64),  # bar of the ex-date's first group
        ("day", np.int64),
        ("volume_before", np.int64),
        ("volume_after", np.int64),
        ("cash", np.float64),  # cash dividend received
    ],
    align=True,
)
"""A corporate action applied to a holding (an event, not a trade)."""


class DayFacts(NamedTuple):
    """What the market says of each trading day and stock, and the entry signals."""

    base: np.ndarray  # (n_days, n_stocks) base price of the day's band; NaN: no band (never flags, never blocks)
    st: np.ndarray  # (n_rows,) bool the row's name is ST (5% band), or empty: none is
    board_width: np.ndarray  # (n_stocks,) the board's band width
    st_width: float
    act_start: np.ndarray  # (n_days + 1,) int64: corporate actions of day d
    act_col: np.ndarray  # (n_actions,) int64
    act_values: np.ndarray  # (n_actions, 4) cash dividend, bonus ratio, rights ratio, rights price
    lots: np.ndarray  # (n_stocks, 3) int64 the board's LotRule: min buy, step, min sell
    entries: np.ndarray  # (n_rows,) bool entry signal, acted on at the row's last tick


class SimOutput(NamedTuple):
    records: np.ndarray  # trade_dt, processing order; at most ``capacity`` of them (see simulate_nb)
    signals: np.ndarray  # signal_dt: blocked decisions; at most ``signal_capacity``
    events: np.ndarray  # event_dt: corporate actions applied to holdings
    equity: np.ndarray  # (n_bars, n_combos) cash + holdings at each bar's close
    cash: np.ndarray  # (n_combos,) final cash
    closed: np.ndarray  # (n_combos,) holdings opened and closed again
    wins: np.ndarray  # (n_combos,) closed holdings with a positive result after all fees
    n_trades: np.ndarray  # (n_combos,) filled orders
    n_signals: np.ndarray  # (n_combos,) blocked decisions


@njit(inline="always")
def _fees_of_day(rates: FeeTable, day: int) -> FeeParams:
    """The kernel's fee parameters of trading day ``day``: each trade pays its own day's rates."""
    return FeeParams(rates.commission_rate, rates.min_commission, rates.stamp_duty_rate[day],
                     rates.transfer_fee_rate[day])


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
) -> tuple[HoldingState, int, int, int]:
    """Parity rule 3 on one tick: a held stock observes the price then runs the rules, a stock not
    held (called only with an entry signal on its bar's last tick) runs the entry."""
    if held:
        state = observe_price_nb(state, p)
        rule, v, outcome = decide_nb(state, p, cash, lots, up, down, params, fees)
    else:
        rule, v, outcome = decide_entry_nb(state, p, cash, lots, up, params, fees)
    return state, rule, v, outcome


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
    stream: TickStream,
    days: DayFacts,
    table: RuleTable,
    fee_rates: FeeTable,
    realism: bool,
    init_cash: float,
    capacity: int,
    signal_capacity: int,
) -> SimOutput:
    """Run every combination of ``table`` over the tick stream; see the module docstring.

    Per tick of a group, rows in ascending column order, each completely before the next (cash freed by
    a sell pays a later buy of the same round). Before the first group of a new trading day every holding
    goes through ``roll_day_nb``, the day's fee rates are taken, and the day's corporate actions are
    applied to holdings (``apply_action_nb``). A tick outside the day's band is bad data: skipped before
    anything sees it. The day's price limits (the band) apply when ``realism`` and the combination's
    ``price_limits`` say so. At most ``capacity`` trade records and ``signal_capacity`` blocked decisions
    are written (0: none, for sweeps); counts above them mean the caller must run again with more room.
    A fixed buffer, rather than one grown inside the loop, keeps the records out of the loop-carried
    variables (another reference count per tick).
    """
    start, group_bar, group_day, col, open_, high_, low_, close, traded, bar_close, n_ticks = stream
    base, st, board_width, st_width, act_start, act_col, act_values, lots, entries = days
    n_groups = start.shape[0] - 1
    n_stocks = lots.shape[0]
    n_bars = group_bar[n_groups - 1] + 1 if n_groups > 0 else 0
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
    band_day = np.full(n_stocks, -1, dtype=np.int64)  # the day of the band in up/down, computed when needed
    band_up = np.full(n_stocks, np.nan)
    band_down = np.full(n_stocks, np.nan)
    active = np.empty(n_stocks, dtype=np.int64)  # a group's rows that may act: held, or an entry signal
    quiet_lo = np.zeros(n_stocks)  # a held stock's quiet band (kernel quiet_band_nb): no rule fires inside
    quiet_hi = np.zeros(n_stocks)

    final_cash = np.empty(n_combos)
    equity = np.full((n_bars, n_combos), np.nan)
    closed = np.zeros(n_combos, dtype=np.int64)
    wins = np.zeros(n_combos, dtype=np.int64)
    n_trades = np.zeros(n_combos, dtype=np.int64)
    n_signals = np.zeros(n_combos, dtype=np.int64)
    records = np.empty(capacity, dtype=trade_dt)
    signals = np.empty(signal_capacity, dtype=signal_dt)
    events = np.empty(act_col.shape[0] * n_combos if capacity > 0 else 0, dtype=event_dt)
    n_records = 0
    n_blocked = 0
    n_events = 0

    for c in range(n_combos):
        params = rule_params_at_nb(table, c)
        limits = realism and table.price_limits[c]
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
        band_day[:] = -1
        fees = _fees_of_day(fee_rates, group_day[0] if n_groups > 0 else 0)
        day = -1
        for g in range(n_groups):
            bar = group_bar[g]
            d = group_day[g]
            if d != day:
                fees = _fees_of_day(fee_rates, d)
                for s in range(n_stocks):
                    if volume[s] > 0:
                        state = HoldingState(volume[s], available[s], cost[s], base_cost[s], high[s], tp_done[s],
                                             grid_k[s])
                        if day >= 0:
                            state = roll_day_nb(state)
                        _store_holding_nb(state, s, volume, available, cost, base_cost, high, tp_done, grid_k)
                # the ex-date's actions after the roll: bonus shares become available the next trading day
                for a in range(act_start[d], act_start[d + 1]):
                    s = act_col[a]
                    if volume[s] <= 0:
                        continue
                    state = HoldingState(volume[s], available[s], cost[s], base_cost[s], high[s], tp_done[s],
                                         grid_k[s])
                    before, cash_before = volume[s], cash
                    state, cash, _ = apply_action_nb(state, cash, act_values[a, 0], act_values[a, 1])
                    holding_flow[s] += cash - cash_before
                    _store_holding_nb(state, s, volume, available, cost, base_cost, high, tp_done, grid_k)
                    quiet_lo[s], quiet_hi[s] = quiet_band_nb(state, params)
                    if n_events < events.shape[0]:
                        events[n_events]["col"] = c * n_stocks + s
                        events[n_events]["idx"] = bar
                        events[n_events]["day"] = d
                        events[n_events]["volume_before"] = before
                        events[n_events]["volume_after"] = volume[s]
                        events[n_events]["cash"] = cash - cash_before
                        n_events += 1
                day = d
            # a stock not held at the group's start cannot act before its last tick (entries act there):
            # with several ticks a row, walk only the rows that may act; with one, walk the rows directly
            listed = n_ticks > 1
            lo, hi = start[g], start[g + 1]
            if listed:
                n_active = 0
                for i in range(lo, hi):
                    if traded[i] and (volume[col[i]] > 0 or (bar_close[i] and entries[i])):
                        active[n_active] = i
                        n_active += 1
                lo, hi = 0, n_active
            for k in range(n_ticks):
                last = k == n_ticks - 1
                for j in range(lo, hi):
                    i = active[j] if listed else j
                    if not traded[i]:
                        continue
                    s = col[i]
                    held = volume[s] > 0
                    if not held and not (last and bar_close[i] and entries[i]):
                        continue
                    p = bar_tick_nb(open_[i], high_[i], low_[i], close[i], k, n_ticks)
                    if held and p <= high[s] and quiet_lo[s] < p < quiet_hi[s]:
                        continue  # no rule fires and the high stays: the kernel would decide nothing
                    if band_day[s] != d:
                        band_day[s] = d
                        band_up[s], band_down[s] = band_nb(base[d, s], st, i, board_width[s], st_width)
                    up = band_up[s]
                    down = band_down[s]
                    if outside_band_nb(p, up, down):
                        continue
                    if not limits:
                        up = np.nan
                        down = np.nan
                    state = HoldingState(volume[s], available[s], cost[s], base_cost[s], high[s], tp_done[s],
                                         grid_k[s])
                    lot = LotRule(lots[s, 0], lots[s, 1], lots[s, 2])
                    state, rule, v, outcome = _decide_nb(held, state, p, cash, lot, up, down, params, fees)
                    if rule == RULE_NONE:  # at most the high moved
                        high[s] = state.high
                        quiet_lo[s], quiet_hi[s] = quiet_band_nb(state, params)
                        continue
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
                            records[n_records]["id"] = n_records
                            records[n_records]["col"] = c * n_stocks + s
                            records[n_records]["idx"] = bar
                            records[n_records]["size"] = v
                            records[n_records]["price"] = p
                            records[n_records]["fees"] = fee
                            records[n_records]["side"] = SIDE_BUY if is_buy else SIDE_SELL
                            records[n_records]["round"] = g * n_ticks + k
                            records[n_records]["rule"] = rule
                            records[n_records]["cash"] = cash
                        n_records += 1
                    elif rule != RULE_NONE:
                        n_signals[c] += 1
                        if n_blocked < signal_capacity:
                            signals[n_blocked]["col"] = c * n_stocks + s
                            signals[n_blocked]["idx"] = bar
                            signals[n_blocked]["round"] = g * n_ticks + k
                            signals[n_blocked]["rule"] = rule
                            signals[n_blocked]["price"] = p
                            signals[n_blocked]["outcome"] = outcome
                        n_blocked += 1
                    _store_holding_nb(state, s, volume, available, cost, base_cost, high, tp_done, grid_k)
                    if state.volume > 0:
                        quiet_lo[s], quiet_hi[s] = quiet_band_nb(state, params)
            for j in range(lo, hi):  # a stock is valued at its last close while held
                i = active[j] if listed else j
                if traded[i] and volume[col[i]] > 0:
                    last_close[col[i]] = close[i]
            if g == n_groups - 1 or group_bar[g + 1] != bar:
                value = cash
                for s in range(n_stocks):
                    if volume[s] > 0:
                        value += volume[s] * last_close[s]
                equity[bar, c] = value
        final_cash[c] = cash
    return SimOutput(
        records[: min(n_records, capacity)],
        signals[: min(n_blocked, signal_capacity)],
        events[:n_events],
        equity,
        final_cash,
        closed,
        wins,
        n_trades,
        n_signals,
    )
