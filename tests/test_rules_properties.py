"""Invariants of the kernel over random holdings and price paths (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniqmt_lab import rules as R
from miniqmt_lab.config import FeeSettings, RuleSettings
from miniqmt_lab.market import fee_params
from miniqmt_lab.rules.params import rule_params
from miniqmt_lab.schema import Rule

F = fee_params(FeeSettings())

prices = st.floats(min_value=0.5, max_value=300.0, allow_nan=False, allow_infinity=False)
rule_settings = st.builds(
    RuleSettings,
    stop_loss_ratio=st.floats(-0.5, -0.01),
    initial_take_profit_ratio=st.floats(0.01, 0.5),
    initial_take_profit_fraction=st.floats(0.05, 1.0),
    position_unit=st.floats(1000.0, 60000.0),
    max_position_value=st.just(80000.0),
)


@st.composite
def holdings(draw):
    volume = draw(st.integers(0, 200)) * 100 + draw(st.sampled_from([0, 0, 0, 50]))
    if volume == 0:
        return R.empty_holding_nb()
    available = draw(st.integers(0, volume))
    cost = draw(prices)
    return R.holding(
        volume,
        available,
        cost,
        base_cost=draw(prices),
        high=max(cost, draw(prices)),
        tp_done=draw(st.booleans()),
        grid_k=draw(st.integers(0, 2)),
    )


BOARDS = st.sampled_from([R.LotRule(100, 100, 100), R.LotRule(200, 1, 200), R.LotRule(100, 1, 100)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holdings(), prices, st.floats(0.0, 200_000.0), BOARDS, rule_settings)
def test_decision_volume_is_legal(state, p, cash, lots, rs):
    """Every order the kernel sizes is one the board accepts (rules.md, "Order sizes by board")."""
    params = rule_params(rs)
    state = R.observe_price_nb(state, p)
    rule, volume, outcome = R.decide_nb(state, p, cash, lots, math.nan, math.nan, params, F)
    assert volume >= 0
    if volume == 0:
        return
    assert outcome == R.OUT_OK
    if Rule(rule).sells:
        assert volume <= state.available
        on_board = volume % lots.step == 0 and volume >= lots.min_sell
        assert on_board or volume == state.available
    else:
        assert rule == R.RULE_GRID_BUY
        assert volume % lots.step == 0 and volume >= lots.min_buy
        # the largest size that fits: one more step would break a limit
        bigger = volume + lots.step
        fits_more = (bigger * p + R.fees_nb(bigger * p, False, F) <= cash + 1e-9
                     and (state.volume + bigger) * p <= params.max_position_value + 1e-9
                     and bigger <= math.floor(params.position_unit / p / lots.step + 1e-9) * lots.step)
        assert not fits_more
        fee = R.fees_nb(volume * p, False, F)
        assert volume * p + fee <= cash + 1e-6
        assert (state.volume + volume) * p <= params.max_position_value + 1e-6


@settings(max_examples=200, deadline=None)
@given(st.lists(prices, min_size=1, max_size=60), rule_settings, st.floats(5_000.0, 500_000.0))
def test_random_path_keeps_cash_fees_and_shares_consistent(path, rs, init_cash):
    """Drive one stock through a path: entry, then rules; T+1 roll every 4 ticks."""
    params = rule_params(rs)
    state, cash = R.empty_holding_nb(), init_cash
    realised_total, fees_total = 0.0, 0.0
    for i, p in enumerate(path):
        if i % 4 == 0:
            state = R.roll_day_nb(state)
        if state.volume == 0:
            rule, v, _ = R.decide_entry_nb(state, p, cash, R.LotRule(100, 100, 100), math.nan, params, F)
        else:
            state = R.observe_price_nb(state, p)
            rule, v, _ = R.decide_nb(state, p, cash, R.LotRule(100, 100, 100), math.nan, math.nan, params, F)
        if v == 0:
            continue
        if Rule(rule).sells:
            assert v <= state.available
            state, cash, fee, realised = R.apply_sell_nb(state, cash, p, v, rule, F)
            realised_total += realised
        else:
            state, cash, fee = R.apply_buy_nb(state, cash, p, v, rule, F)
        fees_total += fee
        assert fee >= 0
        assert cash >= -1e-6
        assert 0 <= state.available <= state.volume
    # cash + cost of holdings = initial cash + realised P&L - fees
    assert cash + state.cost * state.volume == pytest.approx(
        init_cash + realised_total - fees_total, abs=1e-4
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holdings(), st.floats(0.0, 1.0), rule_settings)
def test_no_rule_fires_inside_the_quiet_band(state, where, rs):
    """The backtest loop skips a tick inside ``quiet_band_nb`` without calling the rules: they must agree."""
    if state.volume == 0:
        return
    params = rule_params(rs)
    lo, hi = R.quiet_band_nb(state, params)
    top = min(hi, state.high)
    if not lo < top:
        return
    p = lo + (top - lo) * where
    if lo < p < hi and p <= state.high:
        rule, _, _ = R.decide_nb(R.observe_price_nb(state, p), p, 1e9, R.LotRule(100, 100, 100), math.nan,
                                 math.nan, params, F)
        assert rule == R.RULE_NONE
    # just outside a finite bound, a rule may fire: the band is tight, not merely safe
    edge = lo * (1 - 1e-6)
    assert R.decide_nb(R.observe_price_nb(state, edge), edge, 1e9, R.LotRule(100, 100, 100), math.nan, math.nan,
                       params, F)[0] != R.RULE_NONE or edge > state.high or lo <= 0
