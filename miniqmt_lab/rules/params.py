"""Settings to kernel parameters: the one converter from ``RuleSettings`` to what the kernel reads.

:func:`rule_table` turns any number of rule sets into a :class:`~miniqmt_lab.rules.nb.RuleTable`
(one row each: a sweep's combinations); :func:`rule_params` is row 0 of a one-row table, read by the
kernel's own :func:`~miniqmt_lab.rules.nb.rule_params_at_nb`, so the engine and the backtest see the
same numbers. (The fee converter lives in :mod:`miniqmt_lab.market`: fees are dated market facts.)
"""

from __future__ import annotations

import numpy as np

from miniqmt_lab.config import RuleSettings
from miniqmt_lab.rules.nb import RuleParams, RuleTable, rule_params_at_nb


def rule_table(rules: list[RuleSettings]) -> RuleTable:
    """One row per RuleSettings, ragged tables padded (the loop reads only each row's length)."""
    n = len(rules)
    max_rows = max(1, *(len(r.dynamic_take_profit) for r in rules))
    max_levels = max(1, *(len(r.grid_levels) for r in rules))
    dyn = np.zeros((n, max_rows, 2))
    levels = np.zeros((n, max_levels))
    for i, r in enumerate(rules):
        if r.dynamic_take_profit:
            dyn[i, : len(r.dynamic_take_profit)] = r.dynamic_take_profit
        levels[i, : len(r.grid_levels)] = r.grid_levels

    def column(name: str, dtype: type) -> np.ndarray:
        return np.array([getattr(r, name) for r in rules], dtype=dtype)

    return RuleTable(
        column("stop_loss_ratio", np.float64),
        column("initial_take_profit_ratio", np.float64),
        column("initial_take_profit_fraction", np.float64),
        np.ascontiguousarray(dyn[:, :, 0]),
        np.ascontiguousarray(dyn[:, :, 1]),
        np.array([len(r.dynamic_take_profit) for r in rules], dtype=np.int64),
        column("grid_enabled", np.bool_),
        levels,
        np.array([len(r.grid_levels) for r in rules], dtype=np.int64),
        column("position_unit", np.float64),
        column("max_position_value", np.float64),
        column("price_limits", np.bool_),
    )


def table_rows(table: RuleTable, start: int, stop: int) -> RuleTable:
    """Rows ``start:stop`` of a rule table (a chunk of a sweep)."""
    return RuleTable(*(np.ascontiguousarray(a[start:stop]) for a in table))


def rule_params(rules: RuleSettings) -> RuleParams:
    """The kernel's parameters of one rule set (the engine's; a backtest reads the same row)."""
    read_row = getattr(rule_params_at_nb, "py_func", rule_params_at_nb)  # plain Python: no compile
    return read_row(rule_table([rules]), 0)


__all__ = ["rule_params", "rule_table", "table_rows"]
