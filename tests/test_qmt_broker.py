"""QmtBroker against the fake client: order life cycles, faults, reconnects and timeouts."""

from __future__ import annotations

import datetime as dt
import gc
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Callable

import pytest

from miniqmt_lab import market as mkt
from miniqmt_lab.config import Settings
from miniqmt_lab.errors import BrokerTimeout, OrderRejected, QmtUnavailable
from miniqmt_lab.protocols import Broker
from miniqmt_lab.qmt import QmtBroker
from miniqmt_lab.qmt.translate import (
    STRATEGY_NAME,
    TrackedOrder,
    fill_commission,
    order_remark,
    order_status,
    parse_remark,
)
from miniqmt_lab.schema import BrokerError, ConnectionChanged, Fill, OrderRequest, OrderStatus, OrderUpdate, Side
from miniqmt_lab.xtquant_double import FakeQmt, XtConstant

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("compiled_fees")]

ACCOUNT = "8800001234"
CODE = "600000.SH"
TIMEOUT = 1.0


@pytest.fixture
def settings(userdata):
    return Settings().with_values(
        simulation=False, account_id=ACCOUNT, qmt_userdata_path=str(userdata), call_timeout=TIMEOUT, session_id=4242
    )


@pytest.fixture
def qmt(userdata):
    fake = FakeQmt(account_id=ACCOUNT, userdata_path=userdata)
    fake.market.set_instrument(CODE, "浦发银行", prev_close=10.0)
    fake.market.set_price(CODE, 10.0)
    yield fake
    fake.release()


@pytest.fixture
def broker(settings, qmt):
    b = QmtBroker(settings, modules=qmt, reconnect_delay=0.02, reconnect_max_delay=0.1)
    b.connect()
    first = b.events.get(timeout=2)
    assert first == ConnectionChanged(True, "connected (session 4242)")
    yield b
    b.close()


def collect(broker: QmtBroker, until: Callable[[list], bool], timeout: float = 5.0) -> list:
    """Events from the broker until ``until(events)`` holds; fails the test on timeout."""
    events: list = []
    deadline = time.monotonic() + timeout
    while not until(events):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"condition not met within {timeout}s; events so far: {events}")
        try:
            events.append(broker.events.get(timeout=min(remaining, 0.1)))
        except queue.Empty:
            continue
    return events


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.01)


def final_update(order_id: str) -> Callable[[list], bool]:
    return lambda events: any(
        isinstance(e, OrderUpdate) and e.order_id == order_id and e.status.final for e in events
    )


def buy(volume: int = 1000, price: float | None = 10.0, *, signal: str = "s1", rule: str = "entry") -> OrderRequest:
    return OrderRequest(CODE, Side.BUY, volume, price, rule, signal_id=signal)


def test_implements_the_broker_protocol(settings, qmt):
    assert isinstance(QmtBroker(settings, modules=qmt), Broker)


def test_full_life_cycle_fills_with_price_volume_and_commission(broker, qmt):
    order_id = broker.submit(buy(1000, 10.0, signal="sig-7"))
    events = collect(broker, final_update(order_id))

    updates = [e for e in events if isinstance(e, OrderUpdate)]
    assert [u.status for u in updates] == [OrderStatus.SUBMITTED, OrderStatus.REPORTED, OrderStatus.FILLED]
    fills = [e for e in events if isinstance(e, Fill)]
    assert len(fills) == 1
    fill = fills[0]
    fees = mkt.order_fees(10_000.0, "BUY")
    assert (fill.order_id, fill.code, fill.side, fill.price, fill.volume) == (order_id, CODE, Side.BUY, 10.0, 1000)
    assert fill.amount == 10_000.0
    assert fill.commission == pytest.approx(fees.total)
    assert (fill.signal_id, fill.rule) == ("sig-7", "entry")
    assert re.fullmatch(rf"\d{{8}}-{re.escape(CODE)}-T00000001", fill.trade_id)  # unique across days and exchanges
    assert events.index(fill) < events.index(updates[-1])  # the trade is pushed before the final status

    sent = qmt.order_requests[-1]
    assert sent["order_type"] == XtConstant.STOCK_BUY
    assert sent["price_type"] == XtConstant.FIX_PRICE
    assert sent["price"] == 10.0
    assert sent["strategy_name"] == STRATEGY_NAME
    assert sent["order_remark"] == "ENTRY:sig-7"

    [position] = broker.positions()
    assert (position.code, position.volume, position.available, position.name) == (CODE, 1000, 0, "浦发银行")
    asset = broker.asset()
    assert asset.cash == pytest.approx(1_000_000 - 10_000 - fees.total)


def test_latest_price_order_and_fill_time_from_the_request_stamp(broker, qmt):
    stamp = dt.datetime(2024, 3, 5, 15, 0, tzinfo=mkt.SHANGHAI)
    order_id = broker.submit(OrderRequest(CODE, Side.BUY, 200, None, "grid_buy", "g1", stamp=stamp))
    events = collect(broker, final_update(order_id))
    assert qmt.order_requests[-1]["price_type"] == XtConstant.LATEST_PRICE
    [fill] = [e for e in events if isinstance(e, Fill)]
    assert fill.time == stamp
    assert fill.price == 10.0


def test_commission_computed_when_the_broker_reports_zero(settings, userdata):
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata, report_commission=False)
    qmt.market.set_price(CODE, 20.0)
    qmt.set_position(CODE, 2000, 15.0)
    broker = QmtBroker(settings, modules=qmt)
    broker.connect()
    try:
        order_id = broker.submit(OrderRequest(CODE, Side.SELL, 2000, 20.0, "take_profit_initial", "tp"))
        events = collect(broker, final_update(order_id))
        [fill] = [e for e in events if isinstance(e, Fill)]
        assert fill.commission == pytest.approx(mkt.order_fees(40_000.0, "SELL").total)
        assert fill.side is Side.SELL
    finally:
        broker.close()


def test_partial_fill_then_cancel(broker, qmt):
    qmt.partial_next(300)
    order_id = broker.submit(buy(1000))
    events = collect(broker, lambda ev: any(isinstance(e, OrderUpdate) and e.status is OrderStatus.PARTIAL
                                            for e in ev))
    [fill] = [e for e in events if isinstance(e, Fill)]
    assert fill.volume == 300
    first_commission = fill.commission
    assert first_commission == pytest.approx(mkt.order_fees(3000.0, "BUY").total)

    broker.cancel(order_id)
    events = collect(broker, final_update(order_id))
    statuses = [e.status for e in events if isinstance(e, OrderUpdate)]
    # 52 (part filled, cancel pending) still reads as partial; 53 is the final partial cancel
    assert statuses == [OrderStatus.PARTIAL, OrderStatus.PARTIAL_CANCELLED]
    assert events[-1].filled_volume == 300
    assert [p.volume for p in broker.positions()] == [300]
    assert broker.asset().frozen_cash == 0


def test_cancel_of_an_unfilled_order_and_of_a_finished_one(broker, qmt):
    order_id = broker.submit(buy(1000, 9.5))  # below the market: rests at 50
    collect(broker, lambda ev: any(isinstance(e, OrderUpdate) and e.status is OrderStatus.REPORTED for e in ev))
    broker.cancel(order_id)
    events = collect(broker, final_update(order_id))
    assert [e.status for e in events if isinstance(e, OrderUpdate)] == [OrderStatus.REPORTED, OrderStatus.CANCELLED]

    broker.cancel(order_id)  # already final: the client refuses
    [error] = collect(broker, lambda ev: any(isinstance(e, BrokerError) for e in ev))
    assert error.kind == "cancel"
    assert error.order_id == order_id
    assert "不能撤单" in error.message
    time.sleep(0.2)
    assert broker.events.empty()  # the answer and on_cancel_error make one report, not two


def test_resting_order_fills_when_the_market_reaches_it(broker, qmt):
    order_id = broker.submit(buy(500, 9.8))
    collect(broker, lambda ev: any(isinstance(e, OrderUpdate) and e.status is OrderStatus.REPORTED for e in ev))
    qmt.market.set_price(CODE, 9.7)
    events = collect(broker, final_update(order_id))
    [fill] = [e for e in events if isinstance(e, Fill)]
    assert fill.price == 9.8  # the fake fills at the order price by default


def test_rejection_reports_the_brokers_message_and_is_never_retried(broker, qmt):
    qmt.reject_next("[COUNTER] 该账户禁止买入")
    order_id = broker.submit(buy(1000, signal="sig-r"))
    events = collect(broker, lambda ev: any(isinstance(e, BrokerError) for e in ev))
    [error] = [e for e in events if isinstance(e, BrokerError)]
    assert error == BrokerError(order_id, "[COUNTER] 该账户禁止买入 (error -1)", kind="order", signal_id="sig-r")
    updates = [e for e in events if isinstance(e, OrderUpdate)]
    assert updates[-1].status is OrderStatus.REJECTED
    assert updates[-1].message == "[COUNTER] 该账户禁止买入"
    assert broker.rejected[order_id].startswith("[COUNTER] 该账户禁止买入")

    time.sleep(0.3)
    assert len(qmt.order_requests) == 1  # recorded, not sent again
    assert broker.status().details["rejected"] == 1


def test_counter_refusal_for_missing_cash(broker, qmt):
    order_id = broker.submit(buy(200_000, 10.0))
    [error] = [e for e in collect(broker, lambda ev: any(isinstance(e, BrokerError) for e in ev))
               if isinstance(e, BrokerError)]
    assert error.order_id == order_id
    assert "可用资金不足" in error.message


def test_answer_refusal_raises_order_rejected_without_a_second_error_event(broker, qmt, monkeypatch):
    real = qmt._argument_problem
    monkeypatch.setattr(qmt, "_argument_problem", lambda *a: "账号被冻结" if a[1] == CODE else real(*a))
    with pytest.raises(OrderRejected, match="账号被冻结"):
        broker.submit(buy(100))
    time.sleep(0.3)
    assert not any(isinstance(e, BrokerError) for e in list(broker.events.queue))


@pytest.mark.parametrize("mode", ["answer before the seq returns", "answer late"])
def test_order_id_resolved_whenever_the_async_answer_arrives(broker, qmt, mode):
    if mode == "answer before the seq returns":
        qmt.response_first = True
    else:
        qmt.response_delay = 0.2
    order_id = broker.submit(buy(100))
    assert order_id == "100001"
    events = collect(broker, final_update(order_id))
    assert [e.signal_id for e in events if isinstance(e, Fill)] == ["s1"]


def test_no_answer_within_the_timeout_raises_broker_timeout_and_events_still_flow(broker, qmt):
    qmt.response_delay = TIMEOUT * 2
    with pytest.raises(BrokerTimeout, match="check the client's order list"):
        broker.submit(buy(100, signal="late"))
    events = collect(broker, final_update("100001"))
    assert [e.signal_id for e in events if isinstance(e, Fill)] == ["late"]


def test_callback_order_async_answer_before_order_error(settings, qmt):
    seen: list[str] = []

    class Recorder(qmt.xttrader.XtQuantTraderCallback):
        def on_order_stock_async_response(self, response):
            seen.append(f"answer:{response.order_id}")

        def on_stock_order(self, order):
            seen.append(f"order:{order.order_status}")

        def on_order_error(self, error):
            seen.append(f"error:{error.order_id}")

    trader = qmt.xttrader.XtQuantTrader(settings.qmt.qmt_userdata_path, 7, Recorder())
    trader.start()
    assert trader.connect() == 0
    account = qmt.xttype.StockAccount(ACCOUNT)
    assert trader.subscribe(account) == 0
    qmt.reject_next("[COUNTER] 拒绝")
    trader.order_stock_async(account, CODE, XtConstant.STOCK_BUY, 100, XtConstant.FIX_PRICE, 10.0)
    deadline = time.monotonic() + 2
    while len(seen) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    trader.stop()
    assert seen == ["answer:100001", "order:48", "order:57", "error:100001"]


def test_disconnect_then_reconnect_replays_missed_fills_and_resyncs_positions(broker, qmt):
    order_id = broker.submit(buy(1000, 9.5))  # rests
    collect(broker, lambda ev: any(isinstance(e, OrderUpdate) and e.status is OrderStatus.REPORTED for e in ev))

    qmt.running = False  # the client is away: reconnect attempts fail until it is back
    qmt.disconnect()
    [down] = collect(broker, lambda ev: any(isinstance(e, ConnectionChanged) for e in ev))
    assert down.connected is False
    with pytest.raises(QmtUnavailable, match="reconnecting"):
        broker.positions()
    qmt.market.set_price(CODE, 9.4)  # fills while the adapter cannot hear it
    time.sleep(0.2)
    qmt.running = True

    events = collect(broker, lambda ev: any(isinstance(e, ConnectionChanged) for e in ev))
    fills = [e for e in events if isinstance(e, Fill)]
    assert [(f.order_id, f.volume, f.price, f.signal_id) for f in fills] == [(order_id, 1000, 9.5, "s1")]
    assert [e.status for e in events if isinstance(e, OrderUpdate)] == [OrderStatus.FILLED]
    assert events[-1].connected is True
    assert re.fullmatch(r"reconnected( with a new session \d+)? after \d+ attempt\(s\)", events[-1].message)
    assert int(events[-1].message.split()[-2]) >= 2

    status = broker.status()
    assert status.connected and status.outages == 1
    assert [(p.code, p.volume) for p in broker.positions()] == [(CODE, 1000)]

    order_id = broker.submit(buy(100, 9.6, signal="after"))  # the new subscription gets pushes
    events = collect(broker, final_update(order_id))
    assert [e.signal_id for e in events if isinstance(e, Fill)] == ["after"]


def test_repeated_pushes_and_replays_give_one_event_each(broker, qmt):
    order_id = broker.submit(buy(100))
    events = collect(broker, final_update(order_id))
    trader = qmt.traders[-1]
    account = qmt.xttype.StockAccount(ACCOUNT)
    for trade in trader.query_stock_trades(account):
        qmt.push("on_stock_trade", trade)
    for order in trader.query_stock_orders(account):
        qmt.push("on_stock_order", order)
    time.sleep(0.3)
    assert broker.events.empty()
    assert len([e for e in events if isinstance(e, Fill)]) == 1


def test_hung_query_is_cut_by_the_timeout_while_other_calls_go_on(broker, qmt):
    qmt.hang("query_stock_positions", forever=True)
    started = time.monotonic()
    with pytest.raises(BrokerTimeout, match=r"query_stock_positions did not return within 1s"):
        broker.positions()
    assert time.monotonic() - started < TIMEOUT + 0.5
    assert qmt.hung("query_stock_positions") == 1

    assert broker.asset().cash == 1_000_000  # other calls are unaffected
    order_id = broker.submit(buy(100))
    collect(broker, final_update(order_id))
    assert broker.status().details["hung_calls"] == 1

    qmt.release()
    deadline = time.monotonic() + 2
    while broker.status().details["hung_calls"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [p.volume for p in broker.positions()] == [100]


def test_too_many_hung_calls_fail_fast(settings, qmt):
    broker = QmtBroker(settings.with_values(call_timeout=0.2), modules=qmt)
    broker.connect()
    try:
        qmt.hang("query_stock_asset", forever=True)
        for _ in range(4):
            with pytest.raises(BrokerTimeout):
                broker.asset()
        started = time.monotonic()
        with pytest.raises(BrokerTimeout, match="4 earlier calls"):
            broker.asset()
        assert time.monotonic() - started < 0.1
    finally:
        broker.close()


def test_a_callback_that_cannot_be_handled_does_not_kill_the_pump(broker, qmt, caplog):
    caplog.set_level(logging.ERROR, logger="miniqmt_lab.qmt.callbacks")
    qmt.push("on_stock_order", object())  # no fields at all
    qmt.push("on_stock_trade", None)
    order_id = broker.submit(buy(100))
    events = collect(broker, final_update(order_id))
    assert any(isinstance(e, Fill) for e in events)
    details = broker.status().details
    assert details["pump_alive"] and details["pump_failures"] == 2
    assert "could not be handled" in caplog.text


def test_a_raising_user_callback_does_not_stop_the_fake_client(settings, qmt):
    got: list[int] = []

    class Flaky(qmt.xttrader.XtQuantTraderCallback):
        def on_stock_order(self, order):
            got.append(order.order_status)
            if order.order_status == XtConstant.ORDER_UNREPORTED:
                raise ValueError("boom")

    trader = qmt.xttrader.XtQuantTrader(settings.qmt.qmt_userdata_path, 8, Flaky())
    trader.start()
    trader.connect()
    account = qmt.xttype.StockAccount(ACCOUNT)
    trader.subscribe(account)
    trader.order_stock_async(account, CODE, XtConstant.STOCK_BUY, 100, XtConstant.FIX_PRICE, 10.0)
    deadline = time.monotonic() + 2
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    trader.stop()
    assert got == [48, 50, 56]
    assert qmt.callback_errors == [("on_stock_order", "ValueError('boom')")]


def test_sync_query_inside_a_callback_is_caught_as_the_deadlock_it_is(settings, qmt):
    results: list[object] = []
    done = threading.Event()

    class Careless(qmt.xttrader.XtQuantTraderCallback):
        def on_stock_trade(self, trade):
            try:
                results.append(trader.query_stock_positions(account))
            finally:
                done.set()

    trader = qmt.xttrader.XtQuantTrader(settings.qmt.qmt_userdata_path, 9, Careless())
    account = qmt.xttype.StockAccount(ACCOUNT)
    trader.start()
    trader.connect()
    trader.subscribe(account)
    trader.order_stock_async(account, CODE, XtConstant.STOCK_BUY, 100, XtConstant.FIX_PRICE, 10.0)
    assert done.wait(2)
    trader.stop()
    assert results == []
    assert qmt.violations == ["query_stock_positions called inside a callback: the real client deadlocks here"]


def test_status_masks_the_account_and_counts_outages(broker, qmt):
    status = broker.status()
    assert status.account == "88******34"
    assert ACCOUNT not in repr(status)
    assert (status.connected, status.name, status.outages) == (True, "qmt", 0)
    assert status.details["session_id"] == 4242


def test_close_is_idempotent_and_stops_pushes(settings, qmt):
    broker = QmtBroker(settings, modules=qmt)
    broker.connect()
    broker.connect()  # second call is a no-op
    assert len(qmt.traders) == 1
    broker.close()
    broker.close()
    assert not broker.status().connected
    with pytest.raises(QmtUnavailable, match="not connected"):
        broker.submit(buy(100))


def test_connect_after_close_opens_a_new_trader_and_keeps_tracking_earlier_orders(settings, qmt):
    broker = QmtBroker(settings, modules=qmt)
    broker.connect()
    resting = broker.submit(buy(1000, 9.5, signal="before"))  # rests below the market
    collect(broker, lambda ev: any(isinstance(e, OrderUpdate) and e.status is OrderStatus.REPORTED for e in ev))
    broker.close()
    assert not broker.status().connected and not broker.status().details["pump_alive"]

    broker.connect()
    try:
        assert [t.connected for t in qmt.traders] == [True]  # the first one was stopped and dropped
        assert qmt.sessions == [4242, 4242]
        status = broker.status()
        assert status.connected and status.details["pump_alive"] and status.message == "connected (session 4242)"
        collect(broker, lambda ev: ConnectionChanged(True, "connected (session 4242)") in ev)

        qmt.market.set_price(CODE, 9.4)  # the order sent before the close fills now
        events = collect(broker, final_update(resting))
        fills = [(f.order_id, f.volume, f.signal_id) for f in events if isinstance(f, Fill)]
        assert fills == [(resting, 1000, "before")]
        order_id = broker.submit(buy(100, 9.6, signal="after"))
        events = collect(broker, final_update(order_id))
        assert [f.signal_id for f in events if isinstance(f, Fill)] == ["after"]
    finally:
        broker.close()


def test_pure_helpers():
    assert order_status(52) is OrderStatus.PARTIAL
    assert order_status(53) is OrderStatus.PARTIAL_CANCELLED
    assert order_status(999) is OrderStatus.UNKNOWN
    assert order_remark("take_profit_dynamic", "abc") == "TPD:abc"
    assert len(order_remark("stop_loss", "x" * 40)) == 24
    assert parse_remark("SL:sig-1") == ("stop_loss", "sig-1")
    assert parse_remark("hand typed") == ("", "")


def test_fill_commission_charges_the_minimum_once_per_order():
    tracked = TrackedOrder(CODE, Side.BUY, 1000, 10.0, "entry", "s")
    first = fill_commission(tracked, 3000.0, 0.0, Settings().fees)
    tracked.amount, tracked.fee_paid = 3000.0, first
    second = fill_commission(tracked, 7000.0, 0.0, Settings().fees)
    assert first + second == pytest.approx(mkt.order_fees(10_000.0, "BUY").total)
    assert fill_commission(tracked, 7000.0, 3.21, Settings().fees) == 3.21


# -- the real SDK's behaviours (shared/spec/xtquant.md), reproduced by the double ----------------------


def test_an_empty_account_is_empty_not_a_dead_client(broker, qmt):
    assert broker.positions() == []  # query_stock_positions answered None: nothing held today
    assert broker.orders() == []
    assert broker.status().connected

    qmt.fail_next("query_stock_positions")
    qmt.fail_next("query_stock_asset")
    with pytest.raises(QmtUnavailable, match="query_stock_asset returned nothing"):
        broker.positions()  # None and a failed asset query: the client is away


def test_none_for_positions_is_a_failure_while_the_account_holds_stock(broker, qmt):
    qmt.set_position(CODE, 500, 9.0)
    qmt.fail_next("query_stock_positions")
    with pytest.raises(QmtUnavailable, match=r"holds 5000\.00 in stock"):
        broker.positions()
    assert [(p.code, p.volume) for p in broker.positions()] == [(CODE, 500)]


def test_orders_carry_their_signal_ids_and_none_is_a_failure_once_orders_were_sent(broker, qmt):
    order_id = broker.submit(buy(100, signal="sig-42"))
    collect(broker, final_update(order_id))
    qmt.reject_next()
    refused = broker.submit(buy(100, signal="sig-43"))
    collect(broker, final_update(refused))
    orders = {o.order_id: o for o in broker.orders()}
    assert (orders[order_id].signal_id, orders[order_id].status, orders[order_id].filled_volume) == (
        "sig-42", OrderStatus.FILLED, 100)
    assert (orders[refused].signal_id, orders[refused].status) == ("sig-43", OrderStatus.REJECTED)
    qmt.fail_next("query_stock_orders")
    with pytest.raises(QmtUnavailable, match="sent orders today"):
        broker.orders()  # never read as "the order never arrived"


def test_xtquant_is_imported_when_the_broker_is_built_not_inside_connect(settings, userdata):
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata, import_delay=TIMEOUT * 1.5)  # the update check
    broker = QmtBroker(settings, modules=qmt)
    assert qmt.imported_on == ["MainThread"]  # paid where the broker was built
    box: list[object] = []
    worker = threading.Thread(target=lambda: box.append(broker.connect()), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(TIMEOUT)  # an engine waits call_timeout for connect; the import no longer eats it
    try:
        assert box == [None] and time.monotonic() - started < TIMEOUT
        assert broker.status().connected
    finally:
        broker.close()


def test_connect_has_its_own_budget_and_says_connecting_meanwhile(settings, qmt):
    broker = QmtBroker(settings.with_values(connect_timeout=3 * TIMEOUT), modules=qmt)
    qmt.hang("connect")
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(broker.connect()), daemon=True)
    worker.start()
    wait_until(lambda: qmt.hung("connect") == 1)
    started = time.monotonic()
    status = broker.status()  # answers at once while the connect runs
    assert time.monotonic() - started < 0.2
    assert (status.connected, status.message, status.details["connecting"]) == (False, "connecting to QMT...", True)
    with pytest.raises(QmtUnavailable, match="connecting to QMT"):
        broker.positions()
    time.sleep(TIMEOUT * 1.5)  # longer than call_timeout, within connect_timeout
    qmt.release()
    worker.join(2 * TIMEOUT)
    try:
        assert done == [None] and broker.status().connected
    finally:
        broker.close()


def test_a_connect_past_its_budget_times_out_and_its_trader_is_dropped(settings, qmt):
    broker = QmtBroker(settings.with_values(connect_timeout=TIMEOUT), modules=qmt)
    qmt.hang("connect", forever=True)
    started = time.monotonic()
    with pytest.raises(BrokerTimeout, match=r"did not finish within 1s \(engine.connect_timeout\)"):
        broker.connect()
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 0.5
    assert broker.status().message.startswith("not connected: connecting to the QMT client did not finish")
    qmt.release()  # the late connect returns: the trader is stopped and dropped, not left connected
    wait_until(lambda: qmt.traders == [])
    assert len(qmt.sessions) == 1


def test_the_client_gives_a_hung_call_back_after_the_broker_gave_up(broker, qmt):
    assert qmt.traders[-1].native_timeout == 2 * TIMEOUT  # set_timeout: twice the broker's own timeout
    qmt.hang("query_stock_positions")
    started = time.monotonic()
    with pytest.raises(BrokerTimeout):
        broker.positions()
    assert time.monotonic() - started < TIMEOUT + 0.5  # the broker's timeout answers, not the client's
    assert broker.status().details["hung_calls"] == 1
    wait_until(lambda: broker.status().details["hung_calls"] == 0, timeout=3 * TIMEOUT)  # no release needed


def test_hung_calls_never_hold_a_reconnect_back(broker, qmt):
    qmt.hang("query_stock_asset", forever=True)
    for _ in range(4):
        with pytest.raises(BrokerTimeout):
            broker.asset()
    assert broker.status().details["hung_calls"] == 4
    qmt.disconnect()
    events = collect(broker, lambda ev: [e.connected for e in ev if isinstance(e, ConnectionChanged)] == [False, True])
    assert events[-1].message.startswith("reconnected")
    qmt.release()


def test_a_restarted_client_gets_a_fresh_trader_with_a_new_session_id(broker, qmt):
    resting = broker.submit(buy(1000, 9.5, signal="before"))
    collect(broker, lambda ev: any(isinstance(e, OrderUpdate) and e.status is OrderStatus.REPORTED for e in ev))
    qmt.restart()  # the old trader never connects again
    events = collect(broker, lambda ev: [e.connected for e in ev if isinstance(e, ConnectionChanged)] == [False, True])
    assert re.fullmatch(r"reconnected with a new session \d+ after \d+ attempt\(s\)", events[-1].message)
    status = broker.status()
    assert status.connected and status.details["renewals"] == 1
    assert broker.session_id != 4242 and qmt.sessions[-1] == broker.session_id
    # the stale one is stopped and dropped on its own host thread, shortly after
    wait_until(lambda: [t.session for t in qmt.traders] == [broker.session_id], timeout=3 * TIMEOUT)

    qmt.market.set_price(CODE, 9.4)  # pushes reach the new trader
    events = collect(broker, final_update(resting))
    assert [(f.order_id, f.signal_id) for f in events if isinstance(f, Fill)] == [(resting, "before")]


def test_traders_live_and_die_on_their_own_thread(settings, qmt, monkeypatch):
    printed: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: printed.append(repr(u.exc_value)))
    broker = QmtBroker(settings, modules=qmt)
    for _ in range(2):
        broker.connect()
        [trader] = qmt.traders
        assert trader.built_on == "qmt-trader-4242"
        del trader
        broker.close()
    gc.collect()
    assert qmt.traders == [] and qmt.sessions == [4242, 4242]
    assert printed == [] and qmt.violations == []


def test_a_close_during_a_connect_leaves_no_trader_connected(settings, qmt):
    broker = QmtBroker(settings, modules=qmt)
    qmt.hang("connect")
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            broker.connect()
        except QmtUnavailable as exc:
            errors.append(exc)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    wait_until(lambda: qmt.hung("connect") == 1)
    started = time.monotonic()
    broker.close()  # an engine stopped while its broker was still connecting
    worker.join(5)
    assert time.monotonic() - started < 1.0  # the connect's wait ends with the close
    assert [str(e) for e in errors] == ["QMT broker was closed while connecting"]
    qmt.release()  # the client answers the abandoned connect: its trader is stopped and dropped
    wait_until(lambda: qmt.traders == [])
    assert not broker.status().connected


def test_closing_while_a_reconnect_hangs_is_quick(broker, qmt):
    qmt.hang("connect", forever=True)
    qmt.disconnect()
    collect(broker, lambda ev: any(isinstance(e, ConnectionChanged) and not e.connected for e in ev))
    wait_until(lambda: qmt.hung("connect") == 1)  # a reconnect attempt waits for the client
    started = time.monotonic()
    broker.close()
    assert time.monotonic() - started < 1.0  # not the 30 s connect budget
    assert not broker.status().details["reconnecting"]
