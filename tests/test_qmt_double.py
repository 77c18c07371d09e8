"""The fake client keeps the facts of shared/spec/xtquant.md: names, numbers, order flow, faults."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import importlib.util
import sys
import threading
import time

import pandas as pd
import pytest

from miniqmt_lab import market as mkt
from miniqmt_lab.xtquant_double import CLIENT_DOWN_MESSAGE, FakeQmt, XtConstant, XtQuantTraderCallback
from miniqmt_lab.xtquant_double import xttype as fake_types

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("compiled_fees")]

ACCOUNT = "8800001234"
CODE = "600000.SH"

SPEC_FIELDS = {
    "XtAsset": "account_type account_id cash frozen_cash market_value total_asset fetch_balance",
    "XtPosition": "account_type account_id stock_code volume can_use_volume open_price avg_price market_value"
                  " frozen_volume on_road_volume yesterday_volume last_price profit_rate direction instrument_name"
                  " float_profit open_date position_profit",
    "XtOrder": "account_type account_id stock_code order_id order_sysid order_time order_type order_volume price_type"
               " price traded_volume traded_price order_status status_msg strategy_name order_remark direction"
               " offset_flag instrument_name",
    "XtTrade": "account_type account_id stock_code order_type traded_id traded_time traded_price traded_volume"
               " traded_amount order_id order_sysid strategy_name order_remark direction offset_flag commission"
               " instrument_name",
    "XtOrderError": "account_type account_id order_id error_id error_msg strategy_name order_remark seq",
    "XtCancelError": "account_type account_id order_id market order_sysid error_id error_msg",
    "XtOrderResponse": "account_type account_id order_id strategy_name order_remark error_msg seq",
}
SPEC_CONSTANTS = {
    "STOCK_BUY": 23, "STOCK_SELL": 24, "LATEST_PRICE": 5, "FIX_PRICE": 11,
    "ORDER_UNREPORTED": 48, "ORDER_WAIT_REPORTING": 49, "ORDER_REPORTED": 50, "ORDER_REPORTED_CANCEL": 51,
    "ORDER_PARTSUCC_CANCEL": 52, "ORDER_PART_CANCEL": 53, "ORDER_CANCELED": 54, "ORDER_PART_SUCC": 55,
    "ORDER_SUCCEEDED": 56, "ORDER_JUNK": 57, "ORDER_UNKNOWN": 255, "SECURITY_ACCOUNT": 2, "CREDIT_ACCOUNT": 3,
}
CALLBACKS = ("on_disconnected on_account_status on_stock_asset on_stock_order on_stock_trade on_stock_position"
             " on_order_error on_cancel_error on_order_stock_async_response on_cancel_order_stock_async_response")


def test_constants_match_the_spec():
    assert {name: getattr(XtConstant, name) for name in SPEC_CONSTANTS} == SPEC_CONSTANTS
    assert [getattr(XtConstant, f"MARKET_{n}") for n in (
        "SH_CONVERT_5_CANCEL", "SH_CONVERT_5_LIMIT", "PEER_PRICE_FIRST", "MINE_PRICE_FIRST",
        "SZ_INSTBUSI_RESTCANCEL", "SZ_CONVERT_5_CANCEL", "SZ_FULL_OR_CANCEL")] == list(range(42, 49))


@pytest.mark.parametrize("name", sorted(SPEC_FIELDS))
def test_object_fields_match_the_spec(name):
    fields = {f.name for f in dataclasses.fields(getattr(fake_types, name))}
    assert set(SPEC_FIELDS[name].split()) <= fields


def test_callback_base_has_every_push():
    for name in CALLBACKS.split():
        assert callable(getattr(XtQuantTraderCallback, name))


def test_stock_account_stores_the_type_number():
    assert fake_types.StockAccount("1", "STOCK").account_type == XtConstant.SECURITY_ACCOUNT
    assert fake_types.StockAccount("1", "CREDIT").account_type == XtConstant.CREDIT_ACCOUNT
    with pytest.raises(ValueError, match="unknown account type"):
        fake_types.StockAccount("1", "FUTURE")


@pytest.mark.skipif(importlib.util.find_spec("xtquant") is None, reason="xtquant not installed")
def test_constants_and_account_match_the_real_package():
    from xtquant import xtconstant, xttype

    for name in [*SPEC_CONSTANTS, "MARKET_SH_CONVERT_5_CANCEL", "MARKET_SZ_FULL_OR_CANCEL"]:
        assert getattr(xtconstant, name) == getattr(XtConstant, name), name
    real = xttype.StockAccount("8800001234", "STOCK")
    assert (real.account_id, real.account_type) == ("8800001234", XtConstant.SECURITY_ACCOUNT)


# -- the trader ---------------------------------------------------------------------------------------


class Recorder(XtQuantTraderCallback):
    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            seen = object.__getattribute__(self, "seen")
            return lambda data=None: seen.append((name, data))
        return object.__getattribute__(self, name)

    def wait(self, count: int = 1, *, last: str = "", timeout: float = 3.0) -> list[tuple[str, object]]:
        """What was delivered once ``count`` callbacks arrived, or ``last`` did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (last and any(n == last for n, _ in self.seen)) or (not last and len(self.seen) >= count):
                break
            time.sleep(0.005)
        return list(self.seen)



@pytest.fixture
def qmt(tmp_path):
    folder = tmp_path / "userdata_mini"
    folder.mkdir()
    fake = FakeQmt(account_id=ACCOUNT, userdata_path=folder)
    fake.market.set_instrument(CODE, "浦发银行", prev_close=10.0)
    fake.market.set_price(CODE, 10.0)
    yield fake
    fake.release()


@pytest.fixture
def session(qmt):
    recorder = Recorder()
    trader = qmt.xttrader.XtQuantTrader(qmt.userdata_path, 1, recorder)
    trader.start()
    assert trader.connect() == 0
    account = qmt.xttype.StockAccount(ACCOUNT)
    assert trader.subscribe(account) == 0
    yield trader, account, recorder
    trader.stop()


def statuses(seen) -> list[int]:
    return [data.order_status for name, data in seen if name == "on_stock_order"]


def test_connect_needs_start_and_a_running_client(qmt):
    trader = qmt.xttrader.XtQuantTrader(qmt.userdata_path, 2)
    assert trader.connect() == -1  # not started
    trader.start()
    qmt.running = False
    assert trader.connect() == -1
    qmt.running = True
    assert trader.connect() == 0
    assert trader.subscribe(qmt.xttype.StockAccount("someone else")) == -1
    trader.stop()


def test_sync_order_walks_48_50_56(session, qmt):
    trader, account, recorder = session
    order_id = trader.order_stock(account, CODE, XtConstant.STOCK_BUY, 100, XtConstant.FIX_PRICE, 10.0, "s", "r")
    assert order_id == 100001
    seen = recorder.wait(last="on_stock_asset")
    assert statuses(seen) == [48, 50, 56]
    names = [n for n, _ in seen]
    assert names.index("on_stock_trade") < names.index("on_stock_asset")
    order = trader.query_stock_order(account, order_id)
    assert (order.order_status, order.traded_volume, order.traded_price, order.price_type) == (56, 100, 10.0, 50)
    [trade] = trader.query_stock_trades(account)
    assert (trade.order_id, trade.traded_volume, trade.traded_amount) == (order_id, 100, 1000.0)
    assert trade.commission == pytest.approx(mkt.order_fees(1000.0, "BUY").total)


def test_bought_shares_are_sellable_the_next_day(tmp_path):
    now = [dt.datetime(2024, 3, 4, 10, 0, tzinfo=mkt.SHANGHAI)]
    folder = tmp_path / "userdata_mini"
    folder.mkdir()
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=folder, clock=lambda: now[0])
    qmt.market.set_price(CODE, 10.0)
    trader = qmt.xttrader.XtQuantTrader(str(folder), 3)
    trader.start()
    trader.connect()
    account = qmt.xttype.StockAccount(ACCOUNT)
    trader.order_stock(account, CODE, XtConstant.STOCK_BUY, 500, XtConstant.LATEST_PRICE, 0, "", "")
    [position] = trader.query_stock_positions(account)
    assert (position.volume, position.can_use_volume) == (500, 0)
    sell = trader.order_stock(account, CODE, XtConstant.STOCK_SELL, 500, XtConstant.FIX_PRICE, 10.0, "", "")
    assert trader.query_stock_order(account, sell).order_status == XtConstant.ORDER_JUNK
    assert "可用股份不足" in trader.query_stock_order(account, sell).status_msg

    now[0] += dt.timedelta(days=1)
    [position] = trader.query_stock_positions(account)
    assert position.can_use_volume == 500
    sell = trader.order_stock(account, CODE, XtConstant.STOCK_SELL, 500, XtConstant.FIX_PRICE, 10.0, "", "")
    assert trader.query_stock_order(account, sell).order_status == XtConstant.ORDER_SUCCEEDED
    [position] = trader.query_stock_positions(account)
    assert position.volume == 0  # listed with volume 0 for the rest of the day, like the real client
    trader.stop()


def test_partial_fill_then_cancel_walks_55_52_53(session, qmt):
    trader, account, recorder = session
    qmt.partial_next(300)
    order_id = trader.order_stock(account, CODE, XtConstant.STOCK_BUY, 1000, XtConstant.FIX_PRICE, 10.0)
    assert trader.cancel_order_stock(account, order_id) == 0
    assert trader.cancel_order_stock(account, order_id) == -1  # final already
    seen = recorder.wait(last="on_cancel_error")
    assert statuses(seen) == [48, 50, 55, 52, 53]
    assert qmt.cash == pytest.approx(1_000_000 - 3000 - mkt.order_fees(3000.0, "BUY").total)


def test_async_cancel_answers_then_reports(session, qmt):
    trader, account, recorder = session
    order_id = trader.order_stock(account, CODE, XtConstant.STOCK_BUY, 100, XtConstant.FIX_PRICE, 9.0)
    seq = trader.cancel_order_stock_async(account, order_id)
    bad = trader.cancel_order_stock_async(account, order_id)
    seen = recorder.wait(last="on_cancel_error")
    answers = [d for n, d in seen if n == "on_cancel_order_stock_async_response"]
    assert [(a.seq, a.cancel_result) for a in answers] == [(seq, 0), (bad, -1)]
    assert statuses(seen) == [48, 50, 51, 54]
    [error] = [d for n, d in seen if n == "on_cancel_error"]
    assert error.order_id == order_id and "不能撤单" in error.error_msg


def test_argument_errors_answer_minus_one_then_error(session):
    trader, account, recorder = session
    seq = trader.order_stock_async(account, CODE, XtConstant.STOCK_BUY, 0, XtConstant.FIX_PRICE, 10.0)
    seen = recorder.wait(2)
    assert [n for n, _ in seen] == ["on_order_stock_async_response", "on_order_error"]
    assert (seen[0][1].order_id, seen[0][1].seq) == (-1, seq)
    assert (seen[1][1].order_id, seen[1][1].seq) == (-1, seq)
    assert "委托数量0无效" in seen[1][1].error_msg


def test_price_outside_the_limits_is_junk(session):
    trader, account, _ = session
    order_id = trader.order_stock(account, CODE, XtConstant.STOCK_BUY, 100, XtConstant.FIX_PRICE, 11.5)
    order = trader.query_stock_order(account, order_id)
    assert order.order_status == XtConstant.ORDER_JUNK
    assert "涨跌停" in order.status_msg


def test_remarks_are_cut_to_24_characters(session, qmt):
    trader, account, _ = session
    order_id = trader.order_stock(account, CODE, XtConstant.STOCK_BUY, 100, XtConstant.FIX_PRICE, 10.0, "s", "r" * 30)
    assert trader.query_stock_order(account, order_id).order_remark == "r" * 24


def test_disconnect_drops_pushes_and_refuses_connects_as_told(session, qmt):
    trader, account, recorder = session
    qmt.disconnect(refuse_connects=2)
    assert recorder.wait(1)[0][0] == "on_disconnected"
    seq = trader.order_stock_async(account, CODE, XtConstant.STOCK_BUY, 100, XtConstant.FIX_PRICE, 10.0)
    assert seq > 0  # a positive seq whatever happens; this request goes nowhere
    assert trader.query_stock_positions(account) is None
    assert [trader.connect(), trader.connect(), trader.connect()] == [-1, -1, 0]
    assert trader.query_stock_asset(account) is not None
    assert trader.subscribe(account) == 0


def test_callback_delay_keeps_the_order(session, qmt):
    trader, account, recorder = session
    qmt.callback_delay = 0.02
    started = time.monotonic()
    trader.order_stock_async(account, CODE, XtConstant.STOCK_BUY, 100, XtConstant.FIX_PRICE, 10.0)
    seen = recorder.wait(4)
    assert time.monotonic() - started >= 0.08
    assert [n for n, _ in seen[:4]] == ["on_order_stock_async_response", "on_stock_order", "on_stock_order",
                                        "on_stock_trade"]


def test_hang_blocks_a_query_until_released(session, qmt):
    trader, account, _ = session
    qmt.set_position(CODE, 100, 10.0)
    qmt.hang("query_stock_asset")
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(trader.query_stock_asset(account)))
    worker.start()
    deadline = time.monotonic() + 2
    while qmt.hung("query_stock_asset") == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert qmt.hung("query_stock_asset") == 1 and result == []
    assert trader.query_stock_positions(account) is not None  # other queries answer
    qmt.release()
    worker.join(2)
    assert result[0].cash == 1_000_000


# -- xtdata -------------------------------------------------------------------------------------------


def daily_bars() -> pd.DataFrame:
    return pd.DataFrame({
        "stock_code": [CODE] * 3,
        "date": ["2024-03-04", "2024-03-05", "2024-03-06"],
        "open": [10.0, 10.2, 10.1], "high": [10.3, 10.4, 10.2], "low": [9.9, 10.0, 9.8],
        "close": [10.2, 10.1, 9.9], "volume": [1e6, 2e6, 1.5e6], "amount": [1.02e7, 2.02e7, 1.49e7],
    })


def test_market_data_needs_a_download_and_has_the_real_shape(qmt):
    qmt.market.add_bars(daily_bars())
    xtdata = qmt.xtdata
    assert xtdata.get_market_data_ex([], [CODE], "1d", "20240101", "20241231")[CODE].empty
    progress: list[dict] = []
    xtdata.download_history_data2([CODE, "000001.SZ"], "1d", "20240101", "20241231", progress.append)
    assert [p["finished"] for p in progress] == [1, 2]
    assert set(progress[0]) == {"total", "finished", "stockcode", "message"}
    assert progress[1]["message"]  # nothing known for 000001.SZ

    frame = xtdata.get_market_data_ex([], [CODE], "1d", "20240305", "20240306")[CODE]
    assert list(frame.index) == ["20240305", "20240306"]
    assert list(frame.columns) == ["time", "open", "high", "low", "close", "volume", "amount", "settelementPrice",
                                   "openInterest", "preClose", "suspendFlag"]
    assert frame["time"].iloc[0] == int(dt.datetime(2024, 3, 5, tzinfo=mkt.SHANGHAI).timestamp() * 1000)
    assert frame["preClose"].tolist() == [10.2, 10.1]
    last = xtdata.get_market_data_ex(["close"], [CODE], "1d", count=1)[CODE]
    assert list(last.columns) == ["close"] and last["close"].tolist() == [9.9]


def test_full_tick_instrument_and_quote_pushes(qmt):
    xtdata = qmt.xtdata
    tick = xtdata.get_full_tick([CODE, "000001.SZ"])
    assert list(tick) == [CODE]  # unknown codes are left out
    fields = tick[CODE]
    assert {"time", "lastPrice", "open", "high", "low", "lastClose", "amount", "volume", "askPrice", "bidPrice",
            "askVol", "bidVol", "stockStatus"} <= set(fields)
    assert (fields["lastPrice"], fields["lastClose"], len(fields["askPrice"])) == (10.0, 10.0, 5)

    detail = xtdata.get_instrument_detail(CODE)
    assert (detail["InstrumentName"], detail["PreClose"], detail["UpStopPrice"], detail["DownStopPrice"],
            detail["PriceTick"]) == ("浦发银行", 10.0, 11.0, 9.0, 0.01)
    assert xtdata.get_instrument_detail("000001.SZ") is None

    pushes: list[dict] = []
    seq = xtdata.subscribe_quote(CODE, "tick", callback=pushes.append)
    qmt.market.set_price(CODE, 10.2, volume=500)
    xtdata.unsubscribe_quote(seq)
    qmt.market.set_price(CODE, 10.3)
    assert len(pushes) == 1
    assert pushes[0][CODE][0]["lastPrice"] == 10.2
    assert pushes[0][CODE][0]["volume"] == 5  # lots


def test_trading_calendar(qmt):
    with pytest.raises(Exception, match="download_holiday_data"):
        qmt.xtdata.get_trading_calendar("SH", "20240101", "20240110")
    qmt.market.set_calendar([dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 12)])
    assert qmt.xtdata.get_trading_calendar("SH", "20240101", "20240110") == ["20240102", "20240103"]


@pytest.mark.parametrize(("name", "args"), [
    ("get_full_tick", ([CODE],)),
    ("get_market_data_ex", ([], [CODE], "1d")),
    ("download_history_data2", ([CODE], "1d")),
    ("download_history_data", (CODE, "1d")),
    ("get_instrument_detail", (CODE,)),
    ("get_trading_calendar", ("SH",)),
    ("subscribe_quote", (CODE,)),
    ("unsubscribe_quote", (1,)),
])
def test_every_xtdata_call_fails_plainly_without_a_client(qmt, name, args):
    qmt.running = False
    with pytest.raises(Exception) as info:
        getattr(qmt.xtdata, name)(*args)
    assert type(info.value) is Exception
    assert str(info.value) == CLIENT_DOWN_MESSAGE


# -- behaviours of the real SDK the double reproduces (shared/spec/xtquant.md) ------------------------


def test_list_queries_answer_none_for_an_empty_account(session, qmt):
    trader, account, _ = session
    assert trader.query_stock_positions(account) is None  # the SDK's docs: failed OR empty
    assert trader.query_stock_orders(account) is None
    assert trader.query_stock_trades(account) is None
    assert trader.query_stock_asset(account).cash == 1_000_000  # the asset query tells them apart
    qmt.fail_next("query_stock_asset")
    assert trader.query_stock_asset(account) is None


def test_async_calls_always_return_a_new_positive_seq(session, qmt):
    trader, account, recorder = session
    first = trader.order_stock_async(account, CODE, XtConstant.STOCK_BUY, 0, XtConstant.FIX_PRICE, 10.0)
    second = trader.cancel_order_stock_async(account, 999)
    assert 0 < first < second  # a refused order and a cancel of an unknown order still get one
    qmt.disconnect()
    assert trader.order_stock_async(account, CODE, XtConstant.STOCK_BUY, 100, XtConstant.FIX_PRICE, 10.0) > second
    assert trader.cancel_order_stock_async(account, 999) > second
    errors = [d.seq for n, d in recorder.wait(last="on_cancel_error") if n == "on_order_error"]
    assert errors == [first]  # the refusal arrives as on_order_error carrying its seq


def test_set_timeout_ends_a_hung_call_and_forever_ignores_it(session, qmt):
    trader, account, _ = session
    qmt.hang("query_stock_asset")
    trader.set_timeout(200)
    assert trader.native_timeout == 0.2
    started = time.monotonic()
    assert trader.query_stock_asset(account) is None  # the client gave up: a failed query
    assert 0.15 < time.monotonic() - started < 2.0
    qmt.hang("query_stock_asset", forever=True)
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(trader.query_stock_asset(account)), daemon=True)
    worker.start()
    worker.join(0.5)
    assert worker.is_alive() and qmt.hung("query_stock_asset") == 1
    qmt.release()
    worker.join(2)
    assert result[0].cash == 1_000_000


def test_a_restarted_client_never_reconnects_the_old_traders(session, qmt):
    trader, account, recorder = session
    qmt.restart()
    assert recorder.wait(last="on_disconnected")
    assert [trader.connect() for _ in range(3)] == [-1, -1, -1]
    fresh = qmt.xttrader.XtQuantTrader(qmt.userdata_path, 2)
    fresh.start()
    assert fresh.connect() == 0 and fresh.subscribe(account) == 0
    same_session = qmt.xttrader.XtQuantTrader(qmt.userdata_path, 2)
    same_session.start()
    assert same_session.connect() == -1  # one connection per session id
    for t in (fresh, same_session):
        t.stop()


def test_a_trader_built_off_the_main_thread_fails_when_dropped_on_it(qmt, monkeypatch):
    printed: list[str] = []  # what Python prints as "Exception ignored in ..." (kept as text: no frames)
    monkeypatch.setattr(sys, "unraisablehook", lambda u: printed.append(repr(u.exc_value)))
    made: list[object] = []
    worker = threading.Thread(target=lambda: made.append(qmt.xttrader.XtQuantTrader(qmt.userdata_path, 5)),
                              name="builder")
    worker.start()
    worker.join()
    assert len(qmt.traders) == 1
    made.clear()  # the last reference goes on the main thread
    gc.collect()
    assert printed == ["AttributeError(\"'XtQuantTrader' object has no attribute 'oldloop'\")"]
    assert qmt.violations == ["trader of session 5 built on builder was dropped on the main thread ('oldloop')"]
    assert qmt.traders == []

    kept = qmt.xttrader.XtQuantTrader(qmt.userdata_path, 6)  # built and dropped on the main thread: fine
    del kept
    on_thread = threading.Thread(target=lambda: qmt.xttrader.XtQuantTrader(qmt.userdata_path, 7))
    on_thread.start()
    on_thread.join()  # built and dropped on its own thread: fine
    assert len(qmt.violations) == 1 and qmt.sessions == [5, 6, 7]


def test_the_first_use_of_xtquant_pays_the_update_check_on_its_thread(tmp_path):
    qmt = FakeQmt(import_delay=0.3)
    started = time.monotonic()
    worker = threading.Thread(target=lambda: qmt.xtdata, name="first-user")
    worker.start()
    worker.join()
    assert time.monotonic() - started >= 0.3
    assert qmt.imported_on == ["first-user"]
    started = time.monotonic()
    assert qmt.xttrader is not None and qmt.xtconstant.STOCK_BUY == 23
    assert time.monotonic() - started < 0.2


def test_xtdata_prints_its_banner_on_every_connect_unless_told_not_to(qmt, capsys):
    xtdata = qmt.xtdata
    xtdata.get_full_tick([CODE])
    xtdata.get_full_tick([CODE])
    assert capsys.readouterr().out.count("xtdata连接成功") == 1  # once per connection
    qmt.running = False
    with pytest.raises(Exception, match="无法连接"):
        xtdata.get_full_tick([CODE])
    qmt.running = True
    xtdata.get_full_tick([CODE])
    assert "enable_hello = False" in capsys.readouterr().out  # again after a reconnect
    xtdata.enable_hello = False
    qmt.running = False
    with pytest.raises(Exception, match="无法连接"):
        xtdata.get_full_tick([CODE])
    qmt.running = True
    xtdata.get_full_tick([CODE])
    assert capsys.readouterr().out == ""


def test_full_tick_keeps_the_last_snapshot_whatever_its_date(tmp_path):
    now = [dt.datetime(2024, 3, 4, 15, 0, tzinfo=mkt.SHANGHAI)]
    qmt = FakeQmt(clock=lambda: now[0])
    qmt.market.set_price(CODE, 10.0)
    now[0] = dt.datetime(2024, 3, 5, 9, 20, tzinfo=mkt.SHANGHAI)  # the next morning, before any trade
    tick = qmt.xtdata.get_full_tick([CODE])[CODE]
    assert tick["time"] == int(dt.datetime(2024, 3, 4, 15, 0, tzinfo=mkt.SHANGHAI).timestamp() * 1000)


def test_klines_in_lots_with_base_prices_suspensions_and_the_real_index(qmt):
    qmt.market.add_bars(daily_bars())
    qmt.market.add_action(CODE, "2024-03-06", interest=0.1, stock_bonus=0.3, stock_gift=0.1)
    qmt.market.suspend(CODE, ["2024-03-07"])
    qmt.market.add_bars(daily_bars().assign(date=["2024-03-08", "2024-03-15", "2024-03-22"]), "1w")
    xtdata = qmt.xtdata
    xtdata.download_history_data2([CODE], "1d")
    xtdata.download_history_data2([CODE], "1w")

    frame = xtdata.get_market_data_ex([], [CODE], "1d", "20240304", "20240310")[CODE]
    assert list(frame.index) == ["20240304", "20240305", "20240306", "20240307"]
    assert frame["volume"].tolist() == [1e4, 2e4, 1.5e4, 0.0]  # lots; the suspended day is a filled row
    reference = round((10.1 - 0.1) / 1.4, 2)  # the ex-rights reference price of 2024-03-06
    assert frame["preClose"].tolist() == [0.0, 10.2, reference, 9.9]
    assert frame["suspendFlag"].tolist() == [0, 0, 0, 1]
    assert frame.loc["20240307", ["open", "high", "low", "close"]].tolist() == [9.9] * 4
    assert list(xtdata.get_market_data_ex([], [CODE], "1d", fill_data=False)[CODE].index)[-1] == "20240306"
    weekly = xtdata.get_market_data_ex([], [CODE], "1w")[CODE]
    assert list(weekly.index) == ["20240308000000", "20240315000000", "20240322000000"]  # not 'YYYYMMDD'


def test_divid_factors_and_listing_date(qmt):
    qmt.market.add_bars(daily_bars())
    qmt.market.add_action(CODE, "2024-03-06", interest=0.1, stock_bonus=0.3, stock_gift=0.1)
    qmt.market.add_action(CODE, "2025-06-02", allot_num=0.2, allot_price=8.0)
    qmt.market.set_instrument(CODE, "浦发银行", prev_close=10.0, open_date=dt.date(1999, 11, 10))
    factors = qmt.xtdata.get_divid_factors(CODE, "20240101", "20241231")
    assert list(factors.index) == ["20240306"]
    assert list(factors.columns) == ["time", "interest", "stockBonus", "stockGift", "allotNum", "allotPrice",
                                     "gugai", "dr"]
    row = factors.iloc[0]
    assert (row["interest"], row["stockBonus"], row["stockGift"]) == (0.1, 0.3, 0.1)
    assert row["time"] == int(dt.datetime(2024, 3, 6, tzinfo=mkt.SHANGHAI).timestamp() * 1000)
    assert row["dr"] == pytest.approx(10.1 / round(10.0 / 1.4, 2))
    assert len(qmt.xtdata.get_divid_factors(CODE)) == 2
    assert qmt.xtdata.get_instrument_detail(CODE)["OpenDate"] == "19991110"


def test_tick_history_is_served_for_the_tick_period(qmt):
    qmt.market.set_price(CODE, 10.1, volume=300, time=dt.datetime(2024, 3, 5, 9, 31, tzinfo=mkt.SHANGHAI))
    qmt.xtdata.download_history_data2([CODE], "tick")
    ticks = qmt.xtdata.get_market_data_ex([], [CODE], "tick", "20240305", "20240305")[CODE]
    assert list(ticks.index) == ["20240305093100"]
    assert (ticks["lastPrice"].iloc[0], ticks["volume"].iloc[0]) == (10.1, 3)
