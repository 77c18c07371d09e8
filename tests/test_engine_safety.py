"""Money safety (issue 9): one source of truth for the mode, a paper broker that fills like the market,
bad ticks that change nothing, orders of unknown outcome never doubled, fills never lost, a failure on
one tick or one execution that takes nothing else down, and the kill switch every order passes."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import sqlite3
import threading
import time

import pandas as pd
import pytest
from engine_support import DelayedBroker, GatedFeed, close_bars, entry_days, fast_settings, wait_for

from miniqmt_lab import config
from miniqmt_lab.config import ConfigError, Settings
from miniqmt_lab.engine import Engine, ReplayClock, ReplayFeed, SimBroker
from miniqmt_lab.engine.engine import ModeMismatch
from miniqmt_lab.engine.risk import OrderTooLarge, RateLimited, TradingHalted
from miniqmt_lab.errors import InvalidPrice, PriceLimitBreached
from miniqmt_lab.factory import build_engine
from miniqmt_lab.market import SHANGHAI
from miniqmt_lab.qmt import QmtBroker
from miniqmt_lab.schema import OrderRequest, Side, Tick
from miniqmt_lab.xtquant_double import FakeQmt

pytestmark = pytest.mark.timeout(120)

CODE = "600000.SH"
ACCOUNT = "8800001234"


# -- one source of truth for the mode -------------------------------------------------------------------


def test_paper_settings_with_a_broker_that_reaches_an_account_fail_at_construction(tmp_path, userdata):
    settings = fast_settings(tmp_path)
    live_broker = QmtBroker(settings.with_values(qmt_userdata_path=str(userdata), account_id=ACCOUNT),
                            modules=FakeQmt(account_id=ACCOUNT, userdata_path=userdata))
    with pytest.raises(ModeMismatch, match=r"simulation = true .* sends orders to a real account.*build_engine"):
        Engine(settings, broker=live_broker)


def test_live_settings_with_the_paper_broker_fail_at_construction(tmp_path, userdata):
    live = fast_settings(tmp_path, simulation=False, account_id=ACCOUNT, qmt_userdata_path=str(userdata))
    with pytest.raises(ModeMismatch, match=r"simulation = false .* paper broker"):
        Engine(live)  # the default broker is the paper broker
    assert not (tmp_path / "data" / "live.sqlite").exists()  # nothing was written


def test_paper_on_live_quotes_sends_nothing_to_the_account(tmp_path, userdata):
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata)
    settings = fast_settings(tmp_path, account_id=ACCOUNT, qmt_userdata_path=str(userdata))
    engine = build_engine(settings, modules=qmt)
    assert engine.mode == "paper" and engine.database_path.name == "paper.sqlite"
    assert isinstance(engine.broker, SimBroker) and not engine.snapshot().broker.live


def test_live_settings_build_a_live_engine(tmp_path, userdata):
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata)
    live = fast_settings(tmp_path, simulation=False, account_id=ACCOUNT, qmt_userdata_path=str(userdata))
    engine = build_engine(live, modules=qmt)
    assert engine.mode == "live" and engine.database_path.name == "live.sqlite"
    assert engine.snapshot().broker.live


def test_live_from_the_environment_alone_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[engine]\nsimulation = true\n", encoding="utf-8")
    env = {"MINIQMT_SIMULATION": "0", "MINIQMT_AUTO_TRADING": "1", "MINIQMT_ACCOUNT_ID": ACCOUNT,
           "MINIQMT_QMT_USERDATA_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match="cannot be switched on from the environment alone"):
        config.load(path, environ=env)
    allowed = config.load(path, environ={**env, "MINIQMT_ALLOW_LIVE_FROM_ENV": "1"})
    assert allowed.engine.simulation is False and allowed.engine.auto_trading is True
    file_says_live = tmp_path / "live.toml"
    file_says_live.write_text(f"[engine]\nsimulation = false\n[qmt]\naccount_id = '{ACCOUNT}'\n"
                              f"qmt_userdata_path = '{tmp_path}'\n", encoding="utf-8")
    assert config.load(file_says_live, environ={"MINIQMT_AUTO_TRADING": "1"}).engine.simulation is False


# -- a paper broker that fills like the market ----------------------------------------------------------


MORNING = dt.datetime(2024, 3, 4, 10, 0, tzinfo=SHANGHAI)


def paper_broker_at(price: float, base: float = 10.0) -> SimBroker:
    broker = SimBroker(Settings(), clock=ReplayClock(MORNING))
    broker.connect()
    broker.observe_tick(Tick(CODE, price, MORNING), base)
    return broker


def order(side: Side, volume: int, price: float | None, signal: str = "") -> OrderRequest:
    return OrderRequest(CODE, side, volume, price, "manual", signal)


def drain(broker: SimBroker) -> list:
    events = []
    while not broker.events.empty():
        events.append(broker.events.get_nowait())
    return events


def test_paper_limit_orders_fill_at_the_market_not_at_the_order_price():
    broker = paper_broker_at(10.0)
    # a buy limit above the market fills at the market, not at the limit
    broker.submit(order(Side.BUY, 1000, 10.5))
    fills = [e for e in drain(broker) if type(e).__name__ == "Fill"]
    assert [(f.price, f.volume) for f in fills] == [(10.0, 1000)]
    # far-away limits rest: no fill at 0.01 or 8.00 ... (8.00 is outside the band 9.00-11.00: refused)
    with pytest.raises(PriceLimitBreached):
        broker.submit(order(Side.BUY, 100, 0.01))
    with pytest.raises(PriceLimitBreached):
        broker.submit(order(Side.BUY, 100, 8.0))
    with pytest.raises(PriceLimitBreached):
        broker.submit(order(Side.SELL, 100, 1000.0))
    broker.submit(order(Side.BUY, 100, 9.5))
    assert [type(e).__name__ for e in drain(broker)] == ["OrderUpdate"]  # reported, resting
    assert broker.asset().frozen_cash > 0


def test_off_grid_prices_and_stocks_without_a_quote_are_refused():
    broker = paper_broker_at(10.0)
    with pytest.raises(InvalidPrice, match=r"0\.01 price grid"):
        broker.submit(order(Side.BUY, 100, 10.005))
    with pytest.raises(InvalidPrice, match=r"no price of 600004\.SH"):
        broker.submit(OrderRequest("600004.SH", Side.BUY, 100, 10.0, "manual"))


def test_resting_orders_fill_when_a_tick_crosses_can_be_cancelled_and_expire():
    broker = paper_broker_at(10.0)
    broker.submit(order(Side.BUY, 1000, 10.0))  # marketable: a holding to sell later
    drain(broker)
    broker._holdings = {CODE: broker._holdings[CODE]._replace(available=1000)}  # a later day: T+1 passed
    buy = broker.submit(order(Side.BUY, 100, 9.8))
    sell = broker.submit(order(Side.SELL, 100, 10.4))
    cancel_me = broker.submit(order(Side.BUY, 100, 9.6))
    drain(broker)
    broker.observe_tick(Tick(CODE, 9.7, MORNING), 10.0)  # crosses the 9.80 buy: fills at its limit
    fills = [e for e in drain(broker) if type(e).__name__ == "Fill"]
    assert [(f.order_id, f.price) for f in fills] == [(buy, 9.8)]
    broker.cancel(cancel_me)
    assert [e.status.value for e in drain(broker)] == ["cancelled"]
    broker.observe_tick(Tick(CODE, 10.5, MORNING), 10.0)
    fills = [e for e in drain(broker) if type(e).__name__ == "Fill"]
    assert [(f.order_id, f.price) for f in fills] == [(sell, 10.4)]
    leftover = broker.submit(order(Side.BUY, 100, 9.0))
    drain(broker)
    tomorrow = MORNING + dt.timedelta(days=1)
    broker.observe_tick(Tick(CODE, 10.0, tomorrow), 10.0)
    statuses = [(e.order_id, e.status.value) for e in drain(broker) if type(e).__name__ == "OrderUpdate"]
    assert (leftover, "expired") in statuses


def test_manual_orders_on_the_paper_engine_fill_at_the_market(tmp_path):
    bars = close_bars({CODE: [10.0, 10.0, 10.0]})
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    engine = Engine(fast_settings(tmp_path), feed=feed)
    engine.start()
    try:
        feed.step(engine, 2)
        engine.buy(CODE, 1000, price=10.9)  # above the market: fills at 10.00
        resting = engine.buy(CODE, 100, price=9.5)  # below: rests, its cash reserved
        assert engine.trades()["price"].tolist() == [10.0]
        assert engine.trader.book.free_cash() < engine.snapshot().cash
        engine.cancel(resting)
        wait_for(lambda: engine.trader.book.free_cash() == engine.snapshot().cash, what="the cancel")
        outcomes = engine.signals().set_index("volume")["outcome"].to_dict()
        assert outcomes == {1000: "executed", 100: "not_executed"}
    finally:
        engine.stop()


# -- glitch ticks ------------------------------------------------------------------------------------------


def test_ticks_outside_the_band_change_nothing(tmp_path):
    # day 1 entry at 10; day 2 (band 9.00-11.00) a glitch at 1000, then a glitch at 100, then normal prices
    feed = ReplayFeed.from_ticks(tick_frame([
        ("2024-03-04 14:57", 10.0, True, math.nan),
        ("2024-03-05 09:30", 1000.0, False, 10.0),
        ("2024-03-05 09:31", 100.0, False, 10.0),
        ("2024-03-05 09:32", 10.8, False, 10.0),
    ]))
    engine = Engine(fast_settings(tmp_path), feed=feed, entries="always")
    engine.start()
    try:
        assert engine.wait_idle(30)
    finally:
        engine.stop()
    trades = engine.trades()
    assert trades["rule"].tolist() == ["entry", "take_profit_initial"]  # 10.8 is +8%: the first take-profit
    assert trades["price"].tolist() == [10.0, 10.8]
    position = engine.positions().iloc[0]
    assert position["high"] == 10.8  # neither glitch raised the high
    assert engine.status()["monitor"]["bad_ticks"] == 2
    issues = engine.issues()  # the same problem is recorded once per repeat window
    assert issues["kind"].tolist() == ["bad_tick"]
    assert "outside the day's band 9.00-11.00" in issues["message"].iloc[0]
    with sqlite3.connect(engine.journal_path) as con:  # the journal keeps both ticks, each with its reason
        notes = [n for (n,) in con.execute("SELECT note FROM ticks ORDER BY rowid")]
    assert [n.startswith("bad tick: price") for n in notes] == [False, True, True, False]


def tick_frame(rows):
    times = pd.to_datetime([r[0] for r in rows])
    stamps = [t.normalize() + pd.Timedelta(hours=15) if closes else t for t, (_, _, closes, _) in zip(times, rows,
                                                                                                       strict=True)]
    return pd.DataFrame({"time": times, "stamp": stamps, "stock_code": CODE, "price": [r[1] for r in rows],
                         "bar_close": [r[2] for r in rows], "prev_close": [r[3] for r in rows]})


def test_the_base_price_comes_from_the_book_when_a_restart_tick_has_none(tmp_path):
    first = ReplayFeed.from_ticks(tick_frame([("2024-03-04 14:57", 10.0, True, math.nan)]))
    engine = Engine(fast_settings(tmp_path), feed=first, entries="always")
    engine.start()
    assert engine.wait_idle(30)
    engine.stop()
    # the next day's first tick arrives without a previous close: 0.5 is far outside 9.00-11.00
    second = ReplayFeed.from_ticks(tick_frame([("2024-03-05 09:30", 0.5, False, math.nan)]))
    again = Engine(fast_settings(tmp_path), feed=second, entries="none")
    again.start()
    try:
        assert again.wait_idle(30)
    finally:
        again.stop()
    assert again.trades()["rule"].tolist() == ["entry"]  # no stop loss at 0.5
    assert again.issues()["kind"].tolist() == ["bad_tick"]


# -- orders of unknown outcome -------------------------------------------------------------------------------


class LateBroker(SimBroker):
    """A paper broker whose submit answers just past the engine's call timeout (and then fills)."""

    def __init__(self, settings, delay: float) -> None:
        super().__init__(settings)
        self.delay = delay
        self.submits = 0

    def submit(self, order):
        self.submits += 1
        time.sleep(self.delay)
        return super().submit(order)


def test_a_rule_order_answered_past_the_timeout_fills_once_and_no_rule_doubles_it(tmp_path):
    bars = close_bars({CODE: [10.0, 9.2, 9.2, 9.2]})  # an entry, then a grid level the rules would re-fire
    settings = fast_settings(tmp_path, call_timeout=0.3, signal_repeat_seconds=1.0)
    broker = LateBroker(settings, delay=0.45)
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    engine = Engine(settings, broker=broker, feed=feed, entries=entry_days(bars, {CODE: [0]}))
    engine.start()
    try:
        feed.step(engine)
        assert engine.signals()["outcome"].tolist() == ["unknown"]
        assert engine.trader.book.free_cash() < engine.snapshot().cash  # reservation held
        feed.step(engine)  # the next day's tick: the stock has an unresolved order, no rule runs on it
        wait_for(lambda: len(engine.trades()) == 1, what="the late fill")
        wait_for(lambda: engine.trader.book.free_cash() == engine.snapshot().cash, what="the release")
        feed.step(engine, 2)
    finally:
        engine.stop()
    trades = engine.trades()
    assert trades["rule"].tolist()[0] == "entry" and (trades["rule"] == "entry").sum() == 1
    assert engine.signals()["outcome"].iloc[0] == "executed"
    assert broker.submits == len(trades)  # nothing was sent twice


class BlackHoleBroker(SimBroker):
    """A broker whose submit never answers and never reaches the venue: the order was never received."""

    def submit(self, order):
        threading.Event().wait(5)
        raise RuntimeError("never answered")


def test_an_order_the_broker_never_received_is_settled_from_its_order_list(tmp_path):
    bars = close_bars({CODE: [10.0, 10.0]})
    settings = fast_settings(tmp_path, call_timeout=0.2)
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    engine = Engine(settings, broker=BlackHoleBroker(settings), feed=feed)
    engine.start()
    try:
        feed.step(engine)
        with pytest.raises(Exception, match="may be at the broker"):
            engine.buy(CODE, 100)
        wait_for(lambda: engine.signals()["outcome"].iloc[0] == "not_executed", what="the settlement")
        assert "never received" in engine.signals()["message"].iloc[0]
        assert engine.trader.book.free_cash() == engine.snapshot().cash
    finally:
        engine.stop()


# -- fills are never lost -------------------------------------------------------------------------------------


def test_a_fill_the_locked_database_refuses_is_kept_halts_trading_and_is_written_later(tmp_path):
    bars = close_bars({CODE: [10.0, 10.0, 10.0]})
    settings = fast_settings(tmp_path, database_timeout=0.1)
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    broker = DelayedBroker(settings)  # the fill arrives when the test releases it
    engine = Engine(settings, broker=broker, feed=feed)
    engine.start()
    blocker = sqlite3.connect(engine.database_path, timeout=5.0, isolation_level=None)
    try:
        feed.step(engine)
        engine.trader.broker_events.retry_pause = 0.01
        engine.buy(CODE, 1000)
        blocker.execute("BEGIN EXCLUSIVE")  # another program holds the database when the fill comes
        broker.release()
        wait_for(lambda: engine.status()["unsaved_fills"] == 1, what="the kept fill")
        assert engine.snapshot().trading_state == "halted"
        assert engine.snapshot().state_reason.startswith(("storage failure", "fill"))
        assert engine.positions()["volume"].tolist() == [1000]  # the book shows the fill
        side_file = engine.trader.ctx.fills.path
        assert side_file.exists() and '"volume": 1000' in side_file.read_text()
        blocker.execute("ROLLBACK")
        wait_for(lambda: engine.status()["unsaved_fills"] == 0, what="the kept fill written")
        assert not side_file.exists()
        assert engine.trades()["volume"].tolist() == [1000]
        assert engine.signals()["outcome"].tolist() == ["executed"]
        with pytest.raises(TradingHalted):  # a person switches trading back on, not the engine
            engine.buy(CODE, 100)
        engine.set_trading_state("active", "database back")
        engine.buy(CODE, 100)
        broker.release()
        wait_for(lambda: len(engine.trades()) == 2, what="the second fill")
    finally:
        blocker.close()
        engine.stop()
    trades = engine.trades()
    assert trades["volume"].tolist() == [1000, 100]
    expected_cash = settings.engine.simulation_balance - (trades["amount"] + trades["commission"]).sum()
    assert engine.snapshot().cash == pytest.approx(expected_cash)


def _quiet(call) -> None:
    with contextlib.suppress(Exception):  # the buy may time out while the database is locked
        call()


def test_a_fill_left_in_the_side_file_is_written_at_the_next_start(tmp_path):
    bars = close_bars({CODE: [10.0, 10.0]})
    settings = fast_settings(tmp_path)
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    engine = Engine(settings, feed=feed)
    engine.start()
    feed.step(engine)
    engine.buy(CODE, 1000)
    trade = engine.store.ledger_frame().iloc[0]
    engine.stop()
    # a crash while the database refused a second fill: only the side file has it
    from miniqmt_lab.engine.fill_keeper import trade_to_json
    from miniqmt_lab.engine.store import TradeRow

    kept = TradeRow("T-kept", "O-kept", trade["time"].to_pydatetime().replace(tzinfo=None), CODE, "BUY", 10.0, 500,
                    5000.0, 5.05, "manual", "", 0.0, 0.0)
    side_file = engine.trader.ctx.fills.path
    side_file.write_text(trade_to_json(kept) + "\n", encoding="utf-8")
    again = Engine(settings, feed=ReplayFeed.from_bars(bars.iloc[1:], tick_mode="close"))
    again.start()
    again.stop()
    assert again.trades()["volume"].tolist() == [1000, 500]
    assert again.positions()["volume"].tolist() == [1500]
    assert not side_file.exists()


def test_a_book_save_racing_a_kept_fill_never_stores_the_fills_cash(tmp_path):
    # the sync thread's backstop save waits for the book's lock while the events thread keeps a fill the
    # database refused and applies it to the book: the save must then see the kept fill and write nothing
    from miniqmt_lab.engine.store import TradeRow

    engine = Engine(fast_settings(tmp_path))
    trader, book = engine.trader, engine.trader.book
    stored_cash = engine.store.load(0.0).cash
    real_lock, at_lock = book.lock, threading.Event()

    class WatchedLock:  # says when the save reaches the book's lock
        def __enter__(self):
            at_lock.set()
            return real_lock.__enter__()

        def __exit__(self, *exc):
            return real_lock.__exit__(*exc)

    saving = threading.Thread(target=trader.flush)
    with real_lock:
        book.lock = WatchedLock()
        saving.start()
        assert at_lock.wait(5)  # the save is at the lock, past anything it looked at before taking it
        kept = TradeRow("T-kept", "O-kept", dt.datetime(2024, 1, 2, 10), CODE, "BUY", 10.0, 1000, 10000.0, 5.0,
                        "manual", "", 0.0, stored_cash - 10005.0)
        trader.ctx.fills.keep(kept)
        book.cash = kept.cash_after
        book.dirty.add(CODE)
    saving.join(5)
    assert engine.store.load(0.0).cash == stored_cash  # the database's book still matches its trades
    assert engine.store.ledger_frame().empty


def test_corporate_actions_wait_while_fills_are_kept(tmp_path):
    from miniqmt_lab.engine.actions import apply_day_actions
    from miniqmt_lab.engine.store import TradeRow

    class ActionFeed(GatedFeed):
        def actions_on(self, day):
            return [(CODE, 0.5, 0.0)]

    engine = Engine(fast_settings(tmp_path), feed=ActionFeed(ReplayFeed.from_bars(close_bars({CODE: [10.0]}))))
    ctx = engine.trader.ctx
    ctx.fills.keep(TradeRow("T-kept", "O-kept", dt.datetime(2024, 1, 2, 10), CODE, "BUY", 10.0, 1000, 10000.0, 5.0,
                            "manual", "", 0.0, 0.0))
    try:
        assert apply_day_actions(ctx, dt.date(2024, 1, 3)) is None  # asked again with the next round
        assert "wait until the kept fills are written" in engine.issues()["message"].iloc[-1]
    finally:
        engine.trader.ctx.calls.close()
        engine.trader.ctx.feed_calls.close()


# -- one failure takes nothing else down ---------------------------------------------------------------------


class ExplodingEntries:
    """Entries that raise for one stock (a bug, a bad history): the round must go on with the others."""

    def is_entry(self, code, stamp, price):
        if code == "000001.SZ":
            raise RuntimeError("history is broken")
        return True

    def refresh(self):
        return None


def test_an_exception_on_one_tick_does_not_drop_the_rest_of_the_round(tmp_path):
    codes = ["000001.SZ", "000002.SZ", CODE]
    bars = close_bars({c: [10.0, 10.0] for c in codes})
    engine = Engine(fast_settings(tmp_path), feed=ReplayFeed.from_bars(bars, tick_mode="close"),
                    entries=ExplodingEntries())
    engine.start()
    try:
        assert engine.wait_idle(30)
    finally:
        engine.stop()
    assert sorted(engine.trades()["stock_code"]) == ["000002.SZ", CODE]
    assert engine.status()["monitor"]["tick_errors"] == 2
    assert set(engine.issues()["kind"]) == {"tick_error"}


def test_a_failed_execution_ends_its_signal_as_failed(tmp_path, monkeypatch):
    bars = close_bars({CODE: [10.0, 10.0]})
    engine = Engine(fast_settings(tmp_path), feed=ReplayFeed.from_bars(bars, tick_mode="close"),
                    entries=entry_days(bars, {CODE: [0]}))

    def broken_reserve(order, fees):
        raise RuntimeError("reservation bookkeeping broke")

    monkeypatch.setattr(engine.trader.book, "reserve", broken_reserve)
    engine.start()
    try:
        assert engine.wait_idle(30)
    finally:
        engine.stop()
    row = engine.signals().iloc[0]
    assert row["outcome"] == "failed" and "reservation bookkeeping broke" in row["message"]


# -- the kill switch and the pre-trade check ---------------------------------------------------------------------


@pytest.fixture
def running(tmp_path):
    bars = close_bars({CODE: [10.0, 10.0, 10.0]})
    feed = GatedFeed(ReplayFeed.from_bars(bars, tick_mode="close"))
    engine = Engine(fast_settings(tmp_path, max_orders_per_minute=3, max_order_value=50_000.0), feed=feed)
    engine.start()
    feed.step(engine, 1)
    yield engine, feed
    engine.stop()


def test_reducing_allows_sells_only_and_halted_nothing(running):
    engine, feed = running
    engine.buy(CODE, 1000)
    feed.step(engine)  # the next day: the shares are available (T+1)
    engine.set_trading_state("reducing", "end of the month")
    with pytest.raises(TradingHalted, match="reducing"):
        engine.buy(CODE, 100)
    engine.sell(CODE, 100)
    engine.set_trading_state("halted", "going home")
    with pytest.raises(TradingHalted, match=r"halted \(going home"):
        engine.sell(CODE, 100)
    rejected = engine.signals().query("outcome == 'rejected'")["message"]
    assert rejected.str.startswith("trading_halted").all() and len(rejected) == 2
    assert engine.snapshot().trading_state == "halted" and engine.snapshot().state_reason == "going home"


def test_rate_limit_and_order_value(running):
    engine, _ = running
    with pytest.raises(OrderTooLarge, match="max_order_value"):
        engine.buy(CODE, 5100)  # 51,000 yuan
    engine.buy(CODE, 100)
    engine.buy(CODE, 100)
    engine.buy(CODE, 100)
    with pytest.raises(RateLimited, match="3 orders within a minute"):
        engine.buy(CODE, 100)


def test_a_halt_survives_a_restart(tmp_path):
    settings = fast_settings(tmp_path)
    engine = Engine(settings)
    engine.start()
    engine.set_trading_state("halted", "broker maintenance")
    engine.stop()
    again = Engine(settings)
    assert again.snapshot().trading_state == "halted" and again.snapshot().state_reason == "broker maintenance"


class AwayBroker(SimBroker):
    def positions(self):
        raise ConnectionError("the QMT client is not running")


def test_a_broker_that_stays_away_halts_trading(tmp_path):
    settings = fast_settings(tmp_path, broker_away_halt_seconds=0.3)
    feed = GatedFeed(ReplayFeed.from_bars(close_bars({CODE: [10.0, 10.0]}), tick_mode="close"))
    engine = Engine(settings, broker=AwayBroker(settings), feed=feed)
    engine.start()
    try:
        wait_for(lambda: engine.snapshot().trading_state == "halted", what="the halt")
        assert "broker has been away" in engine.snapshot().state_reason
    finally:
        engine.stop()
