"""replay_journal reproduces run_backtest on the engine's own tick stream; drift_report explains differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from miniqmt_lab.backtest import drift_report, replay_journal, run_backtest
from miniqmt_lab.bars import sample_bars
from miniqmt_lab.engine.replay import bars_to_ticks


def journal_of(bars: pd.DataFrame, tick_mode: str) -> pd.DataFrame:
    """The journal the engine writes when it replays ``bars`` (its own bars-to-ticks conversion)."""
    table = bars_to_ticks(bars, tick_mode)
    group = np.repeat(np.arange(len(table.start) - 1), np.diff(table.start))
    frames = [
        pd.DataFrame({"time": table.times[group, k], "stamp": table.stamps, "stock_code": table.codes,
                      "price": table.prices[:, k], "bar_close": table.bar_close[:, k],
                      "prev_close": table.prev_close})
        for k in range(table.prices.shape[1])
    ]
    return pd.concat(frames).sort_values(["time", "stock_code"], kind="stable").reset_index(drop=True)


@pytest.mark.parametrize(("freq", "n_stocks", "n_days", "tick_mode", "entries"), [
    ("1d", 12, 200, "ohlc", "macd"),
    ("1d", 12, 200, "close", "always"),
    ("1m", 4, 8, "ohlc", "always"),
])
def test_journal_replay_equals_the_bar_backtest(freq, n_stocks, n_days, tick_mode, entries):
    bars = sample_bars(n_stocks, n_days, seed=5, freq=freq)
    expected = run_backtest(bars, entries=entries, tick_mode=tick_mode)
    replayed = replay_journal(journal_of(bars, tick_mode), entries=entries)
    assert len(expected.trades) > 5
    pd.testing.assert_frame_equal(replayed.trades, expected.trades)
    np.testing.assert_array_equal(replayed.equity.to_numpy(), expected.equity.to_numpy())
    assert replayed.bars.freq == freq


def test_bad_ticks_are_skipped_and_history_seeds_the_macd():
    bars = sample_bars(6, 120, seed=9)
    journal = journal_of(bars, "close")
    spoiled = journal.copy()
    spoiled.loc[spoiled.index[::7], "price"] = np.nan  # the engine journals a bad quote as NaN
    replayed = replay_journal(spoiled, entries="always")
    assert replayed.trades["price"].notna().all()
    # MACD entries of a journal's last days, seeded with the earlier daily closes, equal the full run's
    closes = bars.pivot(index="date", columns="stock_code", values="close")
    late = journal[journal["time"] >= pd.Timestamp(closes.index[60])]
    seeded = replay_journal(late, entries="macd", history=closes.iloc[:60])
    full = run_backtest(bars, entries="macd", tick_mode="close").trades
    first_seeded = seeded.trades.iloc[0]
    assert first_seeded["rule"] == "entry"
    later_entries = full[(full["rule"] == "entry") & (full["time"] >= first_seeded["time"])]
    assert later_entries.iloc[0][["time", "stock_code"]].tolist() == first_seeded[["time", "stock_code"]].tolist()


def test_journal_errors():
    with pytest.raises(ValueError, match="prev_close"):
        replay_journal(pd.DataFrame({"time": [], "stamp": [], "stock_code": [], "price": [], "bar_close": []}))
    journal = journal_of(sample_bars(3, 5, seed=1), "close")
    with pytest.raises(ValueError, match="two ticks"):
        replay_journal(pd.concat([journal, journal.iloc[:1]]))


# -- drift report ------------------------------------------------------------------------------------


def trades(*rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["time", "stock_code", "side", "price", "volume", "rule"])
    frame["time"] = pd.to_datetime(frame["time"])
    frame["amount"] = frame["price"] * frame["volume"]
    frame["commission"] = 5.0
    return frame[["time", "stock_code", "side", "price", "volume", "amount", "commission", "rule"]]


BACKTEST = trades(
    ("2024-03-04 15:00", "600000.SH", "BUY", 10.0, 2000, "entry"),
    ("2024-03-05 15:00", "600000.SH", "SELL", 10.6, 1200, "take_profit_initial"),
    ("2024-03-04 15:00", "000001.SZ", "BUY", 8.0, 2500, "entry"),
    ("2024-03-06 15:00", "000001.SZ", "SELL", 7.4, 2500, "stop_loss"),
    ("2024-03-05 15:00", "300001.SZ", "BUY", 20.0, 1000, "entry"),
    ("2024-03-06 15:00", "300001.SZ", "BUY", 18.6, 1000, "grid_buy"),
)


def test_identical_lists_all_match():
    report = drift_report(BACKTEST, BACKTEST)
    assert (report.table["cause"] == "match").all() and len(report.table) == len(BACKTEST)
    assert report.differences.empty
    assert report.summary.loc["match", "count"] == len(BACKTEST)


def test_each_difference_gets_its_cause():
    engine = trades(
        ("2024-03-04 15:00", "600000.SH", "BUY", 10.01, 2000, "entry"),  # filled a cent higher
        ("2024-03-06 15:00", "600000.SH", "SELL", 10.6, 1200, "take_profit_initial"),  # a day late
        ("2024-03-04 15:00", "000001.SZ", "BUY", 8.0, 2400, "entry"),  # less volume
        ("2024-03-06 15:00", "000001.SZ", "SELL", 7.4, 2400, "take_profit_dynamic"),  # another rule
        ("2024-03-05 10:12", "601398.SH", "BUY", 5.0, 1000, "manual"),  # by hand
        ("2024-03-06 15:00", "000002.SZ", "BUY", 9.0, 2000, "entry"),  # the backtest did not buy
        # 300001.SZ: the entry was rejected by the broker, the grid buy never detected
    )
    signals = pd.DataFrame({
        "id": ["s1"], "time": [pd.Timestamp("2024-03-05 14:57")], "stock_code": ["300001.SZ"], "rule": ["entry"],
        "side": ["BUY"], "price": [20.0], "volume": [1000], "outcome": ["rejected"], "message": ["insufficient funds"],
    })
    report = drift_report(engine, BACKTEST, signals=signals)
    by_key = {(r.stock_code, r.backtest_rule if isinstance(r.backtest_rule, str) else r.engine_rule): r
              for r in report.table.itertuples()}
    assert by_key[("600000.SH", "entry")].cause == "price_slippage"
    assert by_key[("600000.SH", "entry")].cash_effect == pytest.approx(-20.0)  # 0.01 x 2000 more paid
    assert by_key[("600000.SH", "take_profit_initial")].cause == "late_order"
    assert by_key[("600000.SH", "take_profit_initial")].follows_earlier
    assert by_key[("000001.SZ", "entry")].cause == "volume_difference"
    stop = by_key[("000001.SZ", "stop_loss")]
    assert stop.cause == "parameter_change" and "volume 2400 vs 2500" in stop.detail
    assert by_key[("601398.SH", "manual")].cause == "manual_order"
    assert by_key[("000002.SZ", "entry")].cause == "extra_trade"
    rejected = by_key[("300001.SZ", "entry")]
    assert rejected.cause == "rejected_order" and "insufficient funds" in rejected.detail
    assert by_key[("300001.SZ", "grid_buy")].cause == "missed_tick"
    assert not by_key[("000002.SZ", "entry")].follows_earlier
    assert report.summary["count"].sum() == len(report.table) == 8
    assert report.summary.loc["missed_tick", "cash_effect"] == pytest.approx(18.6 * 1000 + 5.0)


def test_drift_figure_and_aware_times():
    engine = BACKTEST.assign(time=BACKTEST["time"].dt.tz_localize("Asia/Shanghai"))
    report = drift_report(engine, BACKTEST.iloc[:-1])
    assert report.table["cause"].value_counts().to_dict() == {"match": 5, "extra_trade": 1}
    fig = report.plot()
    assert isinstance(fig, go.Figure)
    assert {trace.name for trace in fig.data if trace.type == "scatter"} == {"match", "extra_trade"}
