"""The engine on QmtBroker over the fake client trades exactly as on the paper SimBroker."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from engine_support import fast_settings, wait_for

from miniqmt_lab.config import Settings
from miniqmt_lab.engine import Engine, IdleFeed, ReplayFeed
from miniqmt_lab.qmt import QmtBroker
from miniqmt_lab.schema import TRADE_COLUMNS, TickRound
from miniqmt_lab.xtquant_double import FakeMarket, FakeQmt

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

ACCOUNT = "8800001234"
CODES = ("000001.SZ", "300750.SZ", "600000.SH")


def synthetic_bars(days: int = 60, seed: int = 7) -> pd.DataFrame:
    """Random daily bars inside the price limits, volatile enough to fire every rule."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-02", periods=days)
    rows = []
    for code, start in zip(CODES, (12.0, 180.0, 8.0), strict=True):
        close = start
        for day in dates:
            prev = close
            close = round(prev * (1 + rng.uniform(-0.06, 0.065)), 2)
            open_ = round(prev * (1 + rng.uniform(-0.02, 0.02)), 2)
            high = round(min(max(open_, close) * (1 + rng.uniform(0, 0.025)), prev * 1.099), 2)
            low = round(max(min(open_, close) * (1 - rng.uniform(0, 0.025)), prev * 0.901), 2)
            high, low = max(high, open_, close), min(low, open_, close)
            rows.append((code, "", day, open_, high, low, close, 1e6, 1e6 * close))
    return pd.DataFrame(rows, columns=["stock_code", "stock_name", "date", "open", "high", "low", "close", "volume",
                                       "amount"])


def entry_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """Every fifth day is an entry day for every stock (a stock already held ignores it)."""
    dates = sorted(bars["date"].unique())
    return pd.DataFrame({code: [i % 5 == 1 for i in range(len(dates))] for code in CODES}, index=dates)


class MirroringFeed:
    """A replay feed that also moves the fake client's market to each round, so the client fills
    limit orders at the replayed prices and knows each day's previous close."""

    def __init__(self, replay: ReplayFeed, market: FakeMarket) -> None:
        self.replay = replay
        self.market = market
        self.clock = replay.clock  # the engine runs on the replay's clock

    def open(self) -> None:
        self.replay.open()

    def watch(self, codes: Sequence[str]) -> None:
        self.replay.watch(codes)

    def next_round(self, timeout: float) -> TickRound | None:
        rnd = self.replay.next_round(timeout)
        if rnd is not None:
            for tick in rnd.ticks:
                self.market.set_instrument(tick.code, tick.name, prev_close=tick.prev_close)
                self.market.set_price(tick.code, tick.price, time=tick.time)
        return rnd

    def finished(self) -> bool:
        return self.replay.finished()

    def close(self) -> None:
        self.replay.close()


def run(engine: Engine) -> tuple[pd.DataFrame, pd.DataFrame]:
    engine.start()
    try:
        assert engine.wait_idle(120), "the replay did not finish"
        trades, signals = engine.trades(), engine.signals()
    finally:
        engine.stop()
    return trades, signals


def test_engine_on_the_qmt_broker_matches_the_paper_broker(tmp_path):
    bars = synthetic_bars()
    entries = entry_frame(bars)
    base = Settings().with_values(auto_trading=True, data_dir=str(tmp_path / "data"))

    paper_trades, paper_signals = run(
        Engine(base, feed=ReplayFeed.from_bars(bars), entries=entries, database=tmp_path / "paper.sqlite")
    )

    userdata = tmp_path / "userdata_mini"
    userdata.mkdir()
    live = base.with_values(simulation=False, account_id=ACCOUNT, qmt_userdata_path=str(userdata))
    replay = ReplayFeed.from_bars(bars)
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata, cash=live.engine.simulation_balance,
                  clock=replay.clock.now, fees=live.fees)
    broker = QmtBroker(live, modules=qmt)
    live_trades, live_signals = run(
        Engine(live, broker=broker, feed=MirroringFeed(replay, qmt.market), entries=entries,
               database=tmp_path / "live.sqlite")
    )

    assert list(live_trades.columns) == list(TRADE_COLUMNS)
    rules = set(paper_trades["rule"])
    # the bars exercise every rule
    assert rules == {"entry", "grid_buy", "stop_loss", "take_profit_initial", "take_profit_dynamic"}, rules
    assert len(paper_trades) >= 10
    pd.testing.assert_frame_equal(live_trades, paper_trades, check_exact=False, atol=1e-6)

    compared = ["stock_code", "rule", "side", "price", "volume", "outcome"]
    pd.testing.assert_frame_equal(live_signals[compared], paper_signals[compared])
    assert len(qmt.order_requests) == len(live_trades)  # one order per trade, nothing resent
    assert qmt.violations == [] and qmt.callback_errors == []


def test_an_empty_live_account_starts_syncs_and_takes_over_its_cash(tmp_path):
    """query_stock_positions answers None for an account holding nothing: the engine must still
    start, sync, take over the broker's cash and show the broker connected."""
    userdata = tmp_path / "userdata_mini"
    userdata.mkdir()
    settings = fast_settings(tmp_path, simulation=False, account_id=ACCOUNT, qmt_userdata_path=str(userdata))
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata, cash=123_456.78)
    engine = Engine(settings, broker=QmtBroker(settings, modules=qmt), feed=IdleFeed())
    engine.start()
    try:
        wait_for(lambda: engine.snapshot().cash == 123_456.78, what="the broker's cash in the book")
        snapshot = engine.snapshot()
        assert snapshot.broker.connected
        assert snapshot.broker.message == f"connected (session {engine.broker.session_id})"
        assert engine.positions().empty
        assert "broker sync failed" not in engine.trader.ctx.last_error
    finally:
        engine.stop()
