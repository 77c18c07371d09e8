"""Every way miniQMT can be unusable ends in one actionable QmtUnavailable line."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest

from miniqmt_lab import config
from miniqmt_lab.config import Settings
from miniqmt_lab.errors import QmtUnavailable
from miniqmt_lab.qmt import QmtBroker, QmtFeed
from miniqmt_lab.qmt.loader import (
    CLIENT_DOWN,
    NOT_INSTALLED,
    RealXtQuant,
    check_userdata_path,
    client_errors,
    derive_session_id,
    import_part,
)
from miniqmt_lab.xtquant_double import FakeQmt

pytestmark = pytest.mark.timeout(60)

ACCOUNT = "8800001234"
DOCS = Path(__file__).resolve().parents[1] / "docs"



def live_settings(path: Path | str, account: str = ACCOUNT) -> Settings:
    return Settings().with_values(simulation=False, account_id=account, qmt_userdata_path=str(path), call_timeout=2.0)


def connect_error(settings: Settings, modules: FakeQmt | None) -> str:
    broker = QmtBroker(settings, modules=modules)
    with pytest.raises(QmtUnavailable) as info:
        broker.connect()
    message = str(info.value)
    assert "\n" not in message
    assert not broker.status().connected
    return message


@pytest.mark.skipif(importlib.util.find_spec("xtquant") is not None, reason="xtquant is installed here")
def test_missing_xtquant_says_how_to_install_it(userdata):
    assert connect_error(live_settings(userdata), None) == NOT_INSTALLED
    assert "pip install xtquant" in NOT_INSTALLED
    with pytest.raises(QmtUnavailable, match="pip install xtquant"):
        QmtFeed(Settings()).instrument("600000.SH")


def test_xtquant_without_its_native_parts_says_to_use_the_windows_machine(monkeypatch):
    package = types.ModuleType("xtquant")
    package.__path__ = []  # a package whose submodules cannot be found, like the wheel on Linux
    monkeypatch.setitem(sys.modules, "xtquant", package)
    with pytest.raises(QmtUnavailable, match="Windows-only") as info:
        _ = RealXtQuant().xttrader
    assert "xtquant.xttrader cannot load on" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_failing_native_import_is_reported_the_same_way(monkeypatch):
    def broken(name, *args, **kwargs):
        raise ImportError("DLL load failed while importing xtpythonclient")

    monkeypatch.setattr("importlib.import_module", broken)
    with pytest.raises(QmtUnavailable, match=r"DLL load failed.*Windows-only"):
        import_part("xtdata")


def test_a_failed_data_centre_start_is_unavailable_not_a_plain_exception(monkeypatch):
    def failing(name, *args, **kwargs):  # xtdatacenter raises this plain Exception at import
        raise Exception("rpc init failed, error_code:-1, configdir:C:\\xtquant\\config")

    monkeypatch.setattr("importlib.import_module", failing)
    with pytest.raises(QmtUnavailable, match=r"xtquant.xtdata failed to start \(rpc init failed") as info:
        import_part("xtdata")
    assert "docs/xtquant.md" in str(info.value)
    feed = QmtFeed(Settings())  # built all the same: each use says why it cannot work
    with pytest.raises(QmtUnavailable, match="rpc init failed"):
        feed.instrument("600000.SH")
    assert "rpc init failed" in feed.last_error


def test_wrong_userdata_paths(tmp_path, userdata):
    qmt = FakeQmt(account_id=ACCOUNT)
    missing = connect_error(live_settings(tmp_path / "nowhere" / "userdata_mini"), qmt)
    assert "is not an existing folder" in missing and "userdata_mini" in missing

    full_qmt = tmp_path / "userdata"
    full_qmt.mkdir()
    assert "极简模式" in connect_error(live_settings(full_qmt), qmt)

    install_root = userdata.parent
    assert f"use {userdata}" in connect_error(live_settings(install_root), qmt)
    assert qmt.traders == []  # nothing was started against a bad path


def test_empty_userdata_path():
    with pytest.raises(QmtUnavailable, match="qmt_userdata_path is empty"):
        check_userdata_path("  ")


def test_client_not_running_makes_connect_return_minus_one(userdata):
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata)
    qmt.running = False
    message = connect_error(live_settings(userdata), qmt)
    assert message.startswith("connect() to the QMT client returned -1: start miniQMT")
    assert len(qmt.sessions) == 1 and qmt.traders == []  # stopped and dropped again


def test_userdata_of_another_client_is_refused(tmp_path, userdata):
    other = tmp_path / "other" / "userdata_mini"
    other.mkdir(parents=True)
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata)
    assert "returned -1" in connect_error(live_settings(other), qmt)


def test_wrong_account_makes_subscribe_fail_without_showing_the_account(userdata):
    qmt = FakeQmt(account_id=ACCOUNT, userdata_path=userdata)
    message = connect_error(live_settings(userdata, account="1234567890"), qmt)
    assert message.startswith("subscribe() to account 12******90 returned -1")
    assert "1234567890" not in message
    assert len(qmt.sessions) == 1 and qmt.traders == []  # stopped and dropped again


def test_client_absent_for_market_data():
    qmt = FakeQmt()
    qmt.running = False
    with pytest.raises(Exception, match="无法连接xtquant服务") as raw:
        qmt.xtdata.get_full_tick(["600000.SH"])
    assert type(raw.value) is Exception  # a plain Exception, as the real xtdata raises
    with pytest.raises(QmtUnavailable) as info:
        QmtFeed(Settings(), modules=qmt).instrument("600000.SH")
    assert str(info.value) == CLIENT_DOWN


def test_client_errors_passes_other_exceptions_through():
    with pytest.raises(KeyError), client_errors():
        raise KeyError("not a connection problem")


def test_derived_session_ids_are_positive_32_bit_ints(userdata):
    assert 0 < derive_session_id() < 2**31
    broker = QmtBroker(live_settings(userdata), modules=FakeQmt(account_id=ACCOUNT, userdata_path=userdata))
    assert 0 < broker.session_id < 2**31


def test_live_example_config_loads():
    settings = config.load(DOCS / "live.example.toml", environ={})
    assert settings.engine.simulation is False
    assert settings.engine.auto_trading is False
    assert settings.qmt.account_id
    assert settings.qmt.qmt_userdata_path.endswith("userdata_mini")
    assert settings.database_path.name == "live.sqlite"


ALLOWED = {"miniqmt_lab", "miniqmt_lab.schema", "miniqmt_lab.protocols", "miniqmt_lab.config", "miniqmt_lab.market",
           "miniqmt_lab.errors", "miniqmt_lab.records"}


def test_the_adapters_import_only_the_neutral_layer_and_never_xtquant_at_import():
    package = Path(__file__).resolve().parents[1] / "miniqmt_lab" / "qmt"
    imported: set[str] = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            imported |= {n for n in names if n.startswith(("miniqmt_lab", "xtquant"))}
    outside = {n for n in imported if not n.startswith("miniqmt_lab.qmt")}
    assert outside <= ALLOWED, outside - ALLOWED

    probe = ("import sys, miniqmt_lab.qmt; print(sorted(m for m in sys.modules"
             " if m.split('.')[0] == 'xtquant' or m.startswith('miniqmt_lab.xtquant_double')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
