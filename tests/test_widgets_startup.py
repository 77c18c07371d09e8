"""From a fresh interpreter, and from a fresh Jupyter kernel, to a usable control panel: quick, and
without vectorbt, plotly or any numba kernel.

Prints the measured times (``pytest -s`` shows them); the budgets are loose for a loaded 2-core machine.
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
from miniqmt_lab.engine import Engine
from miniqmt_lab.widgets import EngineControlPanel

engine = Engine(Settings().with_values(data_dir=tempfile.mkdtemp()))
panel = EngineControlPanel(engine)
panel
"""

PROBE = """
import json, sys, tempfile, time
t0 = time.perf_counter()
from miniqmt_lab.config import Settings
from miniqmt_lab.engine import Engine
from miniqmt_lab.widgets import EngineControlPanel

engine = Engine(Settings().with_values(data_dir=tempfile.mkdtemp()))
panel = EngineControlPanel(engine)
panel.watch.refresh(force=True)  # usable: the widgets show the engine's state
assert "PAPER" in panel.banner.value and "STOPPED" in panel.status.value
t1 = time.perf_counter()

from numba.core.registry import CPUDispatcher
compiled = sorted(
    f"{name}.{attr}"
    for name, module in list(sys.modules.items()) if name.startswith("miniqmt_lab")
    for attr, obj in vars(module).items() if isinstance(obj, CPUDispatcher) and obj.signatures
)
print(json.dumps({
    "panel_seconds": t1 - t0,
    "modules": [m for m in ("vectorbt", "plotly", "miniqmt_lab.backtest", "xtquant") if m in sys.modules],
    "compiled": compiled,
}))
panel.close()
"""

BUDGET_SECONDS = 15.0


def test_fresh_interpreter_to_control_panel() -> None:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=110)
    total = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\ninterpreter start to usable control panel: {total:.2f} s (imports + engine + panel: "
          f"{facts['panel_seconds']:.2f} s)")
    assert facts["modules"] == []  # no vectorbt, plotly, backtest or xtquant
    assert facts["compiled"] == []  # no numba kernel compiled (nor loaded) before the engine trades
    assert total < BUDGET_SECONDS


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
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    content = reply["content"]
    assert content["status"] == "ok", content
    print(f"\nfresh kernel to displayed control panel: {total:.2f} s")
    assert content["user_expressions"]["heavy"]["data"]["text/plain"] == "[]"
    assert total < BUDGET_SECONDS
