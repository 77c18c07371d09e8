"""A served engine on a real socket: EngineClient with the face of an engine, typed errors back,
concurrent pollers that lose nothing, loopback only unless asked, server-sent events, and shutdown
in the original's order on SIGINT and SIGTERM."""

from __future__ import annotations

import inspect
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from service_support import ACCOUNT, CODE, NAMES, OTHER, TOKEN, live_engine, paper_engine, serving

from miniqmt_lab.engine.lock import DatabaseLock
from miniqmt_lab.engine.risk import TradingHalted
from miniqmt_lab.errors import EngineNotRunning, InsufficientPosition, InvalidStockCode, OrderRejected
from miniqmt_lab.protocols import EngineFace
from miniqmt_lab.schema import EngineSnapshot
from miniqmt_lab.service import ConfirmationRequired, EngineClient, ServiceError, Unauthorized
from miniqmt_lab.service.runner import serve_demo
from miniqmt_lab.service.server import Served, ServerError, WebServer
from miniqmt_lab.service.wire import to_json

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def served(tmp_path):
    engine, feed = paper_engine(tmp_path)
    engine.start()
    feed.step(engine, 2)
    with serving(engine, tmp_path / "data") as web:
        yield engine, feed, f"http://127.0.0.1:{web.port}"
    engine.stop()


def test_engine_client_has_the_face_of_an_engine():
    # checked on the class: isinstance() would read each property, an HTTP call apiece
    for name, member in inspect.getmembers(EngineFace):
        if name.startswith("_"):
            continue
        assert isinstance(getattr(EngineClient, name), property) == isinstance(member, property), name
        if not callable(member):
            continue
        theirs = inspect.signature(member)
        ours = inspect.signature(getattr(EngineClient, name))
        for param in theirs.parameters.values():  # every argument of the face is taken, the same way
            assert param.name in ours.parameters, (name, param.name)
            assert ours.parameters[param.name].kind == param.kind, (name, param.name)


def test_the_client_snapshot_and_frames_are_the_engines(served):
    engine, feed, url = served
    client = EngineClient(url, TOKEN)
    order_id = client.buy(CODE, 1000)
    assert order_id and client.buy("000001", amount=2550.0, price=5.0)
    feed.step(engine, 1)
    client.sell(CODE, 400, price=10.0)

    snap = client.snapshot()
    mine = engine.snapshot()
    assert isinstance(snap, EngineSnapshot)
    assert to_json(snap.positions) == to_json(mine.positions)  # NaN levels (no dynamic exit yet) as null
    assert math.isnan(snap.positions[0].dynamic_exit_level)
    assert snap.version <= mine.version and snap.mode == "paper" and snap.running
    assert snap.broker == mine.broker and snap.threads[0].name == mine.threads[0].name
    assert snap.time == mine.time and snap.time.tzinfo is not None
    assert [p.stock_name for p in snap.positions] == [NAMES[OTHER], NAMES[CODE]]
    assert client.version >= snap.version and client.running and client.mode == "paper"
    pd.testing.assert_frame_equal(client.trades(), engine.trades())
    pd.testing.assert_frame_equal(client.signals(), engine.signals())
    pd.testing.assert_frame_equal(client.positions(), engine.positions())

    client.set_auto_trading(True)
    assert engine.snapshot().auto_trading
    client.set_trading_state("reducing", "only sells")
    assert (engine.snapshot().trading_state, engine.snapshot().state_reason) == ("reducing", "only sells")
    client.stop()
    assert not engine.running and not client.running
    client.start()
    assert engine.running and client.running


def test_refusals_come_back_as_the_same_typed_errors(served):
    _, _, url = served
    client = EngineClient(url, TOKEN)
    client.set_trading_state("halted", "maintenance")
    with pytest.raises(TradingHalted, match="maintenance") as caught:
        client.buy(CODE, 100)
    assert isinstance(caught.value, OrderRejected) and caught.value.reason == "trading_halted"
    client.set_trading_state("active")
    with pytest.raises(InsufficientPosition):
        client.sell(OTHER, 100)
    with pytest.raises(InvalidStockCode):
        client.buy("12345", 100)
    with pytest.raises(Unauthorized):
        EngineClient(url, "wrong").snapshot()
    with pytest.raises(ValueError):
        client.set_trading_state("paused")
    client.stop()
    with pytest.raises(EngineNotRunning):
        client.buy(CODE, 100)
    with pytest.raises(ServiceError, match="cannot reach"):
        EngineClient("http://127.0.0.1:9", TOKEN, timeout=2).snapshot()


def test_a_live_client_sends_confirm_only_when_built_to(tmp_path, userdata):
    engine, qmt = live_engine(tmp_path, userdata)
    with serving(engine, tmp_path / "data") as web:
        url = f"http://127.0.0.1:{web.port}"
        with pytest.raises(ConfirmationRequired, match="LIVE"):
            EngineClient(url, TOKEN).start()
        assert not engine.running
        confirmed = EngineClient(url, TOKEN, confirm_live=True)
        confirmed.start()
        try:
            assert engine.running and confirmed.mode == "live"
            assert confirmed.snapshot().broker.account == f"{ACCOUNT[:2]}******{ACCOUNT[-2:]}"
            with pytest.raises(ConfirmationRequired):
                EngineClient(url, TOKEN).set_auto_trading(True)
            confirmed.set_auto_trading(True)
            assert engine.snapshot().auto_trading
        finally:
            engine.stop()
    assert qmt.order_requests == []


def test_from_url_takes_the_printed_url(served):
    _, _, url = served
    client = EngineClient.from_url(f"{url}/?token={TOKEN}")
    assert client.url == url and client.snapshot().running


def test_concurrent_pollers_lose_nothing_while_orders_are_placed(served):
    engine, feed, url = served
    pollers, stop = 6, threading.Event()
    seen: list[list[tuple[pd.DataFrame, pd.DataFrame]]] = [[] for _ in range(pollers)]
    errors: list[BaseException] = []

    def poll(i: int) -> None:
        client = EngineClient(url, TOKEN)
        try:
            while not stop.is_set():
                seen[i].append((client.trades(), client.signals()))
                time.sleep(0.01)
            seen[i].append((client.trades(), client.signals()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(pollers)]
    for t in threads:
        t.start()
    trader = EngineClient(url, TOKEN)
    for day in range(3):
        for _ in range(5):
            trader.buy(CODE, 100)
            trader.buy(OTHER, 200)
        if day:
            trader.sell(CODE, 200)
        feed.step(engine, 1)
    trader.set_trading_state("halted", "test")
    with pytest.raises(TradingHalted):  # a refused order is a signal too
        trader.buy(CODE, 100)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    expected_trades, expected_signals = engine.trades(), engine.signals()
    assert len(expected_trades) == 32 and len(expected_signals) == 33
    for history in seen:
        assert len(history) >= 2
        final_trades, final_signals = history[-1]
        pd.testing.assert_frame_equal(final_trades, expected_trades)
        pd.testing.assert_frame_equal(final_signals, expected_signals)
        for (earlier, _), (later, _) in itertools.pairwise(history):  # rows only ever added
            if len(earlier):
                pd.testing.assert_frame_equal(later.iloc[: len(earlier)], earlier)


def test_server_sent_events_carry_each_new_version(served):
    engine, _, url = served
    request = urllib.request.Request(f"{url}/api/events", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")

        def next_version() -> dict[str, object]:
            while True:
                line = stream.readline().decode()
                if line.startswith("data:"):
                    return json.loads(line[5:])

        first = next_version()
        assert first == {"version": engine.version, "running": True}
        EngineClient(url, TOKEN).set_auto_trading(True)
        assert next_version()["version"] > first["version"]


# -- listening -----------------------------------------------------------------------------------------------


def _outside_address() -> str | None:
    """An address of this machine that is not loopback (no packet is sent to find it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_the_server_listens_on_loopback_only_unless_asked(tmp_path):
    engine, _ = paper_engine(tmp_path)
    with serving(engine, tmp_path / "data") as web:
        assert web.address[0] == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", web.port), timeout=2):
            pass
        outside = _outside_address()
        if outside is not None:
            with pytest.raises(OSError), socket.create_connection((outside, web.port), timeout=2):
                pass
    with pytest.raises(ServerError, match=r"another server on that port"), socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        WebServer(object(), "127.0.0.1", taken.getsockname()[1])


def test_a_host_other_than_loopback_must_be_asked_for_and_warns(tmp_path, capsys):
    engine, _ = paper_engine(tmp_path)
    served = Served(engine, tmp_path / "data", host="0.0.0.0", port=0)
    url = served.open()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert "WARNING: listening on 0.0.0.0" in capsys.readouterr().out
        outside = _outside_address()
        if outside is not None:
            with socket.create_connection((outside, served.web.port), timeout=2):
                pass
    finally:
        served.close()


def test_serve_demo_binds_loopback_by_default_and_stops_in_order(tmp_path):
    events: list[str] = []
    stop, urls = threading.Event(), []

    def on_ready(url: str) -> None:
        urls.append(url)
        served_engine_is_running = EngineClient.from_url(url).running
        events.append(f"ready running={served_engine_is_running}")
        stop.set()

    thread = threading.Thread(target=serve_demo, args=(tmp_path / "demo",),
                              kwargs={"days": 40, "stocks": 3, "speed": 50, "port": 0, "stop": stop,
                                      "on_ready": on_ready, "out": open(os.devnull, "w")})  # noqa: SIM115
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    assert events == ["ready running=True"]
    [url] = urls
    assert url.startswith("http://127.0.0.1:") and "?token=" in url
    token = (tmp_path / "demo" / "server.token").read_text().strip()
    assert url.endswith(token)
    with pytest.raises(OSError):  # the server is gone
        urllib.request.urlopen(url.split("/?")[0] + "/api/ping", timeout=2)
    lock = DatabaseLock(tmp_path / "demo" / "serve-demo-paper.sqlite")
    lock.acquire()  # the engine let go of its database
    lock.release()


def test_close_stops_web_server_then_alerts_then_engine(tmp_path):
    engine, _ = paper_engine(tmp_path)
    order: list[str] = []

    class Recorder:
        def start(self) -> None:
            order.append("alerts start")

        def stop(self) -> None:
            order.append(f"alerts stop (engine running={engine.running})")

    served = Served(engine, tmp_path / "data", port=0, alerts=Recorder(), out=open(os.devnull, "w"))  # noqa: SIM115
    url = served.open()
    web = served.web
    engine_stop = engine.stop

    def recorded_stop(timeout: float = 10.0) -> None:
        try:
            urllib.request.urlopen(url.split("/?")[0] + "/api/ping", timeout=2)
            order.append("engine stop while the web server answers")
        except OSError:
            order.append("engine stop after the web server")
        engine_stop(timeout)

    engine.stop = recorded_stop
    assert web is not None
    served.close()
    assert order == ["alerts start", "alerts stop (engine running=True)", "engine stop after the web server"]
    assert not engine.running


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_sigint_and_sigterm(tmp_path, signum):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "miniqmt_lab.cli", "serve", "--demo", "--port", "0", "--data-dir", str(tmp_path),
         "--days", "40", "--stocks", "3", "--speed", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "?token=" in line:
            break
    url = next(line.strip() for line in lines if "?token=" in line)
    assert EngineClient.from_url(url).running
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + out
    assert "stopping: web server, alerts, engine" in out and out.rstrip().endswith("stopped")
    lock = DatabaseLock(tmp_path / "serve-demo-paper.sqlite")
    lock.acquire()
    lock.release()
