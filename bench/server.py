"""Benchmark of the engine served over HTTP: ``/api/status`` latency under 20 pollers, and what serving
costs the engine's tick processing.

An engine holding 100 positions replays in-band ticks (every tick a full evaluation, no order) at a
paced 10 tick rounds a second: 1,000 ticks a second, thirty times what a live session on 100 stocks
gets (QMT pushes a snapshot every 3 s). Three runs on the same ticks:

1. the engine alone (the baseline, in this process);
2. the engine with the web server in its process and 20 pollers in another process, each asking
   ``GET /api/status`` every 250 ms over a kept-alive connection (80 requests a second: twenty
   pages polling four times faster than the page's 1 s fallback; ``--poll-every`` changes it);
3. the engine alone again (how much the baseline itself moves);
4. the same pollers against a minimal standard-library HTTP server answering a fixed body of the same
   size (no engine, no FastAPI): the latency this machine gives any Python server right now, the
   baseline the served engine's latency is read against.

Per-tick time is the monitor's own busy time per tick over the same window of each run. Targets:
p99 latency < 20 ms, per-tick time with the server within 10% of the baseline.

Also printed: the engine process's CPU time per request (its CPU time over the window, served minus
alone, per request answered), the figure a loaded machine disturbs least.

Run: ``python bench/server.py [--poll-every SECONDS]`` (about 90 s).
"""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from miniqmt_lab.bars import sample_codes
from miniqmt_lab.config import Settings
from miniqmt_lab.engine import Engine, ReplayFeed
from miniqmt_lab.service.app import create_app
from miniqmt_lab.service.audit import AuditLog
from miniqmt_lab.service.server import WebServer

POSITIONS = 100
ROUND_PACE = 0.1  # real seconds per tick round
WARMUP = 2.0  # seconds before the measured window
WINDOW = 20.0  # seconds measured
POLLERS = 20
POLL_EVERY = 0.25
COST = 10.0
BAND = 0.02
TOKEN = "bench-token-" + "x" * 32


def tick_frame(codes: list[str], times: pd.DatetimeIndex, prices: np.ndarray, bar_close: bool) -> pd.DataFrame:
    return pd.DataFrame({
        "time": np.repeat(times, len(codes)), "stamp": np.repeat(times, len(codes)),
        "stock_code": np.tile(codes, len(times)), "price": prices.ravel(), "bar_close": bar_close,
        "prev_close": COST,
    })


def settings_for(folder: Path) -> Settings:
    return Settings().with_values(data_dir=str(folder), auto_trading=True, simulation_balance=1e9,
                                  monitor_interval=0.001, max_orders_per_minute=1_000_000)


def open_positions(folder: Path, codes: list[str]) -> None:
    """Day 1: entries open a holding in every code (the database the measured runs start from)."""
    opening = pd.DatetimeIndex([pd.Timestamp("2024-03-04 14:57")])
    feed = ReplayFeed.from_ticks(tick_frame(codes, opening, np.full(len(codes), COST), bar_close=True))
    engine = Engine(settings_for(folder), feed=feed, entries=pd.DataFrame(True, index=opening, columns=codes))
    engine.start()
    try:
        assert engine.wait_idle(120)
    finally:
        engine.stop()


def day_two(codes: list[str], rounds: int, rng: np.random.Generator) -> pd.DataFrame:
    times = pd.Timestamp("2024-03-05 09:30") + pd.to_timedelta(np.arange(rounds) * 3, unit="s")
    prices = np.round(COST * (1 + rng.uniform(-BAND, BAND, (rounds, len(codes)))), 2)
    return tick_frame(codes, pd.DatetimeIndex(times), prices, bar_close=False)


def measured_run(folder: Path, ticks: pd.DataFrame, *, served: bool, every: float) -> tuple[float, float, list[float]]:
    """Per-tick busy time of the monitor and CPU seconds of this process over the window, and the
    pollers' latencies (seconds)."""
    feed = ReplayFeed.from_ticks(ticks)
    feed.clock.pace = ROUND_PACE
    engine = Engine(settings_for(folder), feed=feed, entries="none")
    engine.start()
    web: WebServer | None = None
    pollers: subprocess.Popen[str] | None = None
    try:
        if served:
            web = WebServer(create_app(engine, token=TOKEN, audit=AuditLog(folder / "audit.jsonl")), "127.0.0.1", 0)
            web.start()
            pollers = subprocess.Popen([sys.executable, __file__, "--poll", str(web.port), str(WARMUP + WINDOW),
                                        str(every)], stdout=subprocess.PIPE, text=True)
        time.sleep(WARMUP)
        first, cpu = engine.status()["monitor"], time.process_time()
        time.sleep(WINDOW)
        last, cpu = engine.status()["monitor"], time.process_time() - cpu
        assert not engine.wait_idle(0), "the replay ended inside the window: give it more rounds"
        latencies: list[float] = []
        if pollers is not None:
            out, _ = pollers.communicate(timeout=60)
            latencies = json.loads(out)
    finally:
        if web is not None:
            web.stop()
        engine.stop()
    ticks_done = last["ticks"] - first["ticks"]
    return (last["busy_seconds"] - first["busy_seconds"]) / ticks_done, cpu, latencies


def baseline_latencies(body: bytes, every: float) -> list[float]:
    """The pollers against a stdlib HTTP server that answers ``body`` at once."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = subprocess.run([sys.executable, __file__, "--poll", str(server.server_address[1]),
                              str(WARMUP + WINDOW), str(every)], capture_output=True, text=True, check=True).stdout
    finally:
        server.shutdown()
        server.server_close()
    return json.loads(out)


def quantiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return ordered[len(ordered) // 2], ordered[int(0.99 * (len(ordered) - 1))]


def poll(port: int, seconds: float, every: float) -> None:
    """The pollers' process: POLLERS threads asking /api/status every ``every`` s; prints latencies."""
    latencies: list[list[float]] = [[] for _ in range(POLLERS)]
    deadline = time.monotonic() + seconds

    def poller(mine: list[float]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        next_at = time.monotonic()
        while next_at < deadline:
            started = time.perf_counter()
            connection.request("GET", "/api/status", headers=headers)
            reply = connection.getresponse()
            body = reply.read()
            mine.append(time.perf_counter() - started)
            assert reply.status == 200 and body.startswith(b"{"), reply.status
            next_at += every
            time.sleep(max(0.0, next_at - time.monotonic()))
        connection.close()

    threads = [threading.Thread(target=poller, args=(mine,)) for mine in latencies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps([x for mine in latencies for x in mine]))


def main(every: float) -> None:
    logging.basicConfig(level=logging.ERROR)
    rng = np.random.default_rng(1)
    codes = sample_codes(POSITIONS)
    rounds = int((WARMUP + WINDOW) / ROUND_PACE * 1.5) + 200
    ticks = day_two(codes, rounds, rng)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        open_positions(base, codes)
        runs: dict[str, tuple[float, float, list[float]]] = {}
        for name, served in (("alone", False), ("served", True), ("alone again", False)):
            folder = Path(tmp) / name.replace(" ", "-")
            folder.mkdir()
            for file in base.iterdir():
                if file.is_file() and file.suffix == ".sqlite":
                    (folder / file.name).write_bytes(file.read_bytes())
            runs[name] = measured_run(folder, ticks, served=served, every=every)
        baseline = baseline_latencies(b"{" + b" " * 30_000 + b"}", every)  # about a 100-position status

    latencies = runs["served"][2]
    p50, p99 = quantiles(latencies)
    base50, base99 = quantiles(baseline)
    alone = min(runs["alone"][0], runs["alone again"][0])
    served_tick = runs["served"][0]
    print(f"engine: {POSITIONS} positions, {1 / ROUND_PACE:.0f} tick rounds/s ({POSITIONS / ROUND_PACE:,.0f} ticks/s)")
    print(f"pollers: {POLLERS} in another process, GET /api/status every {every * 1000:.0f} ms each"
          f" ({len(latencies)} requests in {WINDOW + WARMUP:.0f} s)\n")
    print(f"{'measure':<34} {'value':>12} {'target':>12}")
    print(f"{'/api/status latency p50':<34} {p50 * 1000:>10.2f} ms {'':>12}")
    print(f"{'/api/status latency p99':<34} {p99 * 1000:>10.2f} ms {'< 20 ms':>12}"
          f"  {'ok' if p99 < 0.020 else 'MISSED'}")
    print(f"{'/api/status latency mean':<34} {statistics.fmean(latencies) * 1000:>10.2f} ms")
    print(f"{'minimal stdlib server p50 / p99':<34} {base50 * 1000:>10.2f} ms / {base99 * 1000:.2f} ms"
          "  (this machine's floor right now)")
    in_window = len(latencies) * WINDOW / (WINDOW + WARMUP)
    extra_cpu = runs["served"][1] - min(runs["alone"][1], runs["alone again"][1])
    print(f"{'server CPU per request':<34} {extra_cpu / in_window * 1000:>10.2f} ms")
    print(f"{'per tick, engine alone':<34} {runs['alone'][0] * 1e6:>10.1f} us"
          f"  (again: {runs['alone again'][0] * 1e6:.1f} us)")
    print(f"{'per tick, engine served + polled':<34} {served_tick * 1e6:>10.1f} us")
    ratio = served_tick / alone
    print(f"{'ratio served / alone':<34} {ratio:>13.2f} {'<= 1.10':>12}  {'ok' if ratio <= 1.10 else 'MISSED'}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--poll":
        poll(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--poll-every":
        main(float(sys.argv[2]))
    else:
        main(POLL_EVERY)
