"""The rule kernel: the one place where the rules of ``shared/spec/rules.md`` are written.

Pure functions over plain numbers, NamedTuples and 1-D arrays, compiled with ``@njit(cache=True)``.
The live engine calls them per tick, the backtest calls them inside its simulation loop; with
``NUMBA_DISABLE_JIT=1`` the very same functions run as plain Python.

Conventions
-----------
* A holding is a :class:`HoldingState`; every transition returns a new one.
* ``decide_nb`` returns ``(rule, volume, outcome)``. ``rule`` is the first rule whose condition
  holds (``RULE_NONE`` when none); ``volume`` is the order size, 0 when the fired rule comes out as
  no action, and then ``outcome`` says why. A fired rule with volume 0 still decides the tick.
* Helpers that take the parameter tuples (arrays inside) are ``inline="always"``: a call across a numba
  function boundary would reference-count those arrays on every tick. So are the rounding, fee and limit
  helpers, so that their constants fold into the loops that call them.
* Threshold comparisons carry a tolerance of ``EPS`` so that a price sitting exactly on a threshold
  (``9.25`` on a cost of ``10`` with a -7.5% stop) fires despite binary floating point.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from miniqmt_lab.schema import Blocked, Rule

EPS = 1e-9

RULE_NONE = int(Rule.NONE)
RULE_STOP_LOSS = int(Rule.STOP_LOSS)
RULE_TP_INITIAL = int(Rule.TP_INITIAL)
RULE_TP_DYNAMIC = int(Rule.TP_DYNAMIC)
RULE_GRID_BUY = int(Rule.GRID_BUY)
RULE_ENTRY = int(Rule.ENTRY)
RULE_MANUAL = int(Rule.MANUAL)

# the kernel's outcome of a fired rule (``Blocked`` of the schema), as plain ints for numba
OUT_OK = int(Blocked.OK)
OUT_NOTHING_AVAILABLE = int(Blocked.NOTHING_AVAILABLE)
OUT_PRICE_LIMIT = int(Blocked.PRICE_LIMIT)
OUT_ZERO_LOT = int(Blocked.ZERO_LOT)
OUT_MAX_POSITION = int(Blocked.MAX_POSITION)
OUT_NO_CASH = int(Blocked.NO_CASH)


class RuleParams(NamedTuple):
    stop_loss_ratio: float
    initial_take_profit_ratio: float
    initial_take_profit_fraction: float
    dyn_min_high: np.ndarray  # ascending min_high_ratio column of the dynamic take-profit table
    dyn_keep: np.ndarray  # keep_ratio column
    grid_enabled: bool
    grid_levels: np.ndarray
    position_unit: float
    max_position_value: float


class RuleTable(NamedTuple):
    """The rule parameters of every combination, one row each (see :func:`rule_params_at_nb`).

    Ragged parameters (the dynamic take-profit table, the grid levels) are padded on the right;
    ``dyn_len`` and ``grid_len`` give each row's true length.
    """

    stop_loss_ratio: np.ndarray
    initial_take_profit_ratio: np.ndarray
    initial_take_profit_fraction: np.ndarray
    dyn_min_high: np.ndarray  # (n_combos, max_rows)
    dyn_keep: np.ndarray  # (n_combos, max_rows)
    dyn_len: np.ndarray
    grid_enabled: np.ndarray
    grid_levels: np.ndarray  # (n_combos, max_levels)
    grid_len: np.ndarray
    position_unit: np.ndarray
    max_position_value: np.ndarray
    price_limits: np.ndarray  # bool: apply the day's price limits


class FeeParams(NamedTuple):
    commission_rate: float
    min_commission: float
    stamp_duty_rate: float
    transfer_fee_rate: float


class LotRule(NamedTuple):
    """A board's order sizes (rules.md): smallest buy, the step above it, smallest sell.

    A sell smaller than ``min_sell`` or off the step is allowed only when it sells the whole available
    remainder. Main boards and ChiNext (100, 100, 100), STAR (200, 1, 200), Beijing (100, 1, 100).
    """

    min_buy: int
    step: int
    min_sell: int


class HoldingState(NamedTuple):
    volume: int
    available: int
    cost: float
    base_cost: float
    high: float
    tp_done: bool
    grid_k: int


@njit(cache=True)
def empty_holding_nb() -> HoldingState:
    return HoldingState(0, 0, 0.0, 0.0, 0.0, False, 0)


@njit(cache=True, inline="always")
def round_half_up_nb(x: float, ndigits: int) -> float:
    """Round half up (away from zero for positives), robust to 0.005 stored as 0.00499999..."""
    scale = 1.0
    for _ in range(ndigits):  # exact powers of ten, without a call to pow on every price
        scale *= 10.0
    return math.floor(x * scale + 0.5 + EPS) / scale


@njit(cache=True, inline="always")
def fee_parts_nb(amount: float, is_sell: bool, fees: FeeParams) -> tuple[float, float, float]:
    """(commission, stamp duty, transfer fee) of one order, each rounded to 0.01 yuan half up."""
    commission = round_half_up_nb(max(amount * fees.commission_rate, fees.min_commission), 2)
    stamp = round_half_up_nb(amount * fees.stamp_duty_rate, 2) if is_sell else 0.0
    transfer = round_half_up_nb(amount * fees.transfer_fee_rate, 2)
    return commission, stamp, transfer


@njit(cache=True, inline="always")
def fees_nb(amount: float, is_sell: bool, fees: FeeParams) -> float:
    commission, stamp, transfer = fee_parts_nb(amount, is_sell, fees)
    return commission + stamp + transfer


@njit(cache=True, inline="always")
def partial_sell_nb(volume: int, available: int, fraction: float, lots: LotRule) -> int:
    """Shares of a partial sell (the first take-profit): ``fraction`` of ``volume`` rounded down to the
    board's step, raised to the board's minimum sell, capped at ``available`` (the whole remainder)."""
    if available <= 0:
        return 0
    v = int(math.floor(volume * fraction / lots.step + EPS)) * lots.step
    if v < lots.min_sell:
        v = lots.min_sell
    return min(v, available)


@njit(cache=True, inline="always")
def _fits_position(v: int, volume: int, p: float, params: RuleParams) -> bool:
    return (volume + v) * p <= params.max_position_value + EPS


@njit(cache=True, inline="always")
def _fits_cash(v: int, p: float, cash: float, fees: FeeParams) -> bool:
    return v * p + fees_nb(v * p, False, fees) <= cash + EPS


@njit(cache=True, inline="always")
def size_buy_nb(
    p: float, volume: int, cash: float, lots: LotRule, params: RuleParams, fees: FeeParams
) -> tuple[int, int]:
    """Shares for an entry or grid buy and the outcome (rules.md, "Sizing a buy").

    ``position_unit / p`` rounded down to the board's step, then the largest size on that step that keeps
    the holding within ``max_position_value`` and the order plus fees within ``cash``; below the board's
    minimum buy it is 0. Both limits grow with the size, so the largest fitting size is found from an
    estimate a step or two above it instead of lowering step by step (1-share steps on STAR and BJ).
    """
    step = lots.step
    v = int(math.floor(params.position_unit / p / step + EPS)) * step
    if v < lots.min_buy:
        return 0, OUT_ZERO_LOT
    if not _fits_position(v, volume, p, params):
        estimate = int(math.floor((params.max_position_value / p - volume) / step)) * step
        v = min(v, estimate + step)
        while v >= lots.min_buy and not _fits_position(v, volume, p, params):
            v -= step
        if v < lots.min_buy:
            return 0, OUT_MAX_POSITION
    if not _fits_cash(v, p, cash, fees):
        per_share = p * (1.0 + fees.commission_rate + fees.transfer_fee_rate)
        estimate = int(math.floor(cash / per_share / step)) * step
        v = min(v, estimate + 2 * step)
        while v >= lots.min_buy and not _fits_cash(v, p, cash, fees):
            v -= step
        if v < lots.min_buy:
            return 0, OUT_NO_CASH
    return v, OUT_OK


@njit(cache=True)
def observe_price_nb(state: HoldingState, p: float) -> HoldingState:
    """Raise ``high`` to the tick price; done before the rules run on that tick."""
    if state.volume > 0 and p > state.high:
        return HoldingState(
            state.volume, state.available, state.cost, state.base_cost, p, state.tp_done, state.grid_k
        )
    return state


@njit(cache=True, inline="always")
def dynamic_exit_level_nb(high: float, cost: float, params: RuleParams) -> float:
    """Exit price of the dynamic take-profit for this high, NaN when no row of the table matches."""
    m = high / cost - 1.0
    level = np.nan
    for i in range(params.dyn_min_high.shape[0]):
        if params.dyn_min_high[i] <= m + EPS:
            level = high * params.dyn_keep[i]
    return level


@njit(cache=True)
def stop_loss_price_nb(cost: float, params: RuleParams) -> float:
    """Price at or below which the stop loss fires for a holding bought at ``cost``."""
    return cost * (1.0 + params.stop_loss_ratio)


@njit(cache=True, inline="always")
def grid_trigger_price_nb(state: HoldingState, params: RuleParams) -> float:
    """Price at or below which the next grid buy fires, NaN when the grid is off or exhausted."""
    if not params.grid_enabled or state.grid_k >= params.grid_levels.shape[0] or state.volume <= 0:
        return np.nan
    return state.base_cost * params.grid_levels[state.grid_k]


QUIET_MARGIN = 1e-7  # ratio-space room between a quiet band and the thresholds, far above rounding error


@njit(cache=True, inline="always")
def quiet_band_nb(state: HoldingState, params: RuleParams) -> tuple[float, float]:
    """(lo, hi) of a held stock: a tick ``p`` with ``lo < p < hi`` and ``p <= state.high`` fires no rule.

    Each bound sits a margin inside the threshold of a rule, so ``decide_nb`` returns ``RULE_NONE`` there
    whatever the rounding: above the stop loss, below the first take-profit (or, once it ran, above the
    dynamic exit level of the unchanged high), above the next grid level. A loop may skip such a tick
    without calling the rules; it changes nothing (the high does not move).
    """
    cost = state.cost
    lo = cost * (1.0 + params.stop_loss_ratio + EPS + QUIET_MARGIN)
    hi = np.inf
    if not state.tp_done:
        hi = cost * (1.0 + params.initial_take_profit_ratio - EPS - QUIET_MARGIN)
    else:
        level = dynamic_exit_level_nb(state.high, cost, params)
        if not np.isnan(level):
            lo = max(lo, level * (1.0 + QUIET_MARGIN) + EPS)
    trigger = grid_trigger_price_nb(state, params)
    if not np.isnan(trigger):
        lo = max(lo, trigger * (1.0 + QUIET_MARGIN) + EPS)
    return lo, hi


@njit(cache=True, inline="always")
def _sell_decision(rule: int, v: int, p: float, down_limit: float) -> tuple[int, int, int]:
    if v <= 0:
        return rule, 0, OUT_NOTHING_AVAILABLE
    if p <= down_limit + EPS:  # NaN limit (no previous close) never blocks
        return rule, 0, OUT_PRICE_LIMIT
    return rule, v, OUT_OK


@njit(cache=True)
def decide_nb(
    state: HoldingState,
    p: float,
    cash: float,
    lots: LotRule,
    up_limit: float,
    down_limit: float,
    params: RuleParams,
    fees: FeeParams,
) -> tuple[int, int, int]:
    """Rules 1-4 on one tick of a held stock; first match wins. Returns (rule, volume, outcome).

    Sells of "all available" sell the whole available remainder (any size the board allows for it).
    """
    if state.volume <= 0 or not (p > 0.0):
        return RULE_NONE, 0, OUT_OK
    high = max(state.high, p)
    r = p / state.cost - 1.0
    available = max(state.available, 0)
    if r <= params.stop_loss_ratio + EPS:
        return _sell_decision(RULE_STOP_LOSS, available, p, down_limit)
    if not state.tp_done and r >= params.initial_take_profit_ratio - EPS:
        v = partial_sell_nb(state.volume, available, params.initial_take_profit_fraction, lots)
        return _sell_decision(RULE_TP_INITIAL, v, p, down_limit)
    if state.tp_done:
        level = dynamic_exit_level_nb(high, state.cost, params)
        if not np.isnan(level) and p <= level + EPS:
            return _sell_decision(RULE_TP_DYNAMIC, available, p, down_limit)
    trigger = grid_trigger_price_nb(state, params)
    if not np.isnan(trigger) and p <= trigger + EPS:
        if p >= up_limit - EPS:
            return RULE_GRID_BUY, 0, OUT_PRICE_LIMIT
        v, outcome = size_buy_nb(p, state.volume, cash, lots, params, fees)
        return RULE_GRID_BUY, v, outcome
    return RULE_NONE, 0, OUT_OK


@njit(cache=True)
def decide_entry_nb(
    state: HoldingState,
    p: float,
    cash: float,
    lots: LotRule,
    up_limit: float,
    params: RuleParams,
    fees: FeeParams,
) -> tuple[int, int, int]:
    """An entry signal on a stock not held: buy ``position_unit`` yuan sized like a grid buy."""
    if state.volume > 0 or not (p > 0.0):
        return RULE_NONE, 0, OUT_OK
    if p >= up_limit - EPS:
        return RULE_ENTRY, 0, OUT_PRICE_LIMIT
    v, outcome = size_buy_nb(p, 0, cash, lots, params, fees)
    return RULE_ENTRY, v, outcome


@njit(cache=True)
def apply_buy_nb(
    state: HoldingState, cash: float, p: float, v: int, rule: int, fees: FeeParams
) -> tuple[HoldingState, float, float]:
    """A filled buy: returns (new state, new cash, fees). Bought shares are not available until T+1."""
    fee = fees_nb(v * p, False, fees)
    new_state, new_cash = fill_buy_nb(state, cash, p, v, rule, fee)
    return new_state, new_cash, fee


@njit(cache=True)
def fill_buy_nb(
    state: HoldingState, cash: float, p: float, v: int, rule: int, fee: float
) -> tuple[HoldingState, float]:
    """A buy fill whose fees are already known (one part of an order, fees as the broker charged them)."""
    new_cash = cash - v * p - fee
    if state.volume <= 0:
        return HoldingState(v, 0, p, p, p, False, 0), new_cash
    volume = state.volume + v
    cost = (state.cost * state.volume + p * v) / volume
    grid_k = state.grid_k + 1 if rule == RULE_GRID_BUY else state.grid_k
    high = max(state.high, p)
    return HoldingState(volume, state.available, cost, state.base_cost, high, state.tp_done, grid_k), new_cash


@njit(cache=True)
def apply_sell_nb(
    state: HoldingState, cash: float, p: float, v: int, rule: int, fees: FeeParams
) -> tuple[HoldingState, float, float, float]:
    """A filled sell: returns (new state, new cash, fees, realised P&L before fees).

    The cost stays; the first take-profit sets ``tp_done``; an empty holding resets every field.
    """
    fee = fees_nb(v * p, True, fees)
    new_state, new_cash, realised = fill_sell_nb(state, cash, p, v, rule, fee)
    return new_state, new_cash, fee, realised


@njit(cache=True)
def fill_sell_nb(
    state: HoldingState, cash: float, p: float, v: int, rule: int, fee: float
) -> tuple[HoldingState, float, float]:
    """A sell fill whose fees are already known: (new state, new cash, realised P&L before fees)."""
    new_cash = cash + v * p - fee
    realised = (p - state.cost) * v
    volume = state.volume - v
    if volume <= 0:
        return empty_holding_nb(), new_cash, realised
    tp_done = state.tp_done or rule == RULE_TP_INITIAL
    new_state = HoldingState(
        volume, state.available - v, state.cost, state.base_cost, state.high, tp_done, state.grid_k
    )
    return new_state, new_cash, realised


@njit(cache=True)
def roll_day_nb(state: HoldingState) -> HoldingState:
    """A new trading day: every share held is now available (T+1)."""
    return HoldingState(
        state.volume, state.volume, state.cost, state.base_cost, state.high, state.tp_done, state.grid_k
    )


@njit(cache=True)
def observe_decide_nb(
    state: HoldingState,
    p: float,
    reserved: int,
    cash: float,
    min_buy: int,
    lot_step: int,
    min_sell: int,
    up_limit: float,
    down_limit: float,
    params: RuleParams,
    fees: FeeParams,
) -> tuple[HoldingState, int, int, int]:
    """The live monitor's one kernel call on a tick of a held stock: :func:`observe_price_nb`, then
    :func:`decide_nb` on that holding with the ``reserved`` shares of its orders in flight taken off
    its available ones. Returns (the observed holding, rule, volume, outcome). One call instead of
    two, with the board's sizes as numbers: a Python call into numba pays per tuple argument."""
    observed = observe_price_nb(state, p)
    free = observed
    if reserved > 0:
        free = HoldingState(observed.volume, max(0, observed.available - reserved), observed.cost,
                            observed.base_cost, observed.high, observed.tp_done, observed.grid_k)
    rule, volume, outcome = decide_nb(
        free, p, cash, LotRule(min_buy, lot_step, min_sell), up_limit, down_limit, params, fees
    )
    return observed, rule, volume, outcome


HoldingTuple = tuple[int, int, float, float, float, bool, int]
"""A :class:`HoldingState` as a plain tuple (its fields in order)."""
FeeTuple = tuple[float, float, float, float]
"""A :class:`FeeParams` as a plain tuple."""


@njit(cache=True)
def observe_decide_plain_nb(
    state: HoldingTuple,
    p: float,
    reserved: int,
    cash: float,
    min_buy: int,
    lot_step: int,
    min_sell: int,
    up_limit: float,
    down_limit: float,
    params: tuple,  # type: ignore[type-arg]  # RuleParams' fields in order
    fees: FeeTuple,
) -> tuple[HoldingTuple, int, int, int]:
    """:func:`observe_decide_nb` for a caller in Python, with the holding, rule parameters and fees as
    plain tuples (their fields in order) and the observed holding returned as one: numba types a plain
    tuple in its C fast path, a NamedTuple argument costs a Python-level typing of 2-3 us each."""
    observed, rule, volume, outcome = observe_decide_nb(
        HoldingState(state[0], state[1], state[2], state[3], state[4], state[5], state[6]),
        p, reserved, cash, min_buy, lot_step, min_sell, up_limit, down_limit,
        RuleParams(params[0], params[1], params[2], params[3], params[4], params[5], params[6], params[7],
                   params[8]),
        FeeParams(fees[0], fees[1], fees[2], fees[3]),
    )
    held = (observed.volume, observed.available, observed.cost, observed.base_cost, observed.high,
            observed.tp_done, observed.grid_k)
    return held, rule, volume, outcome


@njit(cache=True)
def outside_band_nb(p: float, up_limit: float, down_limit: float) -> bool:
    """A tick outside the day's limit band is bad data (rules.md, "Bad ticks"): it changes nothing.

    ``up_limit``/``down_limit`` are the band of the day's base price whatever the price-limit realism
    switch says; NaN (no base price known, or a new listing without limits) never flags a tick.
    """
    return p > up_limit + EPS or p < down_limit - EPS


@njit(cache=True)
def ex_rights_price_nb(
    prev_close: float, cash_dividend: float, bonus_ratio: float, rights_ratio: float, rights_price: float
) -> float:
    """The ex-rights reference price of an ex-date: the base price of that day's limits (rules.md)."""
    return round_half_up_nb(
        (prev_close - cash_dividend + rights_price * rights_ratio) / (1.0 + bonus_ratio + rights_ratio), 2
    )


@njit(cache=True)
def apply_action_nb(
    state: HoldingState, cash: float, cash_dividend: float, bonus_ratio: float
) -> tuple[HoldingState, float, int]:
    """A holding on its ex-date, before the day's first tick (rules.md, "Corporate actions").

    Returns (new state, new cash, new shares): ``floor(volume * bonus_ratio)`` bonus shares (not available
    until the next trading day), ``cash_dividend * volume`` yuan, and ``cost``, ``base_cost`` and ``high``
    each ``(x - cash_dividend) / (1 + bonus_ratio)`` so that every rule's level carries across the
    ex-date. Rights are not subscribed: they change only the base price (``ex_rights_price_nb``).
    """
    if state.volume <= 0:
        return state, cash, 0
    bonus = int(math.floor(state.volume * bonus_ratio + EPS))
    factor = 1.0 + bonus_ratio
    new_state = HoldingState(
        state.volume + bonus,
        state.available,
        (state.cost - cash_dividend) / factor,
        (state.base_cost - cash_dividend) / factor,
        (state.high - cash_dividend) / factor,
        state.tp_done,
        state.grid_k,
    )
    return new_state, cash + cash_dividend * state.volume, bonus


@njit(cache=True, inline="always")
def limit_prices_nb(prev_close: float, width: float) -> tuple[float, float]:
    """(up-limit, down-limit) from the previous close; NaN for a stock's first day."""
    if not (prev_close > 0.0):
        return np.nan, np.nan
    return round_half_up_nb(prev_close * (1.0 + width), 2), round_half_up_nb(prev_close * (1.0 - width), 2)


@njit(cache=True)
def rule_params_at_nb(table: RuleTable, c: int) -> RuleParams:
    """The kernel's RuleParams of combination ``c``."""
    return RuleParams(
        table.stop_loss_ratio[c],
        table.initial_take_profit_ratio[c],
        table.initial_take_profit_fraction[c],
        table.dyn_min_high[c, : table.dyn_len[c]],
        table.dyn_keep[c, : table.dyn_len[c]],
        table.grid_enabled[c],
        table.grid_levels[c, : table.grid_len[c]],
        table.position_unit[c],
        table.max_position_value[c],
    )
