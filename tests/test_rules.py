"""The rule kernel, rule by rule and edge by edge.

The whole file runs twice: compiled (the normal run) and as plain Python (``test_kernel_without_numba``
reruns it in a subprocess with ``NUMBA_DISABLE_JIT=1``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from miniqmt_lab import rules as R
from miniqmt_lab.config import FeeSettings, RuleSettings
from miniqmt_lab.market import fee_params
from miniqmt_lab.rules.params import rule_params

P = rule_params(RuleSettings())
F = fee_params(FeeSettings())
NO_LIMIT = np.nan
CASH = 1_000_000.0
MAIN = R.LotRule(100, 100, 100)
STAR = R.LotRule(200, 1, 200)
BJ = R.LotRule(100, 1, 100)


def decide(state, p, cash=CASH, lots=MAIN, up=NO_LIMIT, down=NO_LIMIT, params=P):
    return R.decide_nb(state, p, cash, lots, up, down, params, F)


def held(volume=2000, available=None, cost=10.0, **kw):
    return R.holding(volume, volume if available is None else available, cost, **kw)


# -- stop loss ---------------------------------------------------------------------------------


def test_stop_loss_fires_exactly_at_threshold_and_sells_all_available():
    assert decide(held(), 9.25) == (R.RULE_STOP_LOSS, 2000, R.OUT_OK)  # 9.25/10 - 1 == -0.075
    assert decide(held(), 9.26)[0] == R.RULE_GRID_BUY  # not the stop: the grid level 9.30 decides


def test_stop_loss_with_nothing_available_decides_the_tick_but_sells_nothing():
    # bought today (T+1): the stop fires, sells 0, and no lower rule (grid at 9.30) is tried
    assert decide(held(available=0), 9.0) == (R.RULE_STOP_LOSS, 0, R.OUT_NOTHING_AVAILABLE)


def test_stop_loss_sells_the_whole_available_remainder():
    # 2150 held, 1050 available (1100 bought today): the odd 50 goes with the whole available remainder
    assert decide(held(2150, 1050), 9.0) == (R.RULE_STOP_LOSS, 1050, R.OUT_OK)
    assert decide(held(2150, 2150), 9.0) == (R.RULE_STOP_LOSS, 2150, R.OUT_OK)
    assert decide(held(250, 150), 9.0, lots=STAR) == (R.RULE_STOP_LOSS, 150, R.OUT_OK)


def test_stop_loss_blocked_at_down_limit():
    assert decide(held(), 9.0, down=9.0) == (R.RULE_STOP_LOSS, 0, R.OUT_PRICE_LIMIT)
    assert decide(held(), 9.01, down=9.0) == (R.RULE_STOP_LOSS, 2000, R.OUT_OK)


# -- first take-profit -------------------------------------------------------------------------


def test_first_take_profit_at_threshold_sells_fraction_rounded_to_lot():
    assert decide(held(2000), 10.6) == (R.RULE_TP_INITIAL, 1200, R.OUT_OK)
    assert decide(held(2000), 10.59)[0] == R.RULE_NONE
    assert decide(held(1900), 10.6) == (R.RULE_TP_INITIAL, 1100, R.OUT_OK)  # 1140 -> 1100


def test_first_take_profit_rounding_to_zero_sells_all_available():
    assert decide(held(100), 10.7) == (R.RULE_TP_INITIAL, 100, R.OUT_OK)  # 60 -> 0 -> all 100


def test_first_take_profit_capped_at_available():
    assert decide(held(2000, 1000), 10.7) == (R.RULE_TP_INITIAL, 1000, R.OUT_OK)
    assert decide(held(2000, 1050), 10.7) == (R.RULE_TP_INITIAL, 1050, R.OUT_OK)  # the whole odd remainder


@pytest.mark.parametrize(
    ("volume", "available", "lots", "sold"),
    [
        (300, 300, STAR, 200),  # 60% = 180 -> below STAR's 200 minimum: raised to 200
        (200, 200, STAR, 200),  # 120 -> 200: the whole holding
        (250, 150, STAR, 150),  # 150 -> raised to 200 -> more than available: the whole available remainder
        (1000, 1000, STAR, 600),  # 1-share steps above the minimum
        (337, 337, STAR, 202),  # 202.2 -> 202
        (150, 150, BJ, 100),  # 90 -> raised to BJ's 100 minimum
        (1001, 1001, BJ, 600),  # 600.6 -> 600
        (1050, 1050, MAIN, 600),  # 630 -> whole lots: 600
    ],
)
def test_first_take_profit_rounds_to_what_the_board_allows(volume, available, lots, sold):
    assert decide(held(volume, available), 10.7, lots=lots) == (R.RULE_TP_INITIAL, sold, R.OUT_OK)
    assert R.partial_sell_nb(volume, available, 0.6, lots) == sold


def test_first_take_profit_runs_once():
    state = held(2000, tp_done=True, high=10.6)
    assert decide(state, 10.6)[0] != R.RULE_TP_INITIAL


# -- dynamic take-profit -----------------------------------------------------------------------


def test_dynamic_take_profit_uses_last_matching_tier():
    # high 11.2 on cost 10: m = 0.12 -> tier (0.10, 0.93): level 10.416
    state = held(800, tp_done=True, high=11.2)
    assert R.dynamic_exit_level_nb(11.2, 10.0, P) == pytest.approx(11.2 * 0.93)
    assert decide(state, 10.42)[0] == R.RULE_NONE
    assert decide(state, 10.416) == (R.RULE_TP_DYNAMIC, 800, R.OUT_OK)


def test_dynamic_take_profit_tier_boundary_is_inclusive():
    state = held(800, tp_done=True, high=10.5)  # m == 0.05 exactly -> (0.05, 0.96): level 10.08
    assert decide(state, 10.08) == (R.RULE_TP_DYNAMIC, 800, R.OUT_OK)


def test_dynamic_take_profit_needs_tp_done_and_a_matching_row():
    assert decide(held(800, tp_done=False, high=11.2), 10.3)[0] == R.RULE_NONE
    below_table = held(800, tp_done=True, high=10.4)  # m = 0.04 < 0.05
    assert decide(below_table, 10.0)[0] == R.RULE_NONE


def test_dynamic_take_profit_counts_the_current_tick_in_high():
    state = held(800, tp_done=True, high=10.0)
    # the tick itself sets high = 10.5 (m = 0.05): level 10.08 < 10.5, no exit on that tick
    assert decide(state, 10.5)[0] == R.RULE_NONE
    assert R.observe_price_nb(state, 10.5).high == 10.5


@pytest.mark.parametrize(
    ("state", "p", "reserved", "lots"),
    [
        (held(800, tp_done=True, high=10.0), 10.5, 0, MAIN),  # the tick raises high first
        (held(2000, cost=10.0), 8.9, 0, MAIN),  # stop loss on all available
        (held(2000, cost=10.0), 8.9, 1500, MAIN),  # only what no order holds
        (held(2000, cost=10.0), 8.9, 2000, MAIN),  # nothing free: decided, nothing sold
        (held(1000, cost=10.0), 11.5, 300, STAR),  # first take-profit in 1-share steps
        (held(2000, cost=10.0), 9.45, 0, BJ),  # grid buy
    ],
)
def test_the_monitors_one_call_is_observe_then_decide_on_the_free_shares(state, p, reserved, lots):
    observed = R.observe_price_nb(state, p)
    free = observed._replace(available=max(0, observed.available - reserved))
    expected = R.decide_nb(free, p, CASH, lots, NO_LIMIT, NO_LIMIT, P, F)
    got = R.observe_decide_nb(state, p, reserved, CASH, *lots, NO_LIMIT, NO_LIMIT, P, F)
    assert got == (observed, *expected)
    # the monitor's entry with plain tuples: the same answer
    plain = R.observe_decide_plain_nb(tuple(state), p, reserved, CASH, *lots, NO_LIMIT, NO_LIMIT, tuple(P), tuple(F))
    assert (R.HoldingState(*plain[0]), *plain[1:]) == got


# -- grid buys ---------------------------------------------------------------------------------


def test_grid_buy_at_level_sizes_by_position_unit():
    assert decide(held(2000), 9.3) == (R.RULE_GRID_BUY, 2100, R.OUT_OK)  # 20000/9.3 -> 2100
    assert decide(held(2000), 9.31)[0] == R.RULE_NONE


def test_grid_buy_capped_by_max_position_value():
    # 4000 held at 9.3: (4000 + v) * 9.3 <= 50000 -> v <= 1376 -> 1300
    assert decide(held(4000), 9.3) == (R.RULE_GRID_BUY, 1300, R.OUT_OK)
    assert decide(held(5300), 9.3) == (R.RULE_GRID_BUY, 0, R.OUT_MAX_POSITION)


def test_grid_buy_limited_by_cash_including_fees():
    # 2100 * 9.3 = 19530 + 5.2 fees; 15000 cash -> 1600 (14880 + 5.15)
    assert decide(held(2000), 9.3, cash=15000.0) == (R.RULE_GRID_BUY, 1600, R.OUT_OK)
    assert decide(held(2000), 9.3, cash=900.0) == (R.RULE_GRID_BUY, 0, R.OUT_NO_CASH)


def test_grid_exhaustion_and_second_level():
    cost_params = rule_params(RuleSettings(stop_loss_ratio=-0.5))
    state = held(2000, grid_k=1)
    assert decide(state, 9.3, params=cost_params)[0] == R.RULE_NONE
    assert decide(state, 8.6, params=cost_params)[0] == R.RULE_GRID_BUY
    assert decide(held(2000, grid_k=2), 6.0, params=cost_params)[0] == R.RULE_NONE


def test_grid_hangs_from_base_cost_not_average_cost():
    state = held(4100, cost=9.64, base_cost=10.0, grid_k=1)
    params = rule_params(RuleSettings(stop_loss_ratio=-0.5))
    assert decide(state, 8.6, params=params)[0] == R.RULE_GRID_BUY
    assert decide(state, 8.61, params=params)[0] == R.RULE_NONE


def test_grid_disabled_and_blocked_at_up_limit():
    off = rule_params(RuleSettings(grid_enabled=False))
    assert decide(held(), 9.3, params=off)[0] == R.RULE_NONE
    assert decide(held(), 9.3, up=9.3) == (R.RULE_GRID_BUY, 0, R.OUT_PRICE_LIMIT)


def test_star_board_minimum_buy_of_200():
    unit = rule_params(RuleSettings(position_unit=1500.0, max_position_value=50000.0))
    assert R.size_buy_nb(10.0, 0, CASH, MAIN, unit, F) == (100, R.OUT_OK)
    assert R.size_buy_nb(10.0, 0, CASH, STAR, unit, F) == (0, R.OUT_ZERO_LOT)


def test_star_and_bj_buys_size_in_one_share_steps():
    # 20000 / 61.3 = 326.26 -> 326 shares on STAR and BJ, 300 on a main board
    assert R.size_buy_nb(61.3, 0, CASH, STAR, P, F) == (326, R.OUT_OK)
    assert R.size_buy_nb(61.3, 0, CASH, BJ, P, F) == (326, R.OUT_OK)
    assert R.size_buy_nb(61.3, 0, CASH, MAIN, P, F) == (300, R.OUT_OK)
    # max_position_value 50000 with 500 held at 61.3: (500 + v) * 61.3 <= 50000 -> v <= 315
    assert R.size_buy_nb(61.3, 500, CASH, STAR, P, F) == (315, R.OUT_OK)
    # cash 10000: v * 61.3 + fees <= 10000 -> 163 shares, below STAR's 200: no cash; BJ buys 163
    assert R.size_buy_nb(61.3, 0, 10_000.0, STAR, P, F) == (0, R.OUT_NO_CASH)
    assert R.size_buy_nb(61.3, 0, 10_000.0, BJ, P, F) == (163, R.OUT_OK)


# -- entries -----------------------------------------------------------------------------------


def test_entry_only_when_not_held():
    empty = R.empty_holding_nb()
    assert R.decide_entry_nb(empty, 10.0, CASH, MAIN, NO_LIMIT, P, F) == (R.RULE_ENTRY, 2000, R.OUT_OK)
    assert R.decide_entry_nb(held(), 10.0, CASH, MAIN, NO_LIMIT, P, F)[0] == R.RULE_NONE
    assert R.decide_entry_nb(empty, 11.0, CASH, MAIN, 11.0, P, F) == (R.RULE_ENTRY, 0, R.OUT_PRICE_LIMIT)
    assert R.decide_entry_nb(empty, 250.0, CASH, MAIN, NO_LIMIT, P, F) == (R.RULE_ENTRY, 0, R.OUT_ZERO_LOT)


def test_invalid_prices_never_act():
    for bad in (np.nan, 0.0, -1.0):
        assert decide(held(), bad)[0] == R.RULE_NONE
        assert R.decide_entry_nb(R.empty_holding_nb(), bad, CASH, MAIN, NO_LIMIT, P, F)[0] == R.RULE_NONE


# -- fills, fees, T+1 ----------------------------------------------------------------------------


def test_fees_components_rounded_half_up():
    assert R.fee_parts_nb(20000.0, False, F) == (5.0, 0.0, 0.2)  # minimum commission
    assert R.fee_parts_nb(20000.0, True, F) == (5.0, 10.0, 0.2)
    assert R.fee_parts_nb(100_000.0, True, F) == (25.0, 50.0, 1.0)
    assert R.fee_parts_nb(30_450.0, False, F) == (7.61, 0.0, 0.3)  # 7.6125 -> 7.61; 0.3045 -> 0.30
    assert R.fee_parts_nb(30_500.0, False, F) == (7.63, 0.0, 0.31)  # 7.625 -> 7.63; 0.305 -> 0.31
    assert R.round_half_up_nb(0.125, 2) == 0.13


def test_buy_then_sell_state_transitions_and_cash():
    st, cash, fee = R.apply_buy_nb(R.empty_holding_nb(), CASH, 10.0, 2000, R.RULE_ENTRY, F)
    assert st == R.holding(2000, 0, 10.0, base_cost=10.0, high=10.0)
    assert fee == 5.2 and cash == pytest.approx(CASH - 20000 - 5.2)
    st = R.roll_day_nb(st)
    assert st.available == 2000
    st, cash, fee = R.apply_buy_nb(st, cash, 9.3, 2100, R.RULE_GRID_BUY, F)
    assert st.volume == 4100 and st.available == 2000 and st.grid_k == 1
    assert st.cost == pytest.approx((20000 + 19530) / 4100) and st.base_cost == 10.0
    st2, cash2, fee2, realised = R.apply_sell_nb(st, cash, 10.5, 1200, R.RULE_TP_INITIAL, F)
    assert st2.volume == 2900 and st2.available == 800 and st2.tp_done and st2.cost == st.cost
    assert fee2 == R.fees_nb(12600.0, True, F)
    assert realised == pytest.approx((10.5 - st.cost) * 1200)
    assert cash2 == pytest.approx(cash + 12600 - fee2)


def test_fills_with_known_fees_match_the_order_level_transitions():
    """A broker's fills carry the fees it charged; one fill of a whole order equals apply_*_nb."""
    st, cash, fee = R.apply_buy_nb(R.empty_holding_nb(), CASH, 10.0, 2000, R.RULE_ENTRY, F)
    assert R.fill_buy_nb(R.empty_holding_nb(), CASH, 10.0, 2000, R.RULE_ENTRY, fee) == (st, cash)
    st = R.roll_day_nb(st)
    sold, cash2, fee2, realised = R.apply_sell_nb(st, cash, 10.6, 1200, R.RULE_TP_INITIAL, F)
    assert R.fill_sell_nb(st, cash, 10.6, 1200, R.RULE_TP_INITIAL, fee2) == (sold, cash2, realised)
    # two parts of one order: the minimum commission is paid once, by the order, not by each part
    part1, c1 = R.fill_buy_nb(R.empty_holding_nb(), CASH, 10.0, 300, R.RULE_ENTRY, 5.2)
    part2, c2 = R.fill_buy_nb(part1, c1, 10.0, 1700, R.RULE_MANUAL, 0.0)
    assert part2.volume == 2000 and part2.cost == 10.0 and c2 == pytest.approx(CASH - 20000 - 5.2)


def test_full_exit_resets_every_field():
    st = R.holding(800, 800, 10.0, base_cost=9.0, high=12.0, tp_done=True, grid_k=2)
    after, *_ = R.apply_sell_nb(st, 0.0, 11.0, 800, R.RULE_TP_DYNAMIC, F)
    assert after == R.empty_holding_nb()
    reopened, *_ = R.apply_buy_nb(after, CASH, 8.0, 100, R.RULE_ENTRY, F)
    assert reopened.base_cost == 8.0 and reopened.grid_k == 0 and not reopened.tp_done


def test_high_only_rises_and_only_while_held():
    st = held(high=11.0)
    assert R.observe_price_nb(st, 10.5).high == 11.0
    assert R.observe_price_nb(st, 11.5).high == 11.5
    assert R.observe_price_nb(R.empty_holding_nb(), 11.5).high == 0.0


def test_limit_prices():
    assert R.limit_prices_nb(10.05, 0.10) == (11.06, 9.05)
    assert R.limit_prices_nb(10.0, 0.20) == (12.0, 8.0)
    up, down = R.limit_prices_nb(np.nan, 0.1)
    assert np.isnan(up) and np.isnan(down)


def test_first_matching_rule_wins_over_lower_rules():
    # price below both stop-loss and grid level: stop loss decides
    assert decide(held(), 9.0)[0] == R.RULE_STOP_LOSS
    # tp_done and price at dynamic level and r >= tp ratio: first TP is done, dynamic decides
    state = held(800, tp_done=True, high=13.0)  # m = 0.3 -> keep 0.85: level 11.05
    assert decide(state, 11.0)[0] == R.RULE_TP_DYNAMIC


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="already the plain-Python run")
def test_kernel_without_numba():
    """The same tests pass with the kernel running as plain Python."""
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    here = Path(__file__)
    files = [str(here), str(here.with_name("test_rules_properties.py"))]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
