"""Headless round-trips of the signal replay panel on a recorded paper session and on stored bars."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest

from miniqmt_lab.bars import BarStore, sample_bars
from miniqmt_lab.config import Settings
from miniqmt_lab.factory import build_engine
from miniqmt_lab.widgets import SignalReplayPanel, bars_session, engine_session, recorded_sessions
from miniqmt_lab.widgets._html import GAIN, LOSS
from miniqmt_lab.widgets.replay import RERUN_BUY, RERUN_SELL, RULES, SIGNAL_TRACE
from miniqmt_lab.widgets.sessions import holding_path

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A finished paper session with auto trading on: (settings, session, engine positions at the end)."""
    work = tmp_path_factory.mktemp("replay")
    settings = Settings().with_values(data_dir=str(work), auto_trading=True)
    engine = build_engine(settings, replay=sample_bars(n_stocks=5, n_days=90, seed=11))
    engine.start()
    assert engine.wait_idle(45)
    positions = engine.positions()
    engine.stop()
    return settings, engine_session(engine), positions


@pytest.fixture
def panel(recorded):
    p = SignalReplayPanel([recorded[1]])
    yield p
    p.close()


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<style>.*?</style>|<[^>]+>", " ", html, flags=re.S))


def test_position_path_ends_at_the_engines_book(recorded) -> None:
    """Folding the journal's ticks and the recorded trades through the kernel gives the engine's final book."""
    _, session, positions = recorded
    assert not positions.empty
    for code in session.codes():
        path = holding_path(
            session.ticks[session.ticks["stock_code"] == code],
            session.trades[session.trades["stock_code"] == code],
            session.fees,
        )
        final = path.iloc[-1]
        held = positions[positions["stock_code"] == code]
        if held.empty:
            assert final["volume"] == 0
            continue
        row = held.iloc[0]
        assert (final["volume"], final["available"], final["grid_k"]) == (row["volume"], row["available"],
                                                                           row["grid_k"])
        assert final["cost"] == pytest.approx(row["cost"])
        assert final["high"] == pytest.approx(row["high"])
        assert bool(final["tp_done"]) == bool(row["tp_done"])


def test_panel_shows_session_chart_and_markers(panel: SignalReplayPanel, recorded) -> None:
    session = recorded[1]
    code = panel.code_pick.value
    assert code in set(session.trades["stock_code"])  # a traded stock comes first
    bars = session.bars(code)
    assert panel.slider.max == len(bars) - 1
    assert list(panel.figure.data[0].close) == pytest.approx(list(bars["close"]))
    mine = session.trades[session.trades["stock_code"] == code]
    marked = {rule: len(panel.figure.data[i].x) for i, rule in enumerate(RULES, start=1)}
    assert marked == {rule: int((mine["rule"] == rule).sum()) for rule in RULES}
    signals = session.signals[(session.signals["stock_code"] == code) & (session.signals["outcome"] != "executed")]
    assert len(panel.figure.data[SIGNAL_TRACE].x) == len(signals)
    assert "trades differ" not in panel.compare.value and len(mine) > 0  # no rerun yet: recorded trades only
    candles = panel.figure.data[0]
    assert (candles.increasing.line.color, candles.decreasing.line.color) == (GAIN, LOSS)  # red up, green down
    stop_loss = panel.figure.data[1 + RULES.index("stop_loss")]
    assert stop_loss.marker.color == LOSS and set(stop_loss.marker.symbol) <= {"triangle-down"}  # sells
    assert panel.figure.layout.width is None


def test_slider_and_buttons_move_the_cursor_and_position(panel: SignalReplayPanel, recorded) -> None:
    session = recorded[1]
    code = panel.code_pick.value
    bars = session.bars(code)
    first_trade = session.trades[session.trades["stock_code"] == code]["time"].min()

    panel.next_trade_button.click()
    i = panel.state.cursor
    assert bars.index[i] == first_trade and panel.slider.value == i
    assert first_trade.strftime("%Y-%m-%d") in panel.cursor_label.value
    assert panel.figure.layout.shapes[0].x0 == bars.index[i]
    held = panel.state.path.iloc[i]
    assert held["volume"] > 0
    assert f"{int(held['volume']):,d}" in text(panel.position.value)

    panel.next_button.click()
    assert panel.state.cursor == i + 1
    panel.prev_button.click()
    panel.prev_button.click()
    assert panel.state.cursor == i - 1

    panel.slider.value = 0  # scrubbing reaches the state
    assert panel.state.cursor == 0
    assert "bar 1 of" in panel.cursor_label.value


def test_rerun_with_same_rules_reproduces_the_recording(panel: SignalReplayPanel) -> None:
    panel.rerun_button.click()
    assert panel.runner.wait(30)
    assert re.search(r">0 of \d+ trades differ", panel.compare.value)
    assert "rerun" in text(panel.position.value)


def test_rerun_with_changed_parameters_compares_side_by_side(panel: SignalReplayPanel, recorded) -> None:
    session = recorded[1]
    panel.form.sliders["stop_loss_ratio"].value = -0.02
    panel.form.sliders["initial_take_profit_ratio"].value = 0.02
    panel.rerun_button.click()
    assert panel.runner.wait(30)
    expected = session.rerun(Settings().with_values(stop_loss_ratio=-0.02, initial_take_profit_ratio=0.02).rules)
    mine = expected[expected["stock_code"] == panel.code_pick.value]
    assert panel.state.rerun_trades.reset_index(drop=True).equals(mine.reset_index(drop=True))
    buys, sells = (mine["side"] == "BUY").sum(), (mine["side"] == "SELL").sum()
    assert (len(panel.figure.data[RERUN_BUY].x), len(panel.figure.data[RERUN_SELL].x)) == (buys, sells)
    differ = re.search(r">(\d+) of (\d+) trades differ", panel.compare.value)
    assert differ and int(differ.group(1)) > 0
    assert "#fff4d6" in panel.compare.value  # changed rows highlighted
    assert f"rerun: {len(expected)} trades" in panel.message.value

    panel.form.grid_sliders[1].value = 0.98  # above level 1: invalid
    panel.rerun_button.click()
    assert "rules.grid_levels[1]" in panel.message.value


def test_picking_another_stock_keeps_the_rerun(panel: SignalReplayPanel) -> None:
    panel.rerun_button.click()
    assert panel.runner.wait(30)
    other = panel.code_pick.options[1]
    panel.code_pick.value = other
    assert panel.state.code == other and panel.state.rerun_trades is not None
    assert set(panel.state.rerun_trades["stock_code"]) <= {other}
    assert panel.state.cursor == 0


def test_stored_bars_of_a_stock_and_date_range_become_a_session() -> None:
    bars = sample_bars(n_stocks=4, n_days=120, seed=5)
    store = BarStore(":memory:")
    store.write_frame(bars)
    panel = SignalReplayPanel(store=store)
    try:
        assert panel.session_pick.options == ()
        panel.store_code.value = "600000.SH"
        panel.store_start.value = dt.date(2023, 2, 1)
        panel.store_end.value = dt.date(2023, 5, 31)
        panel.load_button.click()
        assert panel.runner.wait(30)
        assert len(panel.session_pick.options) == 1 and panel.code_pick.value == "600000.SH"
        assert "loaded backtest 600000.SH" in panel.message.value
        chosen = store.query("600000.SH", "2023-02-01", "2023-05-31")
        assert panel.slider.max == len(chosen) - 1
        expected = bars_session(chosen).trades
        assert panel.state.trades.reset_index(drop=True).equals(expected.reset_index(drop=True))

        panel.store_start.value = dt.date(2030, 1, 1)
        panel.store_end.value = dt.date(2030, 2, 1)
        panel.load_button.click()
        assert panel.runner.wait(30)
        assert "no stored bars" in panel.message.value and len(panel.session_pick.options) == 1

        panel.store_end.value = dt.date(2029, 1, 1)  # before the start
        panel.load_button.click()
        assert "date range is empty" in panel.message.value
    finally:
        panel.close()


def test_recorded_sessions_are_found_in_the_data_folder(recorded) -> None:
    settings, session, _ = recorded
    (found,) = recorded_sessions(settings)
    assert found.name.startswith("paper session")
    assert found.trades.equals(session.trades)
    pd.testing.assert_frame_equal(found.ticks, session.ticks)
