"""``drift_report``: the engine's trades next to the backtest's, each difference explained by its cause.

Trades are paired first on (time, stock, side, rule), then, for what is left, on (stock, side) by
order within ``max_lag``. Causes:

* ``match``: same time, rule, price and volume.
* ``parameter_change``: both traded, but by different rules: the engine ran other thresholds.
* ``late_order`` / ``early_order``: the engine traded the same decision at another time.
* ``volume_difference``: other volume (often a cash or holding difference left by an earlier one).
* ``price_slippage``: other fill price (a broker fills where it fills).
* ``rejected_order``: the backtest traded; the engine's signal for it did not execute (its outcome
  and message come from ``signals``).
* ``missed_tick``: the backtest traded; the engine shows no signal: it never saw or acted on the tick.
* ``extra_trade``: the engine traded, the backtest did not (a tick the backtest lacks, or another
  state); ``manual_order`` when the engine's rule is ``manual``.

``follows_earlier`` marks differences on a stock that already differed before: they may be
consequences rather than causes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from miniqmt_lab.backtest.prepare import naive_shanghai
from miniqmt_lab.market import normalize_code

if TYPE_CHECKING:
    import plotly.graph_objects as go

CAUSES = (
    "match",
    "parameter_change",
    "late_order",
    "early_order",
    "volume_difference",
    "price_slippage",
    "rejected_order",
    "missed_tick",
    "extra_trade",
    "manual_order",
)
EXECUTED = "executed"
PRICE_TOLERANCE = 1e-6
DRIFT_COLUMNS = (
    "time", "stock_code", "side", "cause", "engine_time", "engine_rule", "engine_price", "engine_volume",
    "backtest_time", "backtest_rule", "backtest_price", "backtest_volume", "price_diff", "volume_diff",
    "cash_effect", "follows_earlier", "detail",
)


@dataclass(frozen=True, eq=False)
class DriftReport:
    table: pd.DataFrame  # one row per trade of either side, DRIFT_COLUMNS, in time order
    summary: pd.DataFrame  # per cause: count and cash_effect

    @property
    def differences(self) -> pd.DataFrame:
        return self.table[self.table["cause"] != "match"]

    def plot(self) -> go.Figure:
        from miniqmt_lab.backtest.plots import drift_figure

        return drift_figure(self.table, self.summary)


def drift_report(
    engine_trades: pd.DataFrame,
    backtest_trades: pd.DataFrame,
    *,
    signals: pd.DataFrame | None = None,
    max_lag: pd.Timedelta | str = "1D",
) -> DriftReport:
    """Align two TRADE_COLUMNS frames (``Engine.trades()`` and ``BacktestResult.trades``).

    ``signals``: ``Engine.signals()``, to tell a rejected order from a missed tick. ``max_lag``: how
    far apart in time a pair of the same stock and side may still be the same decision.
    ``cash_effect`` is the engine's cash minus the backtest's from that row (fees included).
    """
    lag = pd.Timedelta(max_lag)
    engine = _normalized(engine_trades)
    backtest = _normalized(backtest_trades)
    pairs = _pair(engine, backtest, lag)
    rows = [_row(engine, backtest, e, b, signals, lag) for e, b in pairs]
    table = pd.DataFrame(rows, columns=[c for c in DRIFT_COLUMNS if c != "follows_earlier"])
    table = table.sort_values(["time", "stock_code"], kind="stable").reset_index(drop=True)
    differs = table["cause"] != "match"
    earlier = differs.groupby(table["stock_code"]).cumsum() - differs
    table.insert(len(table.columns) - 1, "follows_earlier", differs & (earlier > 0))
    summary = (
        table.groupby("cause")
        .agg(count=("cause", "size"), cash_effect=("cash_effect", "sum"))
        .reindex([c for c in CAUSES if c in set(table["cause"])])
    )
    return DriftReport(table, summary)


def _normalized(trades: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "time": naive_shanghai(trades["time"]) if len(trades) else np.array([], dtype="datetime64[us]"),
            "stock_code": [normalize_code(c) for c in trades["stock_code"]],
            "side": trades["side"].astype(str).str.upper().to_numpy(),
            "rule": trades["rule"].astype(str).to_numpy(),
            "price": trades["price"].to_numpy(dtype=np.float64),
            "volume": trades["volume"].to_numpy(dtype=np.int64),
            "commission": trades["commission"].to_numpy(dtype=np.float64),
        }
    )
    return out.reset_index(drop=True)


def _pair(engine: pd.DataFrame, backtest: pd.DataFrame, lag: pd.Timedelta) -> list[tuple[int | None, int | None]]:
    """(engine row, backtest row) pairs; None where one side has no counterpart."""
    exact = ["time", "stock_code", "side", "rule"]
    e_keyed = engine.assign(n=engine.groupby(exact).cumcount(), e=np.arange(len(engine)))
    b_keyed = backtest.assign(n=backtest.groupby(exact).cumcount(), b=np.arange(len(backtest)))
    merged = e_keyed[[*exact, "n", "e"]].merge(b_keyed[[*exact, "n", "b"]], on=[*exact, "n"], how="inner")
    pairs: list[tuple[int | None, int | None]] = list(zip(merged["e"].tolist(), merged["b"].tolist(), strict=True))
    left_e = engine.drop(index=merged["e"])
    left_b = backtest.drop(index=merged["b"])
    matched_b: set[int] = set()
    for (code, side), group in left_e.groupby(["stock_code", "side"], sort=False):
        candidates = left_b[(left_b["stock_code"] == code) & (left_b["side"] == side)]
        for e, row in group.iterrows():
            free = candidates[~candidates.index.isin(matched_b)]
            gaps = (free["time"] - row["time"]).abs()
            close_enough = gaps[gaps <= lag]
            if close_enough.empty:
                pairs.append((int(e), None))
                continue
            b = int(close_enough.idxmin())
            matched_b.add(b)
            pairs.append((int(e), b))
    pairs.extend((None, int(b)) for b in left_b.index if b not in matched_b)
    return pairs


def _row(
    engine: pd.DataFrame,
    backtest: pd.DataFrame,
    e: int | None,
    b: int | None,
    signals: pd.DataFrame | None,
    lag: pd.Timedelta,
) -> dict[str, object]:
    er = engine.loc[e] if e is not None else None
    br = backtest.loc[b] if b is not None else None
    first = er if er is not None else br
    assert first is not None
    row: dict[str, object] = {
        "time": min(r["time"] for r in (er, br) if r is not None),
        "stock_code": first["stock_code"],
        "side": first["side"],
        "engine_time": er["time"] if er is not None else pd.NaT,
        "engine_rule": er["rule"] if er is not None else None,
        "engine_price": er["price"] if er is not None else np.nan,
        "engine_volume": er["volume"] if er is not None else 0,
        "backtest_time": br["time"] if br is not None else pd.NaT,
        "backtest_rule": br["rule"] if br is not None else None,
        "backtest_price": br["price"] if br is not None else np.nan,
        "backtest_volume": br["volume"] if br is not None else 0,
    }
    row["price_diff"] = row["engine_price"] - row["backtest_price"]
    row["volume_diff"] = row["engine_volume"] - row["backtest_volume"]
    row["cash_effect"] = _cash(er) - _cash(br)
    row["cause"], row["detail"] = _cause(er, br, signals, lag)
    return row


def _cash(trade: pd.Series | None) -> float:
    """Cash moved by one trade: minus for a buy, plus for a sell, fees always minus."""
    if trade is None:
        return 0.0
    sign = -1.0 if trade["side"] == "BUY" else 1.0
    return sign * trade["price"] * trade["volume"] - trade["commission"]


def _cause(
    er: pd.Series | None, br: pd.Series | None, signals: pd.DataFrame | None, lag: pd.Timedelta
) -> tuple[str, str]:
    if er is None:
        assert br is not None
        signal = _unexecuted_signal(signals, br, lag)
        if signal is not None:
            return "rejected_order", f"engine signal {signal['outcome']}: {signal.get('message', '')}".strip()
        return "missed_tick", f"backtest {br['rule']} {br['volume']} @ {br['price']:.2f}: no engine signal"
    if br is None:
        if er["rule"] == "manual":
            return "manual_order", "placed by hand in the engine"
        return "extra_trade", f"engine {er['rule']} {er['volume']} @ {er['price']:.2f}: not in the backtest"
    notes = []
    if er["rule"] != br["rule"]:
        notes.append(("parameter_change", f"rule {er['rule']} in the engine, {br['rule']} in the backtest"))
    if er["time"] != br["time"]:
        cause = "late_order" if er["time"] > br["time"] else "early_order"
        notes.append((cause, f"engine {er['time']} vs backtest {br['time']}"))
    if er["volume"] != br["volume"]:
        notes.append(("volume_difference", f"volume {er['volume']} vs {br['volume']}"))
    if abs(er["price"] - br["price"]) > PRICE_TOLERANCE:
        notes.append(("price_slippage", f"price {er['price']:.4f} vs {br['price']:.4f}"))
    if not notes:
        return "match", ""
    return notes[0][0], "; ".join(text for _, text in notes)


def _unexecuted_signal(signals: pd.DataFrame | None, trade: pd.Series, lag: pd.Timedelta) -> pd.Series | None:
    """The engine's signal for the backtest trade's stock and rule, near its time, that did not execute."""
    if signals is None or signals.empty:
        return None
    times = pd.Series(naive_shanghai(signals["time"]), index=signals.index)
    codes = signals["stock_code"].map(normalize_code)
    near = signals[
        (codes == trade["stock_code"])
        & (signals["rule"].astype(str) == trade["rule"])
        & ((times - trade["time"]).abs() <= lag)
        & (signals["outcome"].astype(str) != EXECUTED)
    ]
    if near.empty:
        return None
    return near.loc[(times[near.index] - trade["time"]).abs().idxmin()]
