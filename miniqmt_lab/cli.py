"""Command line: ``miniqmt-lab run --config PATH`` (headless engine), ``miniqmt-lab serve`` (the engine
with a web page and an HTTP API) and ``miniqmt-lab demo``; also ``python -m miniqmt_lab``.

``demo`` runs the paper engine on a replay of the bundled synthetic bars at full speed, with auto
trading on and MACD entries, and prints what it did. Nothing in it touches a real account.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

import pandas as pd

from miniqmt_lab.errors import MiniQmtError
from miniqmt_lab.process import stop_signals

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return importlib.metadata.version("miniqmt-lab")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="miniqmt-lab", description="A-share trading on miniQMT, Jupyter-centric.")
    parser.add_argument("--version", action="version", version=f"miniqmt-lab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run", help="run the engine headless from a config file until Ctrl-C, Ctrl-Break or SIGTERM",
        description="Run the engine headless from a config file: paper settings trade on the paper broker at"
                    " live QMT prices, live settings on the QMT broker. Ctrl-C, Ctrl-Break (Windows) or SIGTERM"
                    " stop it cleanly.",
    )
    run.add_argument("--config", required=True, help="TOML settings file (see docs/live.example.toml)")
    demo = sub.add_parser(
        "demo", help="paper engine on synthetic sample bars at full speed, then a summary",
        description="Replay synthetic A-share-like bars through the real engine threads on the paper broker at"
                    " full speed and print the signals, trades and equity. Touches no account.",
    )
    demo.add_argument("--data-dir", default="data", help="folder for demo-paper.sqlite and the journal (data)")
    demo.add_argument("--days", type=int, default=250, help="trading days of synthetic bars (250)")
    demo.add_argument("--stocks", type=int, default=20, help="number of synthetic stocks (20)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the synthetic bars (7)")
    demo.add_argument("--parity", action="store_true", help="also run the backtest on the same bars and compare")
    served = sub.add_parser(
        "serve", help="run the engine with a web page and an HTTP API until Ctrl-C, Ctrl-Break or SIGTERM",
        description="Run the engine headless with a web page and an HTTP API beside it (loopback only unless"
                    " --host says otherwise); it prints the page's URL with its token.",
    )
    what = served.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="TOML settings file: the engine it describes (paper or live)")
    what.add_argument("--demo", action="store_true", help="a paper engine replaying synthetic sample bars")
    served.add_argument("--host", help="address to listen on (default: server.server_host, 127.0.0.1); another"
                                       " than loopback lets other machines reach the engine and prints a warning")
    served.add_argument("--port", type=int, help="port (default: server.server_port, 8765; 0: any free port)")
    served.add_argument("--data-dir", default="data", help="demo: folder of its database and server.token (data)")
    served.add_argument("--days", type=int, default=250, help="demo: trading days of synthetic bars (250)")
    served.add_argument("--stocks", type=int, default=20, help="demo: number of synthetic stocks (20)")
    served.add_argument("--seed", type=int, default=7, help="demo: random seed of the synthetic bars (7)")
    served.add_argument("--speed", type=float, default=8.0, help="demo: tick rounds replayed per second, at most (8)")
    return parser, {"run": run, "demo": demo, "serve": served}


def main(argv: list[str] | None = None) -> int:
    parser, commands = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # a wrong option of a command shows that command's usage, not the top level's
        commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "run":
            return run(Path(args.config))
        if args.command == "serve":
            return serve(args)
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
    with stop_signals(stop):
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
    print("engine stopped", flush=True)
    return 0


# -- serve ---------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    from miniqmt_lab.service.runner import serve_config, serve_demo

    if args.demo:
        return serve_demo(Path(args.data_dir), days=args.days, stocks=args.stocks, seed=args.seed, speed=args.speed,
                          host=args.host, port=args.port)
    return serve_config(Path(args.config), host=args.host, port=args.port)


# -- demo ----------------------------------------------------------------------------------------


def demo(data_dir: Path, *, days: int, stocks: int, seed: int = 7, parity: bool = False,
         out: TextIO | None = None) -> int:
    from miniqmt_lab.bars import SYNTHETIC_NOTICE, sample_bars
    from miniqmt_lab.config import Settings
    from miniqmt_lab.engine import ReplayFeed
    from miniqmt_lab.engine.lock import wipe_database
    from miniqmt_lab.factory import build_engine

    def say(text: str = "") -> None:
        print(text, file=out or sys.stdout, flush=True)

    if days < 30 or stocks < 1:
        raise SystemExit("miniqmt-lab demo: --days must be >= 30 (MACD needs a history) and --stocks >= 1")
    settings = Settings().with_values(data_dir=str(data_dir), auto_trading=True)
    # a clean paper account every time; a demo running on this folder keeps its records (DatabaseInUse)
    database = wipe_database((data_dir / "demo-paper.sqlite").absolute())

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
