"""Real-browser tests: JupyterLab + Debian chromium at 1,400 x 1,600 px, driven as a user would.

* 02_live_control: run all cells, start the paper engine, see positions; the layout fits (no sideways
  scroll of the positions table, every table in a box of fixed height); halt trading and see a manual order
  refused, loosen it again; filter the trades; the order form's fields line up; stop.
* a live engine on the xtquant double: auto trading reads OFF while its confirmation is open and ON after
  Yes; halting acts at once, trading again asks first.
* 01_backtest_tuning and 03_signal_replay: the charts take the output's width, none clipped at the right.

Screenshots land in test-artifacts/browser-*.png.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
VIEWPORT = {"width": 1400, "height": 1600}
ACCOUNT = "8800004321"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]

LIVE_NOTEBOOK = f"""\
import atexit
import tempfile
from pathlib import Path

from miniqmt_lab.config import Settings
from miniqmt_lab.factory import build_engine
from miniqmt_lab.xtquant_double import FakeQmt
from miniqmt_lab.widgets import EngineControlPanel

work = tempfile.TemporaryDirectory(prefix="miniqmt-browser-live-", ignore_cleanup_errors=True)
userdata = Path(work.name) / "userdata_mini"
userdata.mkdir()
settings = Settings().with_values(data_dir=str(Path(work.name) / "data"), simulation=False, auto_trading=False,
                                  account_id="{ACCOUNT}", qmt_userdata_path=str(userdata))
engine = build_engine(settings, modules=FakeQmt(account_id="{ACCOUNT}", userdata_path=userdata))
atexit.register(engine.stop)
panel = EngineControlPanel(engine)
panel
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Lab:
    base: str
    token: str

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A JupyterLab server on a temp copy of the notebooks (and a live-engine notebook made here)."""
    root = tmp_path / "notebooks"
    root.mkdir()
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(notebook, root)
    nbformat.write(new_notebook(cells=[new_code_cell(LIVE_NOTEBOOK)],
                                metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                         "language": "python"}}),
                   root / "live_double.ipynb")
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
        while True:  # the server answers or has died: polled, as a process has no event to wait on
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield Lab(base, token)
    finally:
        server.terminate()  # shuts its kernels down too
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def run_all(browser: Any, url: str) -> Any:
    """Open a notebook, wait for its kernel, run every cell; the page."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    page.locator(".jp-NotebookPanel").first.wait_for(timeout=60_000)
    # the kernel named in the notebook starts by itself; run only once it is connected and idle
    expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=60_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    return page


def box(page: Any, selector: str) -> dict[str, float]:
    """Size, scroll size and place of the first element matching ``selector``."""
    return page.evaluate(
        """(selector) => {
            const e = document.querySelector(selector);
            const r = e.getBoundingClientRect();
            return {left: r.left, right: r.right, top: r.top, height: r.height, scrollWidth: e.scrollWidth,
                    clientWidth: e.clientWidth, scrollHeight: e.scrollHeight, clientHeight: e.clientHeight};
        }""",
        selector,
    )


def tab(page: Any, title: str) -> None:
    page.locator(".mq-control-panel .lm-TabBar-tabLabel", has_text=title).first.click()


def test_live_control_notebook_in_chromium(lab: Lab, browser: Any) -> None:
    from playwright.sync_api import expect

    page = run_all(browser, lab.url("02_live_control.ipynb"))
    panel = page.locator(".mq-control-panel")
    start = page.locator("button.mq-start")
    expect(start).to_be_visible(timeout=90_000)
    expect(page.locator(".mq-mode-banner")).to_contain_text("PAPER")
    expect(page.locator(".mq-status")).to_contain_text("STOPPED", timeout=30_000)
    expect(page.locator(".mq-database")).to_contain_text("paper.sqlite")
    auto = page.locator("button.mq-auto")
    expect(auto).to_have_text("Auto trading ON")  # the notebook's settings turn it on
    assert box(page, "button.mq-auto")["scrollWidth"] <= box(page, "button.mq-auto")["clientWidth"]  # not cut
    expect(page.locator(".mq-state-line")).to_contain_text("ACTIVE")
    start.click()

    expect(page.locator(".mq-status")).to_contain_text("RUNNING", timeout=30_000)
    first_position = page.locator(".mq-positions table.mq-positions-table tbody tr").first
    expect(first_position).to_be_visible(timeout=60_000)
    expect(first_position).to_contain_text(".S")  # a stock code such as 600000.SH
    expect(page.locator(".mq-threads")).to_contain_text("monitor")
    code = first_position.locator("td").first.inner_text().strip()

    # 1,400 px: the positions table fits its tab without a sideways scroll
    expect(page.locator(".mq-positions .mq-rows-info")).to_contain_text("position")
    scroll = box(page, ".mq-positions .mq-scroll")
    assert scroll["scrollWidth"] <= scroll["clientWidth"], scroll
    assert scroll["right"] <= box(page, ".mq-control-panel")["right"] + 1
    panel.screenshot(path=str(ARTIFACTS / "browser-running.png"))

    # the kill switch: halted refuses a manual order, active lets it through again
    page.locator(".mq-trading-state button", has_text="halted").click()
    expect(page.locator(".mq-state-line")).to_contain_text("HALTED", timeout=20_000)
    tab(page, "Manual order")
    form = page.locator(".mq-order-form")
    form.locator("input").nth(0).fill(code)
    form.locator("input").nth(1).fill("100")
    form.locator("button.mq-order-submit").click()
    expect(page.locator(".mq-order-message")).to_contain_text("TradingHalted", timeout=20_000)
    # the side's buttons start where the inputs start: the labels line up
    buy = box(page, ".mq-order-form .widget-toggle-button")
    code_input = box(page, ".mq-order-form input")
    assert abs(buy["left"] - code_input["left"]) <= 3, (buy, code_input)
    form.screenshot(path=str(ARTIFACTS / "browser-order-form.png"))
    page.locator(".mq-trading-state button", has_text="active").click()
    expect(page.locator(".mq-state-line")).to_contain_text("ACTIVE", timeout=20_000)

    # the trades: a box of fixed height, filtered by the words typed
    tab(page, "Trades")
    expect(page.locator(".mq-trades .mq-rows-info")).to_contain_text("trade", timeout=20_000)
    page.locator(".mq-trades input.widget-input, .mq-trades .mq-filter input").first.fill(code)
    expect(page.locator(".mq-trades .mq-rows-info")).to_contain_text("filtered from", timeout=20_000)
    rows = page.locator(".mq-trades table tbody tr")
    assert rows.count() > 0
    assert all(code in text for text in rows.all_inner_texts())
    assert box(page, ".mq-trades .mq-scroll")["height"] <= 321
    panel.screenshot(path=str(ARTIFACTS / "browser-trades.png"))

    page.locator("button.mq-stop").click()
    expect(page.locator(".mq-status")).to_contain_text("STOPPED", timeout=30_000)
    tab(page, "Positions")
    expect(first_position).to_be_visible()  # the book stays on show after the stop
    panel.screenshot(path=str(ARTIFACTS / "browser.png"))
    page.close()


def test_live_switches_wait_for_yes_in_chromium(lab: Lab, browser: Any) -> None:
    from playwright.sync_api import expect

    page = run_all(browser, lab.url("live_double.ipynb"))
    expect(page.locator(".mq-mode-banner")).to_contain_text("LIVE", timeout=90_000)
    expect(page.locator(".mq-database")).to_contain_text("live.sqlite")
    auto = page.locator("button.mq-auto")
    expect(auto).to_have_text("Auto trading OFF")
    assert box(page, "button.mq-auto")["scrollWidth"] <= box(page, "button.mq-auto")["clientWidth"]

    auto.click()  # asks; the button keeps saying OFF while the question is open
    expect(page.locator(".mq-auto-confirm-box")).to_be_visible(timeout=20_000)
    expect(auto).to_have_text("Auto trading OFF")
    assert "mod-active" not in (auto.get_attribute("class") or "")
    page.locator(".mq-control-panel").screenshot(path=str(ARTIFACTS / "browser-live-confirm.png"))
    page.locator("button.mq-auto-confirm").click()
    expect(auto).to_have_text("Auto trading ON", timeout=20_000)
    expect(page.locator(".mq-status")).to_contain_text("auto trading: on", timeout=20_000)

    switch = page.locator(".mq-trading-state button")
    switch.filter(has_text="halted").click()  # halting acts at once
    expect(page.locator(".mq-state-line")).to_contain_text("HALTED", timeout=20_000)
    expect(page.locator(".mq-state-confirm-box")).to_be_hidden()
    switch.filter(has_text="active").click()  # trading again on a live account asks first
    expect(page.locator(".mq-state-confirm-box")).to_be_visible(timeout=20_000)
    expect(page.locator(".mq-state-confirm-box")).to_contain_text("88******21")
    assert "mod-active" in (switch.filter(has_text="halted").get_attribute("class") or "")
    expect(page.locator(".mq-state-line")).to_contain_text("HALTED")
    page.locator("button.mq-state-confirm").click()
    expect(page.locator(".mq-state-line")).to_contain_text("ACTIVE", timeout=20_000)
    page.locator(".mq-control-panel").screenshot(path=str(ARTIFACTS / "browser-live.png"))
    page.close()


@pytest.mark.parametrize(
    ("notebook", "panel_class", "charts"),
    [("01_backtest_tuning.ipynb", "mq-tuning-panel", 2), ("03_signal_replay.ipynb", "mq-replay-panel", 1)],
)
def test_charts_fit_at_1400_px(lab: Lab, browser: Any, notebook: str, panel_class: str, charts: int) -> None:
    from playwright.sync_api import expect

    page = run_all(browser, lab.url(notebook))
    panel = page.locator(f".{panel_class}")
    expect(panel).to_be_visible(timeout=120_000)
    svgs = page.locator(f".{panel_class} .js-plotly-plot .svg-container")
    expect(svgs).to_have_count(charts, timeout=120_000)
    area = box(page, f".{panel_class}")
    for i in range(charts):
        chart = svgs.nth(i).evaluate("e => {const r = e.getBoundingClientRect(); return [r.left, r.right];}")
        assert area["left"] - 1 <= chart[0] and chart[1] <= area["right"] + 1, (chart, area)
    output = page.locator(".jp-OutputArea-output", has=panel).first
    assert output.evaluate("e => e.scrollWidth <= e.clientWidth")
    panel.screenshot(path=str(ARTIFACTS / f"browser-{Path(notebook).stem}.png"))
    page.close()
