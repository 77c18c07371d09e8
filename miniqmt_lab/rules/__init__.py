"""The rule kernel (``nb``), re-exported, and a helper to build a holding with numba-friendly types.

Importing this package compiles nothing: numba compiles (or loads from its cache) each kernel
function on its first call. It imports no other part of the package than the neutral schema: the
market model and the settings sit above the kernel; ``miniqmt_lab.rules.params`` turns settings into
kernel parameters.
"""

from __future__ import annotations

from miniqmt_lab.rules.nb import (
    EPS,
    OUT_MAX_POSITION,
    OUT_NO_CASH,
    OUT_NOTHING_AVAILABLE,
    OUT_OK,
    OUT_PRICE_LIMIT,
    OUT_ZERO_LOT,
    RULE_ENTRY,
    RULE_GRID_BUY,
    RULE_MANUAL,
    RULE_NONE,
    RULE_STOP_LOSS,
    RULE_TP_DYNAMIC,
    RULE_TP_INITIAL,
    FeeParams,
    HoldingState,
    LotRule,
    RuleParams,
    apply_action_nb,
    apply_buy_nb,
    apply_sell_nb,
    decide_entry_nb,
    decide_nb,
    dynamic_exit_level_nb,
    empty_holding_nb,
    ex_rights_price_nb,
    fee_parts_nb,
    fees_nb,
    fill_buy_nb,
    fill_sell_nb,
    grid_trigger_price_nb,
    limit_prices_nb,
    observe_price_nb,
    outside_band_nb,
    partial_sell_nb,
    quiet_band_nb,
    roll_day_nb,
    round_half_up_nb,
    size_buy_nb,
    stop_loss_price_nb,
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


__all__ = [
    "EPS",
    "OUT_MAX_POSITION",
    "OUT_NOTHING_AVAILABLE",
    "OUT_NO_CASH",
    "OUT_OK",
    "OUT_PRICE_LIMIT",
    "OUT_ZERO_LOT",
    "RULE_ENTRY",
    "RULE_GRID_BUY",
    "RULE_MANUAL",
    "RULE_NONE",
    "RULE_STOP_LOSS",
    "RULE_TP_DYNAMIC",
    "RULE_TP_INITIAL",
    "FeeParams",
    "HoldingState",
    "LotRule",
    "RuleParams",
    "apply_action_nb",
    "apply_buy_nb",
    "apply_sell_nb",
    "decide_entry_nb",
    "decide_nb",
    "dynamic_exit_level_nb",
    "empty_holding_nb",
    "ex_rights_price_nb",
    "fee_parts_nb",
    "fees_nb",
    "fill_buy_nb",
    "fill_sell_nb",
    "grid_trigger_price_nb",
    "holding",
    "limit_prices_nb",
    "observe_price_nb",
    "outside_band_nb",
    "partial_sell_nb",
    "quiet_band_nb",
    "roll_day_nb",
    "round_half_up_nb",
    "size_buy_nb",
    "stop_loss_price_nb",
]
