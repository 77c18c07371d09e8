"""Manual orders, bad input from users and feeds, and racing sells on one position."""

from __future__ import annotations

import datetime as dt
import math
import threading

import numpy as np
import pandas as pd
import pytest
from engine_support import GatedFeed, close_bars, entry_days, fast_settings, holdings_from_trades, wait_for

from miniqmt_lab.config import FeeSettings
from miniqmt_lab.engine import Engine, ReplayClock, ReplayFeed, SimBroker
from miniqmt_lab.engine.book import PendingOrder, Position, PositionBook
from miniqmt_lab.engine.threads import ThreadState
from miniqmt_lab.errors import (
    BrokerTimeout,
    EngineNotRunning,
    InsufficientCash,
    InsufficientPosition,
    InvalidPrice,
    InvalidStockCode,
    InvalidVolume,
    OrderRejected,
    OutsideTradingTime,
    PriceLimitBreached,
)
from miniqmt_lab.market import SHANGHAI, fee_params
from miniqmt_lab.rules import holding
from miniqmt_lab.schema import BrokerPosition, Side

pytestmark = pytest.mark.timeout(120)

CODE = "600000.SH"


@pytest.fixture
def engine_on_day_one(tmp_path):
    """A running engine that has seen one round: 600000.SH at 10.0 (previous close 10.0)."""
    bars = close_bars({CODE: [10.0, 10.0, 10.0], "000001.SZ": [5.0, 5.0, 5.0]})
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    engine = Engine(fast_settings(tmp_path, simulation_balance=100_000.0, max_order_value=10_000_000.0), feed=feed)
    engine.start()
    feed.step(engine, 2)  # two days, so the second one has previous closes and price limits
    yield engine, feed
    engine.stop()


def test_manual_orders_fill_at_the_given_or_last_price(engine_on_day_one):
    engine, feed = engine_on_day_one
    order_id = engine.buy(CODE, 1000)
    assert order_id
    engine.buy("000001", amount=2_550.0, price=5.0)  # bare code, amount in yuan: 500 shares
    trades = engine.trades()
    assert trades[["stock_code", "side", "price", "volume", "rule"]].values.tolist() == [
        [CODE, "BUY", 10.0, 1000, "manual"], ["000001.SZ", "BUY", 5.0, 500, "manual"]
    ]
    feed.step(engine)  # next day: available
    engine.sell(CODE, 400, price=10.0)
    pos = engine.positions().set_index("stock_code")
    assert pos.loc[CODE, "volume"] == 600 and pos.loc[CODE, "available"] == 600
    signals = engine.signals()
    assert (signals["rule"] == "manual").all() and (signals["outcome"] == "executed").all()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda e: e.buy("123456.SH", 100), InvalidStockCode),
        (lambda e: e.buy("510300.SH", 100), InvalidStockCode),  # a fund, not a stock
        (lambda e: e.buy(CODE, 150), InvalidVolume),
        (lambda e: e.buy(CODE, 0), InvalidVolume),
        (lambda e: e.buy(CODE, 100.5), InvalidVolume),
        (lambda e: e.buy(CODE), InvalidVolume),
        (lambda e: e.buy(CODE, amount=500.0), InvalidVolume),  # less than one lot
        (lambda e: e.buy(CODE, 100, price=math.nan), InvalidPrice),
        (lambda e: e.buy(CODE, 100, price=-1.0), InvalidPrice),
        (lambda e: e.buy(CODE, 100, price=0), InvalidPrice),
        (lambda e: e.buy("600004.SH", 100), InvalidPrice),  # no price known yet
        (lambda e: e.buy(CODE, 100, price=11.0), PriceLimitBreached),  # the up-limit of 10.0 is 11.00
        (lambda e: e.buy(CODE, 20_000), InsufficientCash),
        (lambda e: e.sell(CODE, 100), InsufficientPosition),  # nothing held
    ],
)
def test_bad_orders_raise_typed_errors_and_the_engine_goes_on(engine_on_day_one, call, error):
    engine, _ = engine_on_day_one
    with pytest.raises(error):
        call(engine)
    assert engine.trades().empty
    assert engine.snapshot().cash == 100_000.0
    engine.buy(CODE, 100)  # still trading
    assert len(engine.trades()) == 1


def test_sell_refusals(engine_on_day_one):
    engine, feed = engine_on_day_one
    engine.buy(CODE, 1000)
    with pytest.raises(InsufficientPosition):  # T+1: bought today
        engine.sell(CODE, 100)
    feed.step(engine)
    with pytest.raises(InvalidVolume):  # an odd lot that does not empty the holding
        engine.sell(CODE, 150)
    with pytest.raises(InsufficientPosition):
        engine.sell(CODE, 1100)
    with pytest.raises(PriceLimitBreached):  # the down-limit of 10.0 is 9.00
        engine.sell(CODE, 100, price=9.0)
    assert engine.sell(CODE, 1000)
    assert engine.positions().empty


def test_orders_outside_trading_time_and_on_a_stopped_engine(tmp_path):
    saturday_noon = dt.datetime(2024, 3, 9, 12, 0, tzinfo=SHANGHAI)
    engine = Engine(fast_settings(tmp_path), clock=ReplayClock(saturday_noon))
    with pytest.raises(EngineNotRunning):
        engine.buy(CODE, 100, price=10.0)
    engine.start()
    try:
        with pytest.raises(OutsideTradingTime):
            engine.buy(CODE, 100, price=10.0)
        assert engine.running
    finally:
        engine.stop()
    engine.stop()  # idempotent
    with pytest.raises(EngineNotRunning, match="the engine is stopped: start it"):
        engine.sell(CODE, 100, price=10.0)
    engine.start()  # a stopped engine starts again and takes orders
    try:
        with pytest.raises(OutsideTradingTime):
            engine.buy(CODE, 100, price=10.0)
    finally:
        engine.stop()


def test_bad_ticks_are_logged_recorded_and_skipped(tmp_path):
    day = pd.Timestamp("2024-03-04")
    rows = []
    for i, (code, price) in enumerate(
        [(CODE, 10.0), ("999999.SH", 10.0), ("000001.SZ", math.nan), ("000002.SZ", 0.0), ("300001.SZ", -3.0),
         ("600004", 12.0), (CODE, 9.2)]
    ):
        moment = day + pd.Timedelta(hours=10, minutes=i)
        rows.append({"time": moment, "stamp": moment, "stock_code": code, "price": price, "bar_close": True,
                     "prev_close": np.nan})
    ticks = pd.DataFrame(rows)
    next_day = day + pd.Timedelta(days=1, hours=10)
    ticks.loc[len(ticks)] = {"time": next_day, "stamp": next_day, "stock_code": CODE, "price": 9.2, "bar_close": True,
                             "prev_close": 10.0}
    entries = pd.DataFrame({CODE: [True]}, index=[day + pd.Timedelta(hours=10)])
    engine = Engine(fast_settings(tmp_path), feed=ReplayFeed.from_ticks(ticks), entries=entries)
    engine.start()
    try:
        assert engine.wait_idle(30)
        assert all(t.state == ThreadState.RUNNING for t in engine.snapshot().threads)
    finally:
        engine.stop()
    issues = engine.issues()
    assert issues["kind"].tolist() == ["bad_tick"] * 5
    assert issues["stock_code"].tolist() == ["999999.SH", "000001.SZ", "000002.SZ", "300001.SZ", "600004"]
    assert engine.snapshot().last_error
    # the good ticks around them traded: the entry, then the stop loss the next day
    assert engine.trades()["rule"].tolist() == ["entry", "stop_loss"]


def test_reservations_never_oversell_under_threads():
    fees = fee_params(FeeSettings())
    book = PositionBook(1_000_000.0)
    book.load([Position(CODE, "", holding(1000, 1000, 10.0))], None, None)
    granted: list[int] = []
    barrier = threading.Barrier(8)

    def sell_lots() -> None:
        barrier.wait()
        for i in range(10):
            order = PendingOrder(f"{threading.get_ident()}-{i}", CODE, Side.SELL, 100, 10.0, 6)
            try:
                book.reserve(order, fees)
                granted.append(order.volume)
            except InsufficientPosition:
                pass

    threads = [threading.Thread(target=sell_lots) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 1000 and book.free_available(CODE) == 0


def test_manual_and_rule_sells_racing_never_sell_more_than_available(tmp_path):
    codes = [CODE, "600004.SH", "000001.SZ", "000002.SZ"]
    # day 1: entries at 10; day 2 at 9.2, a stop loss on every stock, while manual sells race it
    bars = close_bars({c: [10.0, 9.2, 9.2] for c in codes})
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    engine = Engine(fast_settings(tmp_path), feed=feed, entries=entry_days(bars, {c: [0] for c in codes}))
    engine.start()
    refused: list[str] = []
    stop = threading.Event()

    def hammer(code: str) -> None:
        while not stop.is_set():
            try:
                engine.sell(code, 100, price=9.2)  # marketable on day 2 (a stale limit would rest)
            except OrderRejected as exc:
                refused.append(type(exc).__name__)

    try:
        feed.step(engine)
        workers = [threading.Thread(target=hammer, args=(c,)) for c in codes for _ in range(3)]
        for w in workers:
            w.start()
        feed.step(engine)
        wait_for(lambda: engine.positions().empty, what="every holding sold")
        stop.set()
        for w in workers:
            w.join(10)
    finally:
        stop.set()
        engine.stop()
    trades = engine.trades()
    bought = trades[trades["side"] == "BUY"].groupby("stock_code")["volume"].sum()
    sold = trades[trades["side"] == "SELL"].groupby("stock_code")["volume"].sum()
    pd.testing.assert_series_equal(sold, bought)  # every share sold exactly once
    assert holdings_from_trades(trades) == {}
    assert set(refused) <= {"InsufficientPosition"}
    # the engine refused what was no longer available (a rule sell included); the paper broker, which
    # refuses oversells too, never had to
    rejected = engine.signals().query("outcome == 'rejected'")
    assert rejected["message"].str.startswith("insufficient_available").all()
    assert list(engine.broker.holdings()) == []


class HangingBroker(SimBroker):
    """A paper broker whose submit hangs until released, like a client that stopped answering."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.release = threading.Event()

    def submit(self, order):
        self.release.wait(10)
        return super().submit(order)


def test_a_hung_broker_call_leaves_the_order_unknown_never_doubled(tmp_path):
    bars = close_bars({CODE: [10.0, 10.0]})
    settings = fast_settings(tmp_path, call_timeout=0.3)
    broker = HangingBroker(settings)
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    engine = Engine(settings, broker=broker, feed=feed)
    engine.start()
    try:
        feed.step(engine)
        with pytest.raises(BrokerTimeout, match="may be at the broker"):
            engine.buy(CODE, 100)
        assert not broker.release.is_set()  # the engine gave up while the broker still hung
        assert engine.signals()["outcome"].tolist() == ["unknown"]
        book = engine.trader.book
        assert book.free_cash() < engine.snapshot().cash  # the reservation is held: the order may fill
        assert engine.status()["unknown_orders"]
        broker.release.set()
        # the late order reached the broker after all: its fill settles it and frees the reservation
        wait_for(lambda: len(engine.trades()) == 1, what="the late fill")
        wait_for(lambda: book.free_cash() == engine.snapshot().cash, what="the reservation released")
        assert engine.signals()["outcome"].tolist() == ["executed"]
        engine.buy(CODE, 100)
        assert len(engine.trades()) == 2
        feed.step(engine)
    finally:
        broker.release.set()
        engine.stop()
    assert engine.positions()["volume"].tolist() == [200]


class ExternalBroker(SimBroker):
    """A paper broker that also reports a holding the engine never bought (bought by hand elsewhere)."""

    def positions(self):
        return [*super().positions(), BrokerPosition("000001.SZ", 500, 500, 9.0, 9.5, 4750.0, "平安银行")]


def test_broker_sync_adopts_what_the_broker_holds(tmp_path):
    engine = Engine(fast_settings(tmp_path), broker=ExternalBroker(fast_settings(tmp_path)),
                    clock=ReplayClock(dt.datetime(2024, 3, 4, 10, 0, tzinfo=SHANGHAI)))
    engine.start()
    try:
        wait_for(lambda: not engine.positions().empty, what="the broker sync")
    finally:
        engine.stop()
    row = engine.positions().iloc[0]
    assert (row["stock_code"], row["volume"], row["available"], row["cost"]) == ("000001.SZ", 500, 500, 9.0)
    issues = engine.issues()
    assert issues["kind"].tolist() == ["broker_sync"] and "not in the book" in issues["message"].iloc[0]
