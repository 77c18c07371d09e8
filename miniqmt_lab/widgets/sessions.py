"""Sessions the replay panel steps through: a tick stream, the trades and signals made on it, and how
to trade the same stream again with other rule parameters.

* :func:`bars_session`: stored bars of some stocks and dates, traded by the backtest.
* :func:`engine_session` / :func:`journal_session`: a recorded engine session, i.e. its tick journal
  and the trades and signals in its database.

:func:`holding_path` folds a stock's ticks and trades through the rule kernel's own state
transitions, giving the position state after every bar for the panel's cursor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from miniqmt_lab import records
from miniqmt_lab.config import FeeSettings, RuleSettings, Settings
from miniqmt_lab.engine.replay import bars_to_ticks
from miniqmt_lab.market import fee_params
from miniqmt_lab.records import read_journal
from miniqmt_lab.rules import (
    HoldingState,
    apply_buy_nb,
    apply_sell_nb,
    empty_holding_nb,
    observe_price_nb,
    roll_day_nb,
)
from miniqmt_lab.schema import SIGNAL_COLUMNS, TRADE_COLUMNS, Rule

Rerun = Callable[[RuleSettings], pd.DataFrame]


@dataclass(frozen=True, eq=False)
class ReplaySession:
    """One session. ``ticks`` has the journal's columns, ``trades`` ``TRADE_COLUMNS``."""

    name: str
    ticks: pd.DataFrame
    trades: pd.DataFrame
    signals: pd.DataFrame
    rules: RuleSettings  # the parameters the trades were made with
    fees: FeeSettings
    rerun: Rerun = field(repr=False)  # the trades of the same stream under other rules

    def codes(self) -> list[str]:
        return sorted(self.ticks["stock_code"].unique())

    def bars(self, code: str) -> pd.DataFrame:
        """OHLC of ``code`` per bar stamp, from its ticks (indexed by stamp)."""
        mine = self.ticks[self.ticks["stock_code"] == code]
        grouped = mine.groupby("stamp", sort=True)["price"]
        return pd.DataFrame(
            {"open": grouped.first(), "high": grouped.max(), "low": grouped.min(), "close": grouped.last()}
        )


def _empty_signals() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in SIGNAL_COLUMNS})


def ticks_frame(bars: pd.DataFrame, tick_mode: str = "ohlc") -> pd.DataFrame:
    """The tick stream the engine's replay feed makes of ``bars``, as a journal-shaped frame."""
    table = bars_to_ticks(bars, tick_mode)  # type: ignore[arg-type]
    group = np.repeat(np.arange(len(table.start) - 1), np.diff(table.start))
    parts = [
        pd.DataFrame(
            {
                "time": table.times[group, k],
                "stamp": table.stamps,
                "stock_code": table.codes,
                "price": table.prices[:, k],
                "bar_close": table.bar_close[:, k],
                "prev_close": table.prev_close,
            }
        )
        for k in range(table.prices.shape[1])
    ]
    return pd.concat(parts).sort_values(["time", "stock_code"], kind="stable").reset_index(drop=True)


def bars_session(
    bars: pd.DataFrame,
    settings: Settings | None = None,
    *,
    entries: Any = "macd",
    tick_mode: str = "ohlc",
    name: str | None = None,
) -> ReplaySession:
    """Stored bars traded by the backtest with ``settings`` (cash: ``engine.simulation_balance``)."""
    from miniqmt_lab.backtest import prepare_bars, run_backtest

    settings = settings or Settings()
    data = prepare_bars(bars)  # once: the baseline and every rerun share it

    def rerun(rules: RuleSettings) -> pd.DataFrame:
        return run_backtest(
            data, rules, entries=entries, init_cash=settings.engine.simulation_balance, tick_mode=tick_mode,
            fees=settings.fees,
        ).trades

    if name is None:
        codes = ", ".join(data.codes[:3]) + ("…" if len(data.codes) > 3 else "")
        name = f"backtest {codes} {data.index[0]:%Y-%m-%d}..{data.index[-1]:%Y-%m-%d}"
    return ReplaySession(
        name=name, ticks=ticks_frame(bars, tick_mode), trades=rerun(settings.rules), signals=_empty_signals(),
        rules=settings.rules, fees=settings.fees, rerun=rerun,
    )


def journal_session(
    database: str | os.PathLike[str],
    journal: str | os.PathLike[str],
    settings: Settings | None = None,
    *,
    name: str | None = None,
) -> ReplaySession:
    """A recorded session: the journal's ticks, and the database's trades and signals of its time span.

    Reruns start flat with the cash the book had when the session began (the ledger's cash after
    the last earlier trade, else ``engine.simulation_balance``); holdings carried in from an earlier
    session are not part of a rerun.
    """
    from miniqmt_lab.backtest import replay_journal

    settings = settings or Settings()
    ticks = read_journal(journal)
    if ticks.empty:
        raise ValueError(f"the journal {os.fspath(journal)} holds no ticks")
    query = records.read_only_query(database)
    ledger, signals = records.ledger_frame(query), records.signals_frame(query)
    first, last = ticks["time"].min(), ticks["time"].max()
    # the database keeps every session; this one's records lie within its journal's time span
    mine = ledger["time"].between(ticks["stamp"].min(), ticks["stamp"].max())
    trades = ledger.loc[mine, list(TRADE_COLUMNS)].reset_index(drop=True)
    signals = signals[signals["time"].between(first, last)].reset_index(drop=True)
    earlier = ledger[ledger["time"] < ticks["stamp"].min()]
    cash = float(earlier["cash_after"].iloc[-1]) if len(earlier) else settings.engine.simulation_balance

    def rerun(rules: RuleSettings) -> pd.DataFrame:
        return replay_journal(ticks, rules, init_cash=cash, fees=settings.fees).trades

    return ReplaySession(
        name=name or f"journal {os.fspath(journal)}", ticks=ticks, trades=trades, signals=signals,
        rules=settings.rules, fees=settings.fees, rerun=rerun,
    )


def engine_session(engine: Any, *, name: str | None = None) -> ReplaySession:
    """The session an ``Engine`` of this process ran or is running (its journal and database are read
    from their files, so a served engine's sessions come from ``recorded_sessions`` on its machine).

    The engine writes its journal every ``sqlite_sync_interval`` seconds and on stop, so a running
    session shows the ticks flushed so far.
    """
    if engine.journal_path is None:
        raise ValueError("the engine has not been started: it has no session journal yet")
    return journal_session(engine.database_path, engine.journal_path, engine.settings, name=name)


def recorded_sessions(settings: Settings, *, limit: int = 10) -> list[ReplaySession]:
    """The latest ``limit`` sessions recorded under ``settings.paths.data_dir``, newest first.

    An engine writes ``<data_dir>/journal/<mode>-<start time>-<id>.sqlite`` per session (gzipped to
    ``.sqlite.gz`` after ``paths.journal_compact_days``), next to its ``paper.sqlite`` / ``live.sqlite``;
    sessions that saw no tick are left out.
    """
    folder = settings.data_path / "journal"
    journals = sorted([*folder.glob("*.sqlite"), *folder.glob("*.sqlite.gz")], key=lambda p: p.stat().st_mtime,
                      reverse=True)
    sessions = []
    for journal in journals:
        mode = journal.name.split("-", 1)[0]
        database = settings.data_path / f"{mode}.sqlite"
        if mode not in ("paper", "live") or not database.exists():
            continue
        try:
            stem = journal.name.removesuffix(".gz").removesuffix(".sqlite")
            sessions.append(journal_session(database, journal, settings, name=f"{mode} session {stem}"))
        except ValueError:  # no ticks: started and stopped before the market moved
            continue
        if len(sessions) == limit:
            break
    return sessions


def holding_path(ticks: pd.DataFrame, trades: pd.DataFrame, fees: FeeSettings) -> pd.DataFrame:
    """Position state of one stock after each of its bars (rows: bar stamps).

    Ticks are observed in order (raising ``high``); a trade is applied on the first tick of its bar
    at its price (the tick that fired it), or after the bar's last tick when no tick matches (a
    manual order at a limit price); a new trading day first makes every share available (T+1).
    """
    fee = fee_params(fees)
    pending: dict[pd.Timestamp, list[tuple[str, float, int, int]]] = {}
    for t in trades.itertuples(index=False):
        trade = (t.side, float(t.price), int(t.volume), int(Rule.of(t.rule)))
        pending.setdefault(pd.Timestamp(t.time), []).append(trade)

    def apply(state: HoldingState, trade: tuple[str, float, int, int]) -> HoldingState:
        side, price, volume, rule = trade
        if side == "BUY":
            return apply_buy_nb(state, 0.0, price, volume, rule, fee)[0]
        return apply_sell_nb(state, 0.0, price, volume, rule, fee)[0]

    state = empty_holding_nb()
    day = None
    rows = []
    ordered = ticks.sort_values("time", kind="stable")
    for stamp, bar in ordered.groupby("stamp", sort=True):
        todo = list(pending.get(pd.Timestamp(stamp), ()))
        for time, price in zip(bar["time"].tolist(), bar["price"].tolist(), strict=True):
            if day is not None and time.date() != day:
                state = roll_day_nb(state)
            day = time.date()
            if not np.isfinite(price):
                continue
            state = observe_price_nb(state, price)
            while todo and abs(todo[0][1] - price) < 1e-9:
                state = apply(state, todo.pop(0))
        for trade in todo:
            state = apply(state, trade)
        rows.append({"stamp": stamp, **state._asdict()})
    return pd.DataFrame(rows, columns=["stamp", *empty_holding_nb()._fields]).set_index("stamp")
