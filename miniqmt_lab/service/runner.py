"""``miniqmt-lab serve``: an engine and its web page in one process, until Ctrl-C, Ctrl-Break or SIGTERM.

``serve_config`` builds the engine from a config file (paper on live QMT quotes, or live);
``serve_demo`` serves a paper engine replaying synthetic sample bars at a watchable pace.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from miniqmt_lab.engine.lock import wipe_database
from miniqmt_lab.process import stop_signals
from miniqmt_lab.service.server import Served

DEMO_DATABASE = "serve-demo-paper.sqlite"


def serve_config(config: str | Path, *, host: str | None = None, port: int | None = None, out: TextIO | None = None,
                 stop: threading.Event | None = None, on_ready: Callable[[str], None] | None = None) -> int:
    from miniqmt_lab import config as cfg
    from miniqmt_lab.engine.logsetup import setup_logging
    from miniqmt_lab.factory import build_engine
    from miniqmt_lab.service.alerts import Alerts

    settings = cfg.load(config)
    log_file = setup_logging(settings)
    engine = build_engine(settings)
    served = Served(engine, settings.data_path, host or settings.server.server_host,
                    settings.server.server_port if port is None else port,
                    alerts=Alerts.for_engine(engine, settings.alerts), out=out)
    served.say(f"log {log_file}; alerts {'on' if served.alerts is not None else 'off (no alerts.alert_urls)'}")
    _run(served, stop, on_ready)
    return 0


def serve_demo(data_dir: str | Path, *, days: int = 250, stocks: int = 20, seed: int = 7, speed: float = 8.0,
               host: str | None = None, port: int | None = None, out: TextIO | None = None,
               stop: threading.Event | None = None, on_ready: Callable[[str], None] | None = None) -> int:
    """A paper engine on ``days`` x ``stocks`` synthetic bars, ``speed`` tick rounds a second, auto trading on."""
    from miniqmt_lab.bars import SYNTHETIC_NOTICE, sample_bars
    from miniqmt_lab.config import Settings
    from miniqmt_lab.factory import build_engine

    if days < 30 or stocks < 1 or speed <= 0:
        raise SystemExit("miniqmt-lab serve --demo: --days must be >= 30, --stocks >= 1 and --speed > 0")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    folder = Path(data_dir).absolute()
    settings = Settings().with_values(data_dir=str(folder), auto_trading=True)
    database = wipe_database(folder / DEMO_DATABASE)
    bars = sample_bars(stocks, days, seed=seed)
    engine = build_engine(settings, replay=bars, pace=1.0 / speed, entries="macd", database=database)
    served = Served(engine, folder, host or settings.server.server_host,
                    settings.server.server_port if port is None else port, out=out)
    served.say(SYNTHETIC_NOTICE)
    served.say(f"Demo: {stocks} synthetic stocks x {days} days, {speed:g} tick rounds a second, paper broker,"
               " auto trading on.")
    _run(served, stop, on_ready)
    return 0


def _run(served: Served, stop: threading.Event | None, on_ready: Callable[[str], None] | None) -> None:
    stop = stop if stop is not None else threading.Event()
    with stop_signals(stop):
        served.run_until(stop, on_ready)


__all__ = ["DEMO_DATABASE", "serve_config", "serve_demo"]
