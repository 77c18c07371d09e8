"""One real-browser test: JupyterLab + Debian chromium drive 02_live_control like a user would.

Run all cells, click Start, see the engine running and a position appear, click Stop. A screenshot
lands in test-artifacts/browser.png.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """A JupyterLab server on a temp copy of the notebooks; yields its base URL with the token."""
    root = tmp_path / "notebooks"
    root.mkdir()
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(notebook, root)
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIQMT_")}
    # the server's own settings and workspaces in tmp: nothing read from or left in the user's home
    for var, name in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
    ):
        env[var] = str(tmp_path / name)
    # no "official Jupyter news?" prompt over the page
    notification = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false"}')
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            # no calls out: no news feed, no update check, no extension catalogue
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"{base}/lab/tree/02_live_control.ipynb?token={token}"
    finally:
        server.terminate()  # shuts its kernels down too
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_live_control_notebook_in_chromium(lab: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(lab)
            page.locator(".jp-NotebookPanel").first.wait_for(timeout=60_000)
            # the kernel named in the notebook starts by itself; run only once it is connected and idle
            expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=60_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            start = page.locator("button.mq-start")
            expect(start).to_be_visible(timeout=90_000)
            expect(page.locator(".mq-mode-banner")).to_contain_text("PAPER")
            expect(page.locator(".mq-status")).to_contain_text("STOPPED", timeout=30_000)
            start.click()

            expect(page.locator(".mq-status")).to_contain_text("RUNNING", timeout=30_000)
            first_position = page.locator(".mq-positions table.mq-positions-table tbody tr").first
            expect(first_position).to_be_visible(timeout=60_000)
            expect(first_position).to_contain_text(".S")  # a stock code such as 600000.SH
            expect(page.locator(".mq-threads")).to_contain_text("monitor")
            panel = page.locator(".mq-control-panel")
            panel.screenshot(path=str(ARTIFACTS / "browser-running.png"))

            page.locator("button.mq-stop").click()
            expect(page.locator(".mq-status")).to_contain_text("STOPPED", timeout=30_000)
            expect(first_position).to_be_visible()  # the book stays on show after the stop
            panel.screenshot(path=str(ARTIFACTS / "browser.png"))
        finally:
            browser.close()
