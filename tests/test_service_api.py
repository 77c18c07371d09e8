"""The HTTP API of a served engine (issue 13): the token on every route, bodies validated with the field
named, start/stop/auto trading/trading state/orders round trips on a paper engine, live calls refused
without confirmation, rules saved into the config file, and every control call in the audit log."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from engine_support import wait_for
from fastapi.testclient import TestClient
from service_support import CODE, NAMES, OTHER, TOKEN, app_of, live_engine, paper_engine

from miniqmt_lab import config
from miniqmt_lab.service.audit import AUDIT_FILE
from miniqmt_lab.service.auth import TOKEN_FILE, load_or_create_token

pytestmark = pytest.mark.timeout(120)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTES = [
    ("GET", "/api/version"), ("GET", "/api/status"), ("GET", "/api/positions"), ("GET", "/api/trades"),
    ("GET", "/api/signals"), ("GET", "/api/events"), ("POST", "/api/engine/start"), ("POST", "/api/engine/stop"),
    ("POST", "/api/auto_trading"), ("POST", "/api/trading_state"), ("POST", "/api/orders"),
    ("DELETE", "/api/orders/1"), ("GET", "/api/config/rules"), ("PUT", "/api/config/rules"), ("GET", "/docs"),
    ("GET", "/openapi.json"), ("GET", "/no/such/path"),
]


@pytest.fixture
def paper(tmp_path):
    engine, feed = paper_engine(tmp_path)
    engine.start()
    feed.step(engine, 2)  # two days: prices and previous closes known
    client = TestClient(app_of(engine, tmp_path / "data"), raise_server_exceptions=False)
    yield engine, feed, client
    engine.stop()


def audit_lines(tmp_path):
    from miniqmt_lab.service.audit import AuditLog

    return AuditLog(tmp_path / "data" / AUDIT_FILE).lines()


# -- the token -------------------------------------------------------------------------------------------


def test_every_route_but_ping_refuses_a_missing_or_wrong_token(paper):
    engine, _, client = paper
    for method, path in ROUTES:
        for header in (None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer ", f"Bearer {TOKEN[:-1]}"):
            headers = {"Authorization": header} if header else {}
            reply = client.request(method, path, headers=headers, json={"on": "not even valid"})  # 401 before 422
            assert reply.status_code == 401, (method, path, header, reply.text)
            assert reply.json()["error"] == "unauthorized" and "Bearer" in reply.json()["message"]
            assert reply.headers["www-authenticate"] == "Bearer"
    assert engine.running and engine.trades().empty  # nothing happened


def test_ping_and_the_page_shell_need_no_token_but_hold_no_data(paper):
    _, _, client = paper
    assert client.get("/api/ping").json() == {"status": "pong"}
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"  # a URL with ?token= never leaks
    assert TOKEN not in page.text and "cash" in page.text.lower()
    assert client.get("/static/app.js").status_code == 200


def test_docs_behind_the_token_in_a_header_or_the_query(paper):
    _, _, client = paper
    assert client.get(f"/docs?token={TOKEN}").status_code == 200
    assert client.get("/docs", headers=AUTH).status_code == 200
    schema = client.get(f"/openapi.json?token={TOKEN}").json()
    assert "/api/orders" in schema["paths"] and "/api/config/rules" in schema["paths"]
    assert client.get("/openapi.json?token=wrong").status_code == 401
    assert client.get(f"/api/status?token={TOKEN}").status_code == 401  # the API takes the header only


def test_the_token_is_made_once_owner_only_and_kept(tmp_path):
    first = load_or_create_token(tmp_path)
    assert len(first) >= 32 and load_or_create_token(tmp_path) == first
    if os.name == "posix":
        assert stat.S_IMODE(os.stat(tmp_path / TOKEN_FILE).st_mode) == 0o600
    (tmp_path / TOKEN_FILE).write_text("short\n")  # a damaged file gets a new random token
    assert load_or_create_token(tmp_path) not in (first, "short")


# -- bodies ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/orders", {"side": "BUY", "stock_code": CODE, "volume": "many"}, "volume"),
        ("/api/orders", {"side": "BUY", "volume": 100}, "stock_code"),
        ("/api/orders", {"side": "HOLD", "stock_code": CODE, "volume": 100}, "side"),
        ("/api/orders", {"side": "BUY", "stock_code": CODE, "volume": -100}, "volume"),
        ("/api/orders", {"side": "BUY", "stock_code": CODE}, "volume"),
        ("/api/orders", {"side": "SELL", "stock_code": CODE, "amount": 1000}, "amount"),
        ("/api/orders", {"side": "BUY", "stock_code": CODE, "volume": 100, "colume": 1}, "colume"),
        ("/api/auto_trading", {}, "on"),
        ("/api/auto_trading", {"on": "yes"}, "on"),
        ("/api/trading_state", {"state": "paused"}, "state"),
        ("/api/trading_state", {"state": "halted", "confirm": "sure"}, "confirm"),
        ("/api/engine/start", {"confirm": 3}, "confirm"),
    ],
)
def test_a_bad_body_is_422_naming_the_field_and_changes_nothing(paper, path, body, field):
    engine, _, client = paper
    before = engine.snapshot()
    reply = client.post(path, json=body, headers=AUTH)
    assert reply.status_code == 422, reply.text
    problem = reply.json()
    assert problem["error"] == "invalid_body" and field in problem["fields"]
    assert field in problem["message"]
    after = engine.snapshot()
    assert (after.auto_trading, after.trading_state, after.running) == (before.auto_trading, before.trading_state,
                                                                        before.running)
    assert engine.trades().empty


def test_malformed_json_and_unknown_query_values_are_422(paper):
    _, _, client = paper
    reply = client.post("/api/orders", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert reply.status_code == 422 and reply.json()["error"] == "invalid_body"
    reply = client.get("/api/trades?since=-1", headers=AUTH)
    assert reply.status_code == 422 and reply.json()["fields"] == ["since"]


# -- round trips on a paper engine ---------------------------------------------------------------------------


def test_status_is_the_engine_snapshot_with_chinese_names_and_no_nan(paper):
    engine, _, client = paper
    engine.buy(CODE, 1000)
    reply = client.get("/api/status", headers=AUTH)
    assert reply.status_code == 200
    data = reply.json()
    snap = engine.snapshot()
    assert data["version"] == snap.version and data["mode"] == "paper" and data["running"] is True
    assert data["cash"] == pytest.approx(snap.cash) and data["broker"]["live"] is False
    [position] = data["positions"]
    assert position["stock_name"] == NAMES[CODE] and position["volume"] == 1000
    assert position["dynamic_exit_level"] is None  # NaN travels as null
    assert position["stop_loss_price"] == pytest.approx(snap.positions[0].stop_loss_price)
    assert "NaN" not in reply.text and NAMES[CODE] in reply.content.decode("utf-8")
    assert client.get("/api/positions", headers=AUTH).json()["positions"] == data["positions"]
    version = client.get("/api/version", headers=AUTH).json()
    assert version["mode"] == "paper" and version["version"] >= data["version"]


def test_start_stop_auto_trading_and_trading_state_round_trip(paper, tmp_path):
    engine, _, client = paper
    reply = client.post("/api/engine/stop", headers=AUTH)
    assert reply.status_code == 200 and reply.json()["running"] is False and not engine.running
    assert client.get("/api/status", headers=AUTH).json()["running"] is False
    reply = client.post("/api/engine/start", headers=AUTH)
    assert reply.status_code == 200 and reply.json()["running"] is True and engine.running

    assert client.post("/api/auto_trading", json={"on": True}, headers=AUTH).status_code == 200
    assert engine.snapshot().auto_trading and client.get("/api/status", headers=AUTH).json()["auto_trading"]
    assert client.post("/api/auto_trading", json={"on": False}, headers=AUTH).status_code == 200
    assert not engine.snapshot().auto_trading

    reply = client.post("/api/trading_state", json={"state": "halted", "reason": "lunch"}, headers=AUTH)
    assert reply.status_code == 200
    status = client.get("/api/status", headers=AUTH).json()
    assert (status["trading_state"], status["state_reason"]) == ("halted", "lunch")
    refused = client.post("/api/orders", json={"side": "BUY", "stock_code": CODE, "volume": 100}, headers=AUTH)
    assert refused.status_code == 409 and refused.json()["error"] == "trading_halted"
    assert "halted" in refused.json()["message"] and "Traceback" not in refused.text
    client.post("/api/trading_state", json={"state": "reducing"}, headers=AUTH)
    assert engine.snapshot().trading_state == "reducing"
    client.post("/api/trading_state", json={"state": "active"}, headers=AUTH)
    assert engine.snapshot().trading_state == "active"


def test_orders_round_trip_and_records_read_incrementally(paper):
    engine, feed, client = paper
    buy = client.post("/api/orders", json={"side": "BUY", "stock_code": CODE, "volume": 1000}, headers=AUTH)
    assert buy.status_code == 200 and buy.json()["order_id"]
    by_amount = client.post("/api/orders", json={"side": "BUY", "stock_code": "000001", "amount": 2550.0,
                                                 "price": 5.0}, headers=AUTH)
    assert by_amount.status_code == 200
    first = client.get("/api/trades", headers=AUTH).json()
    assert [(r["stock_code"], r["side"], r["volume"], r["price"], r["rule"]) for r in first["rows"]] == [
        (CODE, "BUY", 1000, 10.0, "manual"), (OTHER, "BUY", 500, 5.0, "manual")]
    assert first["next"] == first["last"] == first["rows"][-1]["seq"] and first["more"] is False

    feed.step(engine, 1)  # a new day: the shares bought become available (T+1)
    sell = client.post("/api/orders", json={"side": "SELL", "stock_code": CODE, "volume": 400}, headers=AUTH)
    assert sell.status_code == 200
    later = client.get(f"/api/trades?since={first['next']}", headers=AUTH).json()
    assert [(r["side"], r["volume"]) for r in later["rows"]] == [("SELL", 400)]
    trades = engine.trades()
    assert len(trades) == 3 and list(trades["volume"]) == [1000, 500, 400]

    signals = client.get("/api/signals", headers=AUTH).json()
    assert [r["outcome"] for r in signals["rows"]] == ["executed"] * 3
    assert signals["next"] == signals["last"]  # all settled: the cursor moves past them
    paged = client.get("/api/signals?since=0&limit=2", headers=AUTH).json()
    assert len(paged["rows"]) == 2 and paged["more"] is True


def test_refusals_are_typed_4xx_never_tracebacks(paper):
    engine, _, client = paper
    cases = [
        ({"side": "BUY", "stock_code": "12345", "volume": 100}, 422, "invalid_stock_code"),
        ({"side": "SELL", "stock_code": OTHER, "volume": 100}, 409, "insufficient_available"),
        ({"side": "BUY", "stock_code": CODE, "volume": 150}, 409, "invalid_volume"),
        ({"side": "BUY", "stock_code": CODE, "volume": 100, "price": 10.005}, 409, "invalid_price"),
        ({"side": "BUY", "stock_code": CODE, "volume": 100, "price": 11.5}, 409, "price_limit"),
    ]
    for body, status, error in cases:
        reply = client.post("/api/orders", json=body, headers=AUTH)
        assert (reply.status_code, reply.json()["error"]) == (status, error), reply.text
        assert set(reply.json()) == {"error", "message"} and "Traceback" not in reply.text
    client.post("/api/engine/stop", headers=AUTH)
    reply = client.post("/api/orders", json={"side": "BUY", "stock_code": CODE, "volume": 100}, headers=AUTH)
    assert (reply.status_code, reply.json()["error"]) == (409, "engine_not_running")
    assert client.delete("/api/orders/none", headers=AUTH).json()["error"] == "engine_not_running"
    assert client.get("/api/nothing", headers=AUTH).json()["error"] == "not_found"
    assert engine.trades().empty


# -- rules ---------------------------------------------------------------------------------------------------


def test_rules_are_validated_saved_with_comments_and_in_force_at_the_next_start(tmp_path):
    path = tmp_path / "live.toml"
    path.write_text("# my settings\n[rules]\n# keep the loss small\nstop_loss_ratio = -0.05  # five percent\n",
                    encoding="utf-8")
    engine, feed = paper_engine(tmp_path, config_file=path)
    client = TestClient(app_of(engine, tmp_path / "data"), raise_server_exceptions=False)
    engine.start()
    try:
        rules = client.get("/api/config/rules", headers=AUTH).json()
        assert rules["rules"]["stop_loss_ratio"] == -0.05 and rules["pending"] is None
        assert rules["config_file"] == str(path.resolve())

        bad = client.put("/api/config/rules", json={"stop_loss_ratio": 0.5}, headers=AUTH)
        assert bad.status_code == 422 and "rules.stop_loss_ratio" in bad.json()["message"]
        assert client.put("/api/config/rules", json={"stop_lost_ratio": -0.1}, headers=AUTH).json()["fields"] == [
            "stop_lost_ratio"]
        assert client.put("/api/config/rules", json={}, headers=AUTH).status_code == 422
        assert "-0.05" in path.read_text(encoding="utf-8")  # refused changes wrote nothing

        reply = client.put("/api/config/rules", json={"stop_loss_ratio": -0.08, "grid_levels": [0.9, 0.8]},
                           headers=AUTH)
        assert reply.status_code == 200, reply.text
        assert reply.json()["pending"]["stop_loss_ratio"] == -0.08
        text = path.read_text(encoding="utf-8")
        assert "# keep the loss small" in text and "# five percent" in text and "-0.08" in text
        assert config.load(path, environ={}).rules.grid_levels == (0.9, 0.8)
        assert engine.settings.rules.stop_loss_ratio == -0.05  # not while running
        assert client.get("/api/status", headers=AUTH).json()["rules_pending"] is True

        client.post("/api/engine/stop", headers=AUTH)
        client.post("/api/engine/start", headers=AUTH)
        assert engine.running and engine.settings.rules.stop_loss_ratio == -0.08
        assert client.get("/api/config/rules", headers=AUTH).json()["pending"] is None
        feed.step(engine, 1)
        engine.buy(CODE, 1000)
        assert engine.snapshot().positions[0].stop_loss_price == pytest.approx(10.0 * 0.92)
    finally:
        engine.stop()


def test_rules_before_the_first_start_apply_at_that_start(tmp_path):
    engine, _ = paper_engine(tmp_path)
    client = TestClient(app_of(engine, tmp_path / "data"), raise_server_exceptions=False)
    reply = client.put("/api/config/rules", json={"stop_loss_ratio": -0.1}, headers=AUTH)
    assert reply.status_code == 200 and reply.json()["config_file"] is None  # no file: kept in memory only
    assert client.post("/api/engine/start", headers=AUTH).status_code == 200
    try:
        assert engine.settings.rules.stop_loss_ratio == -0.1
    finally:
        engine.stop()


# -- live: calls that can trade need "confirm": true ----------------------------------------------------------


def test_live_calls_that_can_trade_are_refused_without_confirm(tmp_path, userdata):
    engine, qmt = live_engine(tmp_path, userdata)
    client = TestClient(app_of(engine, tmp_path / "data"), raise_server_exceptions=False)
    try:
        assert client.get("/api/status", headers=AUTH).json()["mode"] == "live"
        refused = client.post("/api/engine/start", headers=AUTH)
        assert refused.status_code == 428 and refused.json()["error"] == "confirmation_required"
        assert "LIVE" in refused.json()["message"] and not engine.running
        assert client.post("/api/engine/start", json={"confirm": False}, headers=AUTH).status_code == 428
        assert client.post("/api/engine/start", json={"confirm": True}, headers=AUTH).status_code == 200
        assert engine.running

        order = {"side": "BUY", "stock_code": CODE, "volume": 100, "price": 10.0}
        assert client.post("/api/orders", json=order, headers=AUTH).status_code == 428
        assert client.post("/api/orders", json={**order, "side": "SELL"}, headers=AUTH).status_code == 428
        assert qmt.order_requests == []  # nothing reached the account
        assert client.post("/api/auto_trading", json={"on": True}, headers=AUTH).status_code == 428
        assert not engine.snapshot().auto_trading
        assert client.put("/api/config/rules", json={"stop_loss_ratio": -0.1}, headers=AUTH).status_code == 428

        # what can only tighten trading needs no confirmation
        assert client.post("/api/auto_trading", json={"on": False}, headers=AUTH).status_code == 200
        assert client.post("/api/trading_state", json={"state": "reducing"}, headers=AUTH).status_code == 200
        assert client.post("/api/trading_state", json={"state": "halted"}, headers=AUTH).status_code == 200
        assert engine.snapshot().trading_state == "halted"
        # loosening it asks, step by step
        assert client.post("/api/trading_state", json={"state": "reducing"}, headers=AUTH).status_code == 428
        assert client.post("/api/trading_state", json={"state": "active"}, headers=AUTH).status_code == 428
        assert engine.snapshot().trading_state == "halted"
        reply = client.post("/api/trading_state", json={"state": "active", "confirm": True}, headers=AUTH)
        assert reply.status_code == 200 and engine.snapshot().trading_state == "active"
        placed = client.post("/api/orders", json={**order, "confirm": True}, headers=AUTH)
        assert placed.status_code != 428  # it reached the engine (filled, or refused outside trading time)
        assert client.post("/api/engine/stop", headers=AUTH).status_code == 200 and not engine.running
    finally:
        engine.stop()
    outcomes = [line["outcome"] for line in audit_lines(tmp_path)]
    assert outcomes.count("confirmation_required") == 8


# -- the audit log ---------------------------------------------------------------------------------------------


def test_every_control_call_is_audited_with_client_call_and_outcome(paper, tmp_path):
    engine, _, client = paper
    client.post("/api/orders", json={"side": "BUY", "stock_code": CODE, "volume": 100}, headers=AUTH)
    client.post("/api/trading_state", json={"state": "halted", "reason": "test"}, headers=AUTH)
    client.post("/api/orders", json={"side": "BUY", "stock_code": CODE, "volume": 100}, headers=AUTH)
    client.post("/api/orders", json={"side": "BUY"}, headers=AUTH)
    client.post("/api/engine/stop", headers={"Authorization": "Bearer nope"})
    client.get("/api/status", headers=AUTH)  # reads are not control calls
    lines = audit_lines(tmp_path)
    assert [(line["call"], line["status"], line["outcome"]) for line in lines] == [
        ("POST /api/orders", 200, "ok"),
        ("POST /api/trading_state", 200, "ok"),
        ("POST /api/orders", 409, "trading_halted"),
        ("POST /api/orders", 422, "invalid_body"),
        ("POST /api/engine/stop", 401, "unauthorized"),
    ]
    assert all(line["client"].startswith("testclient:") and line["time"] for line in lines)
    assert lines[0]["request"] == {"side": "BUY", "stock_code": CODE, "volume": 100}
    assert lines[0]["result"]["order_id"] and "halted" in lines[2]["message"]
    assert TOKEN not in (tmp_path / "data" / AUDIT_FILE).read_text(encoding="utf-8")
    if os.name == "posix":
        assert stat.S_IMODE(os.stat(tmp_path / "data" / AUDIT_FILE).st_mode) == 0o600
    wait_for(lambda: engine.running)


def test_importing_the_package_engine_and_client_imports_no_web_stack():
    probe = ("import sys, miniqmt_lab, miniqmt_lab.engine, miniqmt_lab.service, miniqmt_lab.service.client;"
             "print(sorted(m for m in ('fastapi', 'uvicorn', 'apprise', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
