"""The engine on QmtBroker over the fake client when a rule's order fills in parts.

The client fills part of an order (``FakeQmt.partial_next``) and the rest is cancelled or filled
later. Every partial fill is a trade record; the book follows the fills by the kernel's arithmetic
(cash + cost of holdings = initial cash + realised P&L - fees); a grid step and the first take-profit
count once per order, not once per fill; and no share is sold that is not available.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from engine_support import GatedFeed, close_bars, entry_days, fast_settings, ledger_identity, wait_for

from miniqmt_lab.engine import Engine, ReplayFeed
from miniqmt_lab.errors import InsufficientPosition
from miniqmt_lab.qmt import QmtBroker
from miniqmt_lab.schema import LOT, TickRound
from miniqmt_lab.xtquant_double import FakeMarket, FakeQmt

pytestmark = pytest.mark.timeout(60)

ACCOUNT = "8800001234"
CODE = "600000.SH"
UNIT = 20_000.0  # the default position_unit


def lots(amount: float, price: float) -> int:
    return int(math.floor(amount / price / LOT)) * LOT


class MarketFeed(GatedFeed):
    """A gated replay that also quotes each delivered round to the fake client, so its limit orders
    fill at the replayed prices and it knows each day's previous close."""

    def __init__(self, replay: ReplayFeed, market: FakeMarket) -> None:
        super().__init__(replay)
        self.market = market

    def next_round(self, timeout: float) -> TickRound | None:
        rnd = super().next_round(timeout)
        if rnd is not None:
            for tick in rnd.ticks:
                self.market.set_instrument(tick.code, tick.name, prev_close=tick.prev_close)
                self.market.set_price(tick.code, tick.price, time=tick.time)
        return rnd


@dataclass
class Rig:
    engine: Engine
    qmt: FakeQmt
    feed: MarketFeed

    def step(self, rounds: int = 1) -> None:
        """Deliver the next day(s) and wait until the engine has handled them."""
        self.feed.step(self.engine, rounds)

    def wait_trades(self, n: int) -> pd.DataFrame:
        wait_for(lambda: len(self.engine.trades()) == n, what=f"{n} trade records")
        return self.engine.trades()

    def last_order_id(self) -> str:
        return str(self.engine.store.ledger_frame()["order_id"].iloc[-1])

    def cancel_rest(self, order_id: str) -> None:
        """Cancel what is left of a partly filled order (as the user would in the client) and wait
        until the engine has released its reservation."""
        self.engine.broker.cancel(order_id)
        wait_for(lambda: not self.engine.trader.book.pending, what="the cancel to reach the book")

    def fill_rest_later(self, order_id: str, price: float) -> None:
        """The counter fills what is left of a partly filled order.

        The fake keeps the rest of an injected partial fill for a cancel and has no public call to
        fill it; lifting its hold and quoting the price again lets its matching fill the rest.
        """
        with self.qmt._lock:
            self.qmt._orders[int(order_id)].hold = False
        self.qmt.market.set_price(CODE, price)
        wait_for(lambda: not self.engine.trader.book.pending, what="the rest of the order to fill")

    def holding(self) -> pd.Series:
        return self.engine.positions().set_index("stock_code").loc[CODE]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """An engine on QmtBroker over FakeQmt, replaying one close price per day of ``CODE``, entering on day 0."""
    engines: list[Engine] = []

    def make(path: list[float]) -> Rig:
        userdata = tmp_path / "userdata_mini"
        userdata.mkdir()
        settings = fast_settings(
            tmp_path, simulation=False, account_id=ACCOUNT, qmt_userdata_path=str(userdata), call_timeout=1.0
        )
        bars = close_bars({CODE: path})
        replay = ReplayFeed.from_bars(bars, tick_mode="close")
        qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata, cash=settings.engine.simulation_balance,
                      clock=replay.clock.now, fees=settings.fees)
        feed = MarketFeed(replay, qmt.market)
        engine = Engine(settings, broker=QmtBroker(settings, modules=qmt), feed=feed,
                        entries=entry_days(bars, {CODE: [0]}))
        engines.append(engine)
        engine.start()
        return Rig(engine, qmt, feed)

    yield make
    for engine in engines:
        engine.stop()


def assert_book_follows_fills(rig: Rig) -> None:
    """Kernel arithmetic on every fill and on the book, and the client agrees with the book."""
    engine = rig.engine
    ledger = engine.store.ledger_frame()
    initial = engine.trader.initial_cash
    flows = np.where(ledger["side"] == "BUY", -ledger["amount"], ledger["amount"]) - ledger["commission"]
    np.testing.assert_allclose(ledger["cash_after"], initial + np.cumsum(flows), rtol=0, atol=1e-6)

    positions, cash = engine.positions(), engine.snapshot().cash
    holdings_cost = float((positions["volume"] * positions["cost"]).sum())
    assert cash + holdings_cost == pytest.approx(ledger_identity(ledger, initial)["expected"], abs=1e-6)
    assert cash == pytest.approx(ledger["cash_after"].iloc[-1], abs=1e-9)

    broker = {p.code: (p.volume, p.available) for p in engine.broker.positions()}
    book = {row.stock_code: (row.volume, row.available) for row in positions.itertuples()}
    assert broker == book
    assert rig.qmt.cash == pytest.approx(cash, abs=0.005)
    corrections = engine.issues().query("kind == 'broker_sync'")
    assert corrections.empty, f"the book needed the broker's figures:\n{corrections.to_string()}"
    assert rig.qmt.violations == [] and rig.qmt.callback_errors == []


def test_grid_buy_partly_filled_then_the_rest_cancelled(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig([10.0, 9.3, 9.3, 9.35])
    engine = rig.engine
    rig.step()  # day 0: the entry
    bought = lots(UNIT, 10.0)
    rig.qmt.partial_next(300)
    rig.step()  # day 1 at the first grid level, 9.3 = 10.0 * 0.93: the client fills 300 of the grid buy
    trades = rig.wait_trades(2)
    grid = lots(UNIT, 9.3)
    assert trades[["side", "volume", "price", "rule"]].values.tolist() == [
        ["BUY", bought, 10.0, "entry"], ["BUY", 300, 9.3, "grid_buy"]
    ]
    held = rig.holding()
    assert (held["volume"], held["available"], held["grid_k"]) == (bought + 300, bought, 1)  # T+1: 300 not yet
    assert held["cost"] == pytest.approx((bought * 10.0 + 300 * 9.3) / (bought + 300), abs=1e-12)
    # the rest is still working: its cash stays reserved
    assert engine.trader.book.reserved_cash == pytest.approx((grid - 300) * 9.3, rel=1e-3)

    rig.cancel_rest(rig.last_order_id())
    assert engine.trader.book.reserved_cash == 0
    rig.step(2)  # day 2 still at the first level: the grid stepped already; day 3
    assert len(engine.trades()) == 2
    assert len(rig.qmt.order_requests) == 2

    held = rig.holding()
    assert (held["volume"], held["available"], held["grid_k"]) == (bought + 300, bought + 300, 1)
    assert held["cost"] == pytest.approx((bought * 10.0 + 300 * 9.3) / (bought + 300), abs=1e-12)
    assert held["base_cost"] == 10.0 and held["next_grid_price"] == pytest.approx(8.6)
    signal = engine.signals().set_index("rule").loc["grid_buy"]
    assert (signal["volume"], signal["outcome"], signal["message"]) == (
        grid, "partially_executed", f"filled 300 of {grid}, the rest partial_cancelled"
    )
    assert_book_follows_fills(rig)


def run_grid_rest_filled_later(rig: Rig) -> int:
    """Entry, a grid buy filled 300 first and the rest later the same day, then two more days; returns
    the grid buy's volume."""
    rig.step()
    rig.qmt.partial_next(300)
    rig.step()
    rig.wait_trades(2)
    rig.fill_rest_later(rig.last_order_id(), 9.3)
    rig.wait_trades(3)
    rig.step(2)
    return lots(UNIT, 9.3)


def test_grid_buy_filled_in_two_parts_steps_the_grid_once(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig([10.0, 9.3, 9.3, 9.35])
    engine = rig.engine
    grid = run_grid_rest_filled_later(rig)
    bought = lots(UNIT, 10.0)

    ledger = engine.store.ledger_frame()
    assert ledger[["side", "volume", "rule"]].values.tolist() == [
        ["BUY", bought, "entry"], ["BUY", 300, "grid_buy"], ["BUY", grid - 300, "grid_buy"]
    ]
    assert ledger["order_id"].iloc[1] == ledger["order_id"].iloc[2]
    assert ledger["signal_id"].iloc[1] == ledger["signal_id"].iloc[2]
    assert len(rig.qmt.order_requests) == 2  # day 2 at the same level sent nothing: one step per order

    held = rig.holding()
    assert (held["volume"], held["available"], held["grid_k"]) == (bought + grid, bought + grid, 1)
    assert held["cost"] == pytest.approx((bought * 10.0 + grid * 9.3) / (bought + grid), abs=1e-12)
    assert held["next_grid_price"] == pytest.approx(8.6)
    [signal] = engine.signals().query("rule == 'grid_buy'").itertuples()
    assert (signal.volume, signal.outcome) == (grid, "executed")
    broker = {p.code: (p.volume, p.available) for p in engine.broker.positions()}
    assert broker == {CODE: (bought + grid, bought + grid)}


def test_a_partly_filled_order_pays_its_minimum_commission_once_in_the_book(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig([10.0, 9.3, 9.3, 9.35])
    run_grid_rest_filled_later(rig)
    assert_book_follows_fills(rig)


def test_stop_loss_partly_filled_never_sells_beyond_available(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig([10.0, 9.2, 9.15, 9.1])
    engine = rig.engine
    rig.step()
    bought = lots(UNIT, 10.0)
    rig.qmt.partial_next(500)
    rig.step()  # day 1 at -8%: the stop loss sells all 2000 available; the client fills 500
    trades = rig.wait_trades(2)
    assert trades[["side", "volume", "price", "rule"]].values.tolist() == [
        ["BUY", bought, 10.0, "entry"], ["SELL", 500, 9.2, "stop_loss"]
    ]
    held = rig.holding()
    assert (held["volume"], held["available"]) == (bought - 500, bought - 500)
    assert held["cost"] == 10.0

    # the rest of the order holds every other share: neither a rule nor a hand may sell them meanwhile
    with pytest.raises(InsufficientPosition):
        engine.sell(CODE, 100)
    rig.step()  # day 2, still below the stop
    assert len(rig.qmt.order_requests) == 2
    blocked = engine.signals().iloc[-1]
    assert (blocked["rule"], blocked["outcome"], blocked["volume"]) == ("stop_loss", "nothing_available", 0)

    rig.cancel_rest(rig.last_order_id())
    rig.step()  # day 3: the stop loss sells what the cancel freed
    trades = rig.wait_trades(3)
    assert trades[["side", "volume", "price", "rule"]].values.tolist()[1:] == [
        ["SELL", 500, 9.2, "stop_loss"], ["SELL", bought - 500, 9.1, "stop_loss"]
    ]
    assert trades.query("side == 'SELL'")["volume"].sum() == bought
    assert engine.positions().empty
    signals = engine.signals().query("rule == 'stop_loss'")
    assert signals[["volume", "outcome", "message"]].values.tolist() == [
        [bought, "partially_executed", f"filled 500 of {bought}, the rest partial_cancelled"],
        [0, "nothing_available", "no share may be sold now (T+1, board minimum or reserved by an order)"],
        [bought - 500, "executed", f"filled {bought - 500} at 9.10"],
    ]
    assert [r["order_volume"] for r in rig.qmt.order_requests] == [bought, bought, bought - 500]
    assert_book_follows_fills(rig)


def test_first_take_profit_partly_filled_sets_tp_done_once(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig([10.0, 10.7, 10.8, 10.75, 10.3])
    engine = rig.engine
    rig.step()
    bought = lots(UNIT, 10.0)
    first = int(bought * 0.6) // LOT * LOT  # 60% of the holding in whole lots
    rig.qmt.partial_next(400)
    rig.step()  # day 1 at +7%: the first take-profit sells 1200; the client fills 400
    trades = rig.wait_trades(2)
    assert trades[["side", "volume", "price", "rule"]].values.tolist()[1:] == [
        ["SELL", 400, 10.7, "take_profit_initial"]
    ]
    held = rig.holding()
    assert held["tp_done"] and (held["volume"], held["cost"]) == (bought - 400, 10.0)

    rig.step()  # day 2, still above +6%: the first take-profit ran already; the dynamic one holds at 10.368
    rig.cancel_rest(rig.last_order_id())
    rig.step()  # day 3: the cancel gave the shares back, still no second first take-profit
    assert len(engine.trades()) == 2
    assert len(rig.qmt.order_requests) == 2
    held = rig.holding()
    assert held["tp_done"] and (held["volume"], held["available"]) == (bought - 400, bought - 400)

    rig.step()  # day 4 at 10.3 <= 10.8 * 0.96: the dynamic take-profit sells everything left
    trades = rig.wait_trades(3)
    assert trades[["side", "volume", "rule"]].values.tolist()[1:] == [
        ["SELL", 400, "take_profit_initial"], ["SELL", bought - 400, "take_profit_dynamic"]
    ]
    assert engine.positions().empty
    signals = engine.signals()
    assert signals[["rule", "volume", "outcome"]].values.tolist() == [
        ["entry", bought, "executed"],
        ["take_profit_initial", first, "partially_executed"],
        ["take_profit_dynamic", bought - 400, "executed"],
    ]
    assert_book_follows_fills(rig)
