"""The command line (demo, headless run) and the engine's logging."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from engine_support import wait_for

from miniqmt_lab.cli import main
from miniqmt_lab.config import Settings
from miniqmt_lab.engine.logsetup import cleanup_old_logs, setup_logging

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def test_demo_replays_synthetic_bars_and_says_so(tmp_path, capsys):
    assert main(["demo", "--data-dir", str(tmp_path), "--days", "80", "--stocks", "6", "--parity"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SYNTHETIC DATA")
    assert "6 synthetic stocks x 80 trading days" in out
    assert "Trades by rule:" in out and "entry" in out
    assert "identical to the engine's: yes" in out
    assert (tmp_path / "demo-paper.sqlite").exists()
    assert f"Database: {tmp_path / 'demo-paper.sqlite'}" in out
    # a second demo starts from a clean paper account, not from the first one's book
    assert main(["demo", "--data-dir", str(tmp_path), "--days", "80", "--stocks", "6"]) == 0
    again = capsys.readouterr().out

    def results(text: str) -> str:
        return text[text.index("Signals by rule"):text.index("Database:")]

    assert results(again) == results(out)


def test_demo_refuses_too_little_history(tmp_path):
    with pytest.raises(SystemExit, match="--days must be >= 30"):
        main(["demo", "--data-dir", str(tmp_path), "--days", "10"])


def test_run_with_a_broken_config_names_the_key(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text("[engine]\nmonitor_interval = -1\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "engine.monitor_interval" in capsys.readouterr().err


def test_headless_run_stops_cleanly_on_sigterm(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f"[engine]\nstock_pool = [\"600000.SH\"]\ncall_timeout = 1.0\n\n"
        f"[paths]\ndata_dir = '{tmp_path / 'data'}'\nlog_dir = '{tmp_path / 'logs'}'\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "miniqmt_lab.cli", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "engine running (paper" in line, proc.stderr.read()
        # there is no QMT client here: the engine runs on (and logs) all the same
        wait_for(lambda: any("engine started" in f.read_text(encoding="utf-8")
                             for f in (tmp_path / "logs").glob("miniqmt_lab-*.log")), what="the log's start line")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "engine stopped" in out
    assert (tmp_path / "data" / "paper.sqlite").exists()
    (log_file,) = (tmp_path / "logs").glob("miniqmt_lab-*.log")  # one file per process
    assert "engine started" in log_file.read_text(encoding="utf-8")


def test_logs_rotate_into_the_log_dir_with_account_ids_masked(tmp_path):
    settings = Settings().with_values(log_dir=str(tmp_path / "logs"), account_id="8800001234", log_retention_days=3)
    old = tmp_path / "logs" / "miniqmt_lab.log.7"
    old.parent.mkdir()
    old.write_text("old")
    week_ago = time.time() - 7 * 86400
    os.utime(old, (week_ago, week_ago))
    root = logging.getLogger()
    level = root.level
    try:
        file = setup_logging(settings, console=False)
        assert not old.exists()  # older than the retention: removed
        logging.getLogger("miniqmt_lab.test").warning("order for account %s refused", "8800001234")
        try:
            raise RuntimeError("account 8800001234 is locked")
        except RuntimeError:
            logging.getLogger("miniqmt_lab.test").exception("broker failed")
        for handler in root.handlers:
            handler.flush()
        text = file.read_text(encoding="utf-8")
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_miniqmt", False)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    assert "8800001234" not in text
    assert "order for account 88******34 refused" in text and "account 88******34 is locked" in text


def test_cleanup_keeps_recent_logs(tmp_path):
    recent = tmp_path / "miniqmt_lab-20240304-093000-42.log.1"
    recent.write_text("recent")
    assert cleanup_old_logs(tmp_path, 14) == [] and recent.exists()


def test_version_module_entry_and_command_usage():
    version = subprocess.run([sys.executable, "-m", "miniqmt_lab", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("miniqmt-lab ")
    wrong = subprocess.run([sys.executable, "-m", "miniqmt_lab", "demo", "--foo"], capture_output=True, text=True)
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("usage: miniqmt-lab demo") and "unrecognized arguments: --foo" in wrong.stderr
    helps = subprocess.run([sys.executable, "-m", "miniqmt_lab", "run", "--help"], capture_output=True, text=True)
    assert "Ctrl-Break" in helps.stdout and "paper settings" in helps.stdout


def test_read_only_records_open_in_folders_with_uri_characters(tmp_path):
    from miniqmt_lab import records
    from miniqmt_lab.engine import Engine

    folder = tmp_path / "a#b?c%20d"
    settings = Settings().with_values(data_dir=str(folder))
    engine = Engine(settings)
    engine.start()
    engine.stop()
    query = records.read_only_query(engine.database_path)
    assert records.trades_frame(query).empty and records.signals_frame(query).empty
