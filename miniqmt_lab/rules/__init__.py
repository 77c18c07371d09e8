"""The rule kernel (``nb``) and the glue that turns settings into its parameters.

Importing this package compiles nothing: numba compiles (or loads from its cache) each kernel
function on its first call.
"""

from __future__ import annotations

import numpy as np

from miniqmt_lab.config import FeeSettings, RuleSettings
from miniqmt_lab.rules.nb import (
    EPS,
    LOT,
    OUT_MAX_POSITION,
    OUT_NO_CASH,
    OUT_NOTHING_AVAILABLE,
    OUT_OK,
    OUT_PRICE_LIMIT,
    OUT_ZERO_LOT,
    OUTCOME_NAMES,
    RULE_ENTRY,
    RULE_GRID_BUY,
    RULE_MANUAL,
    RULE_NAMES,
    RULE_NONE,
    RULE_STOP_LOSS,
    RULE_TP_DYNAMIC,
    RULE_TP_INITIAL,
    FeeParams,
    HoldingState,
    RuleParams,
    apply_buy_nb,
    apply_sell_nb,
    decide_entry_nb,
    decide_nb,
    dynamic_exit_level_nb,
    empty_holding_nb,
    fee_parts_nb,
    fees_nb,
    fill_buy_nb,
    fill_sell_nb,
    grid_trigger_price_nb,
    limit_prices_nb,
    observe_price_nb,
    roll_day_nb,
    round_half_up_nb,
    sellable_nb,
    size_buy_nb,
)

SELL_RULES = frozenset({RULE_STOP_LOSS, RULE_TP_INITIAL, RULE_TP_DYNAMIC})
RULE_CODES = {name: code for code, name in enumerate(RULE_NAMES) if name}


def rule_params(rules: RuleSettings) -> RuleParams:
    table = np.asarray(rules.dynamic_take_profit, dtype=np.float64).reshape(-1, 2)
    return RuleParams(
        float(rules.stop_loss_ratio),
        float(rules.initial_take_profit_ratio),
        float(rules.initial_take_profit_fraction),
        np.ascontiguousarray(table[:, 0]),
        np.ascontiguousarray(table[:, 1]),
        bool(rules.grid_enabled),
        np.asarray(rules.grid_levels, dtype=np.float64).reshape(-1),
        float(rules.position_unit),
        float(rules.max_position_value),
    )


def fee_params(fees: FeeSettings) -> FeeParams:
    return FeeParams(
        float(fees.commission_rate),
        float(fees.min_commission),
        float(fees.stamp_duty_rate),
        float(fees.transfer_fee_rate),
    )


def holding(
    volume: int = 0,
    available: int = 0,
    cost: float = 0.0,
    base_cost: float | None = None,
    high: float | None = None,
    tp_done: bool = False,
    grid_k: int = 0,
) -> HoldingState:
    """A HoldingState with numba-friendly types; ``base_cost`` and ``high`` default to ``cost``."""
    return HoldingState(
        int(volume),
        int(available),
        float(cost),
        float(cost if base_cost is None else base_cost),
        float(cost if high is None else high),
        bool(tp_done),
        int(grid_k),
    )


def side_of(rule: int) -> str:
    return "SELL" if rule in SELL_RULES else "BUY"


__all__ = [
    "EPS",
    "LOT",
    "OUTCOME_NAMES",
    "OUT_MAX_POSITION",
    "OUT_NOTHING_AVAILABLE",
    "OUT_NO_CASH",
    "OUT_OK",
    "OUT_PRICE_LIMIT",
    "OUT_ZERO_LOT",
    "RULE_CODES",
    "RULE_ENTRY",
    "RULE_GRID_BUY",
    "RULE_MANUAL",
    "RULE_NAMES",
    "RULE_NONE",
    "RULE_STOP_LOSS",
    "RULE_TP_DYNAMIC",
    "RULE_TP_INITIAL",
    "SELL_RULES",
    "FeeParams",
    "HoldingState",
    "RuleParams",
    "apply_buy_nb",
    "apply_sell_nb",
    "decide_entry_nb",
    "decide_nb",
    "dynamic_exit_level_nb",
    "empty_holding_nb",
    "fee_params",
    "fee_parts_nb",
    "fees_nb",
    "fill_buy_nb",
    "fill_sell_nb",
    "grid_trigger_price_nb",
    "holding",
    "limit_prices_nb",
    "observe_price_nb",
    "roll_day_nb",
    "round_half_up_nb",
    "rule_params",
    "sellable_nb",
    "side_of",
    "size_buy_nb",
]
