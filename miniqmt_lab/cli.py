"""Command line: ``miniqmt-lab run --config PATH`` (headless engine) and ``miniqmt-lab demo``.

``demo`` runs the paper engine on a replay of the bundled synthetic bars at full speed, with auto
trading on and MACD entries, and prints what it did. Nothing in it touches a real account.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

import pandas as pd

from miniqmt_lab.errors import MiniQmtError

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="miniqmt-lab", description="A-share trading on miniQMT, Jupyter-centric.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the engine headless from a config file until Ctrl-C or SIGTERM")
    run.add_argument("--config", required=True, help="TOML settings file (see docs/live.example.toml)")
    demo = sub.add_parser("demo", help="paper engine on synthetic sample bars at full speed, then a summary")
    demo.add_argument("--data-dir", default="data", help="folder for demo-paper.sqlite and the journal (data)")
    demo.add_argument("--days", type=int, default=250, help="trading days of synthetic bars (250)")
    demo.add_argument("--stocks", type=int, default=20, help="number of synthetic stocks (20)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the synthetic bars (7)")
    demo.add_argument("--parity", action="store_true", help="also run the backtest on the same bars and compare")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return run(Path(args.config))
        return demo(Path(args.data_dir), days=args.days, stocks=args.stocks, seed=args.seed, parity=args.parity)
    except MiniQmtError as exc:
        print(f"miniqmt-lab: {exc}", file=sys.stderr)
        return 2


# -- run -----------------------------------------------------------------------------------------


def run(config: Path) -> int:
    from miniqmt_lab import config as cfg
    from miniqmt_lab.engine.logsetup import setup_logging
    from miniqmt_lab.factory import build_engine

    settings = cfg.load(config)
    log_file = setup_logging(settings)
    # paper settings: the paper broker on live QMT quotes; live settings: the QMT broker
    engine = build_engine(settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.warning("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        engine.start()
        print(
            f"engine running ({engine.mode}, auto trading {'on' if settings.engine.auto_trading else 'off'});"
            f" database {engine.database_path}; log {log_file}. Ctrl-C stops it.",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    finally:
        engine.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("engine stopped", flush=True)
    return 0


# -- demo ----------------------------------------------------------------------------------------


def demo(data_dir: Path, *, days: int, stocks: int, seed: int = 7, parity: bool = False,
         out: TextIO | None = None) -> int:
    from miniqmt_lab.bars import SYNTHETIC_NOTICE, sample_bars
    from miniqmt_lab.config import Settings
    from miniqmt_lab.engine import ReplayFeed
    from miniqmt_lab.engine.lock import DatabaseLock
    from miniqmt_lab.factory import build_engine

    def say(text: str = "") -> None:
        print(text, file=out or sys.stdout, flush=True)

    if days < 30 or stocks < 1:
        raise SystemExit("miniqmt-lab demo: --days must be >= 30 (MACD needs a history) and --stocks >= 1")
    settings = Settings().with_values(data_dir=str(data_dir), auto_trading=True)
    database = (data_dir / "demo-paper.sqlite").absolute()
    lock = DatabaseLock(database)
    lock.acquire()  # a demo running on this folder keeps its records: DatabaseInUse, nothing deleted
    try:
        for suffix in ("", "-wal", "-shm", ".unsaved-fills.jsonl"):  # a clean paper account every time
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    finally:
        lock.release()

    bars = sample_bars(stocks, days, seed=seed)
    say(SYNTHETIC_NOTICE)
    first, last = bars["date"].min(), bars["date"].max()
    say(f"\nReplaying {bars['stock_code'].nunique()} synthetic stocks x {bars['date'].nunique()} trading days "
        f"({first:%Y-%m-%d} .. {last:%Y-%m-%d}), 4 ticks per bar, through the live engine on a paper broker.")
    feed = ReplayFeed.from_bars(bars)
    engine = build_engine(settings, replay=feed, entries="macd", database=database)
    started = time.perf_counter()
    engine.start()
    try:
        while not engine.wait_idle(1.0):
            say(f"  ... {feed.position}/{feed.n_rounds} tick rounds")
    finally:
        engine.stop()
    elapsed = time.perf_counter() - started

    trades, signals, snap = engine.trades(), engine.signals(), engine.snapshot()
    stats = engine.status()["monitor"]
    say(f"Done in {elapsed:.1f} s: {stats['ticks']:,} ticks in {stats['rounds']:,} rounds.\n")
    say("Signals by rule and outcome:")
    say(_indent(pd.crosstab(signals["rule"], signals["outcome"]).to_string() if len(signals) else "(none)"))
    say("\nTrades by rule:")
    if len(trades):
        table = trades.groupby("rule").agg(trades=("volume", "size"), shares=("volume", "sum"),
                                           amount=("amount", "sum"), fees=("commission", "sum"))
        say(_indent(table.to_string(float_format=lambda v: f"{v:,.2f}")))
    else:
        say("  (none)")
    initial = engine.status()["initial_cash"]
    say(f"\nCash {snap.cash:,.2f}; {len(snap.positions)} open position(s) worth "
        f"{snap.total_asset - snap.cash:,.2f} at the last prices; equity {snap.total_asset:,.2f} "
        f"({snap.total_asset / initial - 1:+.2%} on {initial:,.0f}).")
    say(f"Database: {engine.database_path}\nTick journal: {engine.journal_path}")
    if parity:
        from miniqmt_lab.backtest import run_backtest

        expected = run_backtest(bars, settings.rules, entries="macd", init_cash=initial, fees=settings.fees).trades
        same = trades.reset_index(drop=True).equals(expected.reset_index(drop=True))
        say(f"Backtest on the same bars: {len(expected)} trades; identical to the engine's: {'yes' if same else 'NO'}")
        if not same:
            return 1
    say("\nThe data is synthetic: these numbers show the machinery, not a strategy's worth.")
    return 0


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


if __name__ == "__main__":
    sys.exit(main())
