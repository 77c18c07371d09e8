"""Headless round-trips of the panel's tables (paging, filtering, colours, prices seen long ago) and the
manual order form, against the engine-faced double."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from widgets_support import CLOCK, FakeEngine, many_trades, open_panel, wait_until

from miniqmt_lab.errors import InsufficientCash, InsufficientPosition, InvalidStockCode
from miniqmt_lab.widgets import EngineControlPanel, OrderForm
from miniqmt_lab.widgets._html import GAIN, LOSS, plural
from miniqmt_lab.widgets._runner import CommandRunner
from miniqmt_lab.widgets._table import filter_rows

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def paper() -> FakeEngine:
    return FakeEngine("paper")


@pytest.fixture
def panel(paper: FakeEngine):
    p = open_panel(paper)
    yield p
    p.close()


@pytest.fixture
def live():
    engine = FakeEngine("live")
    engine.broker = engine.broker.__class__(connected=True, name="QmtBroker", account="8800012345")  # masked on show
    p = open_panel(engine)
    yield p, engine
    p.close()


def body_rows(html: str) -> list[str]:
    """The text of each body row of a rendered table."""
    body = html.split("<tbody>", 1)[1] if "<tbody>" in html else ""
    return [re.sub(r"<[^>]+>", " ", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)]


def test_tables_follow_engine_and_colour_gains_red(panel: EngineControlPanel, paper: FakeEngine) -> None:
    assert "no positions" in panel.positions.html.value
    paper.open_position()
    wait_until(lambda: all("600000.SH" in view.html.value for view in (panel.positions, panel.trades, panel.signals)),
               panel.watch)
    html = panel.positions.html.value
    for text in ("浦发银行", "+8.00%", f"color: {GAIN}", "✓", "10.56", "9.30", "9.25", "10,800"):
        assert text in html, text
    assert 'class="mq-stale"' not in html  # a price seen 3 s ago carries no time
    trades = panel.trades.html.value
    assert "entry" in trades and "5.10" in trades and f"color: {GAIN}" in trades  # a buy is red
    signals = panel.signals.html.value
    assert "not_executed" in signals and "auto trading is off" in signals
    assert f"color: {LOSS}" in signals  # the sell signal is green
    assert signals.index("stop_loss") < signals.index("entry")  # latest first

    paper.open_position(price=9.5, profit_ratio=-0.05, market_value=9500.0)
    wait_until(lambda: "-5.00%" in panel.positions.html.value, panel.positions.html)
    assert f"color: {LOSS}" in panel.positions.html.value and f"color: {GAIN}; font-weight" not in \
        panel.positions.html.value


def test_old_and_missing_prices_are_marked_with_their_time(panel: EngineControlPanel, paper: FakeEngine) -> None:
    """After a restart the last known prices come back with the time they were seen, until a tick comes."""
    paper.open_position(price_time=dt.datetime(2024, 1, 1, 15, 0, 0, tzinfo=CLOCK.tzinfo))
    wait_until(lambda: 'class="mq-stale"' in panel.positions.html.value, panel.positions.html)
    html = panel.positions.html.value
    assert "@01-01 15:00" in html and "last price seen 2024-01-01 15:00:00" in html

    paper.open_position(price_time=CLOCK - dt.timedelta(minutes=5))  # today, but not lately
    wait_until(lambda: "@09:55:07" in panel.positions.html.value, panel.positions.html)

    paper.open_position(price_time=None, price=10.0, profit_ratio=0.0)  # never priced: valued at cost
    wait_until(lambda: "(cost)" in panel.positions.html.value, panel.positions.html)

    paper.time = None  # a restarted replay engine before its first tick: every price is an old one
    paper.open_position(price_time=CLOCK)
    wait_until(lambda: "@01-02 10:00" in panel.positions.html.value, panel.positions.html)

    paper.time = CLOCK
    paper.open_position(price_time=CLOCK)  # a fresh tick: the mark goes
    wait_until(lambda: 'class="mq-stale"' not in panel.positions.html.value, panel.positions.html)


def test_long_tables_page_in_a_box_of_fixed_height(panel: EngineControlPanel, paper: FakeEngine) -> None:
    trades = panel.trades
    paper.set_trades(many_trades(120))
    wait_until(lambda: "1–50 of 120 trades" in trades.info.value, trades.info)
    assert "page 1 of 3" in trades.info.value
    assert 'class="mq-scroll" style="max-height: 320px"' in trades.html.value
    rows = body_rows(trades.html.value)
    assert len(rows) == 50 and "11.19" in rows[0]  # the newest trade first
    assert trades.prev_button.disabled and not trades.next_button.disabled

    trades.next_button.click()  # widget -> state
    assert trades.view.page == 1
    assert "51–100 of 120" in trades.info.value and "10.69" in body_rows(trades.html.value)[0]
    assert not trades.prev_button.disabled

    trades.view.page = 2  # state -> widget
    rows = body_rows(trades.html.value)
    assert len(rows) == 20 and "10.00" in rows[-1] and trades.next_button.disabled
    trades.next_button.click()  # past the last page: stays
    assert trades.view.page == 2

    trades.view.page = 10  # clamped to the last page
    assert trades.view.page == 2 and "101–120 of 120" in trades.info.value

    paper.set_trades(many_trades(130))  # new rows keep the reader's page
    wait_until(lambda: "of 130 trades" in trades.info.value, trades.info)
    assert trades.view.page == 2 and "101–130 of 130" in trades.info.value

    paper.set_trades(many_trades(30))  # fewer rows than the page needs: the last page there is
    wait_until(lambda: ">30 trades<" in trades.info.value, trades.info)
    assert trades.view.page == 0 and trades.next_button.disabled and trades.prev_button.disabled


def test_filter_words_round_trip_and_survive_refreshes(panel: EngineControlPanel, paper: FakeEngine) -> None:
    trades = panel.trades
    paper.set_trades(many_trades(120))
    wait_until(lambda: "of 120 trades" in trades.info.value, trades.info)
    trades.view.page = 1

    trades.filter.value = "000001"  # widget -> state, back to the first page
    assert trades.view.query == "000001" and trades.view.page == 0
    assert "1–50 of 60 trades · page 1 of 2 (filtered from 120)" in trades.info.value
    assert all("000001.SZ" in row for row in body_rows(trades.html.value))

    trades.view.query = "SELL 600000"  # state -> widget; every word must match
    assert trades.filter.value == "SELL 600000"
    kept = trades.rows
    assert len(kept) == 30 and set(kept["side"]) == {"SELL"} and set(kept["stock_code"]) == {"600000.SH"}
    assert f"color: {LOSS}" in trades.html.value and f"color: {GAIN}" not in trades.html.value

    paper.set_trades(many_trades(124))  # a refresh keeps the filter
    wait_until(lambda: "filtered from 124" in trades.info.value, trades.info)
    assert trades.filter.value == "SELL 600000" and len(trades.rows) == 31

    trades.filter.value = "no such stock"
    assert "no trades match (filtered from 124)" in trades.info.value
    assert "mq-empty" in trades.html.value

    trades.filter.value = ""
    assert "1–50 of 124 trades" in trades.info.value


def test_signal_filter_finds_outcomes_and_reasons(panel: EngineControlPanel, paper: FakeEngine) -> None:
    paper.open_position()
    signals = panel.signals
    wait_until(lambda: ">2 signals<" in signals.info.value, signals.info)
    signals.filter.value = "AUTO TRADING"  # case does not matter
    assert len(signals.rows) == 1 and signals.rows["rule"].iloc[0] == "stop_loss"
    assert "1 signal (filtered from 2)" in signals.info.value


def test_filter_rows_matches_every_word_in_any_column() -> None:
    frame = many_trades(8)
    assert len(filter_rows(frame, "")) == 8
    assert list(filter_rows(frame, "buy 000001")["stock_code"].unique()) == ["000001.SZ"]
    assert filter_rows(frame, "entry stop_loss").empty  # no trade is both


def test_plural() -> None:
    assert (plural(0, "trade"), plural(1, "trade"), plural(2_500, "trade")) == ("0 trades", "1 trade",
                                                                                 "2,500 trades")


# -- the manual order form ----------------------------------------------------------------------------


def test_manual_orders_reach_engine_and_errors_show_in_panel(panel: EngineControlPanel, paper: FakeEngine) -> None:
    form = panel.order_form
    form.code.value = "600000.SH"
    form.volume.value = 200
    form.submit.click()  # paper: sent at once, no question asked
    assert not form.confirm.asking
    assert panel.runner.wait(5)
    assert paper.calls[-1] == ("buy", "600000.SH", 200, None, None)
    assert "order-1" in form.message.value

    form.volume.value = 0
    form.amount.value = 20000
    form.price.value = 10.5
    form.submit.click()
    assert panel.runner.wait(5)
    assert paper.calls[-1] == ("buy", "600000.SH", None, 20000.0, 10.5)

    form.side.value = "SELL"
    assert form.amount.disabled
    form.volume.value = 100
    form.price.value = 0
    form.submit.click()
    assert panel.runner.wait(5)
    assert paper.calls[-1] == ("sell", "600000.SH", 100, None)
    assert "order-2" in form.message.value

    paper.fail_buy = InsufficientCash("cash 1,000.00 < 20,010.00 needed")
    form.side.value = "BUY"
    form.submit.click()
    assert panel.runner.wait(5)
    assert "InsufficientCash (insufficient_cash)" in form.message.value
    assert "Traceback" not in form.message.value

    paper.fail_buy = InvalidStockCode("'12345' is not an A-share code")
    form.submit.click()
    assert panel.runner.wait(5)
    assert "InvalidStockCode" in form.message.value

    n = len(paper.calls)
    form.code.value = " "
    form.submit.click()
    assert len(paper.calls) == n and "enter a stock code" in form.message.value


def test_selling_more_than_held_shows_what_is_held(panel: EngineControlPanel, paper: FakeEngine) -> None:
    def sell(code: str, volume: int, *, price: float | None = None) -> str:
        raise InsufficientPosition(f"sell {volume} {code}: you hold 1000 (300 available now)")

    paper.sell = sell  # type: ignore[method-assign]
    form = panel.order_form
    form.code.value, form.side.value, form.volume.value = "600000.SH", "SELL", 5000
    form.submit.click()
    assert panel.runner.wait(5)
    assert "you hold 1000 (300 available now)" in form.message.value
    assert "whole lot" not in form.message.value


def test_order_form_fields_line_up(panel: EngineControlPanel) -> None:
    """Every field's label has the same width, the side's as well (it sat above its buttons)."""
    form = panel.order_form
    widths = {f.style.description_width for f in (form.code, form.volume, form.amount, form.price)}
    assert widths == {form.side_label.layout.width}
    assert not form.side.description and "side" in form.side_label.value


def test_live_manual_order_is_sent_only_after_yes(live: tuple[EngineControlPanel, FakeEngine]) -> None:
    panel, engine = live
    form = panel.order_form
    assert "mq-order-confirm-box" in form.confirm._dom_classes
    assert "mq-order-confirm" in form.confirm.yes._dom_classes and "mq-order-cancel" in form.confirm.no._dom_classes
    assert form.confirm.yes.description == "Yes, send to the LIVE account"
    assert not form.confirm.asking

    form.code.value = "600000.SH"
    form.volume.value = 200
    form.price.value = 10.5
    assert form.place() is None
    assert panel.runner.wait(5)
    assert engine.calls == []
    assert form.confirm.asking
    question = form.confirm.question.value
    for text in ("BUY", "600000.SH", "200 shares", "¥10.50", "LIVE", "88******45"):
        assert text in question, text
    assert "8800012345" not in question
    assert "confirm the LIVE order" in form.message.value

    form.confirm.yes.click()
    assert panel.runner.wait(5)
    assert engine.calls == [("buy", "600000.SH", 200, None, 10.5)]
    assert not form.confirm.asking and "order-1" in form.message.value
    form.confirm.yes.click()  # a second click on the hidden button sends nothing more
    assert panel.runner.wait(5)
    assert engine.calls == [("buy", "600000.SH", 200, None, 10.5)]

    form.volume.value = 0  # a buy by amount at the latest price
    form.amount.value = 20000
    form.price.value = 0
    form.submit.click()
    assert "for ¥20,000.00" in form.confirm.question.value and "latest price" in form.confirm.question.value
    form.confirm.yes.click()
    assert panel.runner.wait(5)
    assert engine.calls[-1] == ("buy", "600000.SH", None, 20000.0, None)
    assert len(engine.calls) == 2


def test_live_manual_order_cancel_or_edit_sends_nothing(live: tuple[EngineControlPanel, FakeEngine]) -> None:
    panel, engine = live
    form = panel.order_form
    form.code.value = "600000.SH"
    form.side.value = "SELL"
    form.volume.value = 300
    form.submit.click()
    for text in ("SELL", "600000.SH", "300 shares", "at the latest price", "88******45"):
        assert text in form.confirm.question.value, text

    form.confirm.no.click()
    assert panel.runner.wait(5)
    assert engine.calls == [] and not form.confirm.asking and "nothing sent" in form.message.value

    form.submit.click()  # asked again, then the form is edited: Yes must not send either order
    assert form.confirm.asking
    form.volume.value = 3000
    assert not form.confirm.asking and "nothing sent" in form.message.value
    form.confirm.yes.click()
    assert panel.runner.wait(5)
    assert engine.calls == []

    form.submit.click()  # the edited order, confirmed, is the one sent
    assert "3,000 shares" in form.confirm.question.value
    form.confirm.yes.click()
    assert panel.runner.wait(5)
    assert engine.calls == [("sell", "600000.SH", 3000, None)]


def test_order_form_without_a_known_mode_asks_first(paper: FakeEngine) -> None:
    """A form with no watch (mode unknown) treats the engine as live."""
    runner = CommandRunner()
    form = OrderForm(paper, runner)
    try:
        form.code.value = "<b>600000.SH"
        form.volume.value = 100
        form.submit.click()
        assert runner.wait(5)
        assert paper.calls == [] and form.confirm.asking
        assert "not known" in form.confirm.question.value
        assert "&lt;b&gt;600000.SH" in form.confirm.question.value  # user input is escaped
        form.confirm.yes.click()
        assert runner.wait(5)
        assert paper.calls == [("buy", "<b>600000.SH", 100, None, None)]
    finally:
        runner.shutdown()
        form.close()
