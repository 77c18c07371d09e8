"""The baseline of the simulation loop's speed: the same rules in the barest ``@njit`` loop.

A (bar x stock) grid of OHLC prices, the kernel's own decide / observe / fill / T+1 functions inlined,
one shared cash pool, entries from a boolean grid; nothing else: no price limits, bands, corporate
actions, dated fees, board sizes per stock, trade records or equity. ``bench/backtest.py`` times the
real loop against it in the same process (rules.md rule set, issue 14: "within 3x of a bare loop").
"""

from __future__ import annotations

import numpy as np
from numba import njit

from miniqmt_lab.rules import nb as kernel
from miniqmt_lab.rules.nb import RULE_GRID_BUY, RULE_NONE, FeeParams, HoldingState, LotRule, RuleParams

decide_nb = njit(inline="always")(kernel.decide_nb.py_func)
decide_entry_nb = njit(inline="always")(kernel.decide_entry_nb.py_func)
observe_price_nb = njit(inline="always")(kernel.observe_price_nb.py_func)
apply_buy_nb = njit(inline="always")(kernel.apply_buy_nb.py_func)
apply_sell_nb = njit(inline="always")(kernel.apply_sell_nb.py_func)


@njit(cache=True)
def bare_loop_nb(open_: np.ndarray, high_: np.ndarray, low_: np.ndarray, close: np.ndarray, entries: np.ndarray,
                 params: RuleParams, fees: FeeParams, init_cash: float) -> tuple[float, int]:
    """(final cash, trades) of the rules over OHLC ticks of a (bar x stock) grid."""
    n_bars, n_stocks = close.shape
    volume = np.zeros(n_stocks, dtype=np.int64)
    available = np.zeros(n_stocks, dtype=np.int64)
    cost = np.zeros(n_stocks)
    base_cost = np.zeros(n_stocks)
    high = np.zeros(n_stocks)
    tp_done = np.zeros(n_stocks, dtype=np.bool_)
    grid_k = np.zeros(n_stocks, dtype=np.int64)
    lots = LotRule(100, 100, 100)
    nan = np.nan
    cash = init_cash
    trades = 0
    for t in range(n_bars):
        available[:] = volume  # roll_day_nb
        for k in range(4):
            for s in range(n_stocks):
                c = close[t, s]
                if not (c > 0.0):
                    continue
                held = volume[s] > 0
                if not held and not (k == 3 and entries[t, s]):
                    continue
                o = open_[t, s]
                if k == 0:
                    p = o
                elif k == 3:
                    p = c
                elif k == 1:
                    p = low_[t, s] if c >= o else high_[t, s]
                else:
                    p = high_[t, s] if c >= o else low_[t, s]
                state = HoldingState(volume[s], available[s], cost[s], base_cost[s], high[s], tp_done[s], grid_k[s])
                if held:
                    state = observe_price_nb(state, p)
                    rule, v, _ = decide_nb(state, p, cash, lots, nan, nan, params, fees)
                else:
                    rule, v, _ = decide_entry_nb(state, p, cash, lots, nan, params, fees)
                if rule != RULE_NONE and v > 0:
                    if not held or rule == RULE_GRID_BUY:
                        state, cash, _ = apply_buy_nb(state, cash, p, v, rule, fees)
                    else:
                        state, cash, _, _ = apply_sell_nb(state, cash, p, v, rule, fees)
                    trades += 1
                volume[s] = state.volume
                available[s] = state.available
                cost[s] = state.cost
                base_cost[s] = state.base_cost
                high[s] = state.high
                tp_done[s] = state.tp_done
                grid_k[s] = state.grid_k
    return cash, trades
