"""The served engine's page in a real browser (Debian chromium + Playwright), as a user meets it:
``miniqmt-lab serve --demo`` prints a URL; open it, watch positions change while the demo replays,
stop the engine from the page and see the state change, then the same page at phone width.
Screenshots land in test-artifacts/service-*.png.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
GAIN, LOSS = "rgb(214, 39, 40)", "rgb(44, 160, 44)"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """``miniqmt-lab serve --demo`` in its own process; yields the URL it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIQMT_")}
    env["PYTHONPATH"] = str(ROOT)
    server = subprocess.Popen(
        [sys.executable, "-m", "miniqmt_lab.cli", "serve", "--demo", "--port", "0", "--data-dir", str(tmp_path),
         "--days", "250", "--stocks", "12", "--speed", "12"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    assert server.stdout is not None
    printed: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any("?token=" in line for line in printed):
        line = server.stdout.readline()
        if not line:
            break
        printed.append(line)
    url = next((line.strip() for line in printed if "?token=" in line), None)
    if url is None:
        server.kill()
        pytest.fail("serve --demo printed no URL:\n" + "".join(printed))
    try:
        yield url
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = server.communicate(timeout=60)
        assert server.returncode == 0, out
        assert out.rstrip().endswith("stopped")


def test_watch_and_control_the_served_demo_in_chromium(demo: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    assert demo.startswith("http://127.0.0.1:")
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
            viewport={"width": 1280, "height": 1400},
        )
        try:
            page = browser.new_page()
            page.goto(demo)
            expect(page.locator("#banner")).to_contain_text("PAPER")
            expect(page.locator("#engine-state")).to_have_text("RUNNING", timeout=30_000)
            assert "token=" not in page.url  # the token left the address bar...
            assert page.evaluate("localStorage.getItem('miniqmt-lab.token')") == demo.split("token=")[1]  # ...kept
            expect(page.locator("#updates")).to_have_text("server-sent events", timeout=15_000)

            positions = page.locator("#positions tbody")
            expect(positions.locator("tr td").first).not_to_have_text("no positions", timeout=90_000)
            first = positions.inner_text()
            page.wait_for_function(  # positions change while the demo replays
                "text => document.querySelector('#positions tbody').innerText !== text", arg=first, timeout=60_000)
            expect(positions).to_contain_text("合成样本")  # Chinese names render
            expect(page.locator("#trades tbody tr").first).not_to_contain_text("no trades", timeout=30_000)
            expect(page.locator("#signals tbody")).to_contain_text("executed")
            colours = page.evaluate(
                "[...document.querySelectorAll('#positions td.gain, #positions td.loss, #trades td.buy,"
                " #trades td.sell')].map(td => [td.className, getComputedStyle(td).color])")
            assert colours
            for classes, colour in colours:
                assert colour == (GAIN if ("gain" in classes or "buy" in classes) else LOSS), (classes, colour)
            page.screenshot(path=str(ARTIFACTS / "service-page.png"), full_page=True)

            page.locator("#btn-stop").click()
            expect(page.locator("#engine-state")).to_have_text("STOPPED", timeout=30_000)
            expect(page.locator("#btn-start")).to_be_enabled()
            expect(page.locator("#threads tbody")).not_to_contain_text("running")  # every thread stopped
            page.screenshot(path=str(ARTIFACTS / "service-stopped.png"), full_page=True)

            page.locator("#order-code").fill("600000.SH")
            page.locator("#order-volume").fill("100")
            page.locator("#order-form button[type=submit]").click()
            expect(page.locator("#order-result")).to_contain_text("engine_not_running")

            page.reload()  # no token in the address any more: the kept one is used
            expect(page.locator("#engine-state")).to_have_text("STOPPED", timeout=15_000)
            page.locator("#btn-start").click()
            expect(page.locator("#engine-state")).to_have_text("RUNNING", timeout=30_000)

            phone = browser.new_page()
            phone.set_viewport_size({"width": 390, "height": 844})
            phone.goto(demo.split("/?")[0] + "/")
            expect(phone.locator("#engine-state")).to_have_text("RUNNING", timeout=15_000)
            expect(phone.locator("#positions tbody")).to_contain_text("合成样本")
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page is {width}px wide at phone width"  # tables scroll inside their cards
            phone.screenshot(path=str(ARTIFACTS / "service-phone.png"), full_page=True)
        finally:
            browser.close()
    for name in ("service-page.png", "service-stopped.png", "service-phone.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
