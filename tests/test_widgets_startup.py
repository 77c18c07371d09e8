"""From a fresh interpreter, and from a fresh Jupyter kernel, to a usable control panel: without
vectorbt, plotly, xtquant or any numba kernel.

The engine is the one a trading machine opens first: built by the factory from paper settings (paper on
live QMT quotes), not yet started. The times are measured and printed (``pytest -s`` shows them), never
asserted: a loaded CI machine must not fail a test for being slow. What would make start-up slow
(a heavy import, a kernel compiled) is asserted instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.timeout(120)

PANEL_CELL = """
import sys, tempfile
from miniqmt_lab.config import Settings
from miniqmt_lab.factory import build_engine
from miniqmt_lab.widgets import EngineControlPanel

work = tempfile.TemporaryDirectory(prefix="miniqmt-startup-")
engine = build_engine(Settings().with_values(data_dir=work.name))
panel = EngineControlPanel(engine)
panel
"""

CLEANUP_CELL = """
panel.close()
engine.stop()
work.cleanup()
"""

PROBE = """
import json, sys, tempfile, time
t0 = time.perf_counter()
from miniqmt_lab.config import Settings
from miniqmt_lab.factory import build_engine
from miniqmt_lab.widgets import EngineControlPanel

imported = time.perf_counter()
work = tempfile.TemporaryDirectory(prefix="miniqmt-startup-")
engine = build_engine(Settings().with_values(data_dir=work.name))
built = time.perf_counter()
panel = EngineControlPanel(engine)
panel.watch.refresh(force=True)  # usable: the widgets show the engine's state
assert "PAPER" in panel.banner.value and "STOPPED" in panel.status.value and "ACTIVE" in panel.state_line.value
t1 = time.perf_counter()

from numba.core.registry import CPUDispatcher
compiled = sorted(
    f"{name}.{attr}"
    for name, module in list(sys.modules.items()) if name.startswith("miniqmt_lab")
    for attr, obj in vars(module).items() if isinstance(obj, CPUDispatcher) and obj.signatures
)
print(json.dumps({
    "import_seconds": imported - t0,
    "engine_seconds": built - imported,
    "panel_seconds": t1 - built,
    "modules": [m for m in ("vectorbt", "plotly", "miniqmt_lab.backtest", "xtquant") if m in sys.modules],
    "compiled": compiled,
}))
panel.close()
engine.stop()
work.cleanup()
"""


def test_fresh_interpreter_to_control_panel() -> None:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=110)
    total = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\ninterpreter start to usable control panel: {total:.2f} s (imports {facts['import_seconds']:.2f} s,"
          f" engine {facts['engine_seconds']:.2f} s, panel {facts['panel_seconds']:.2f} s)")
    assert facts["modules"] == []  # no vectorbt, plotly, backtest or xtquant
    assert facts["compiled"] == []  # no numba kernel compiled (nor loaded) before the engine trades


def test_fresh_kernel_to_control_panel() -> None:
    """What a notebook user waits for: kernel start plus the cell that shows the panel."""
    started = time.perf_counter()
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        reply = client.execute_interactive(
            PANEL_CELL,
            user_expressions={"heavy": "[m for m in ('vectorbt', 'plotly') if m in sys.modules]"},
            timeout=60,
            output_hook=lambda msg: None,
        )
        total = time.perf_counter() - started
        client.execute_interactive(CLEANUP_CELL, timeout=60, output_hook=lambda msg: None)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    content = reply["content"]
    assert content["status"] == "ok", content
    print(f"\nfresh kernel to displayed control panel: {total:.2f} s")
    assert content["user_expressions"]["heavy"]["data"]["text/plain"] == "[]"
