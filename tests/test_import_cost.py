"""Importing the package pays for neither vectorbt nor numba compilation (speed of use)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MODULES = [
    "miniqmt_lab",
    "miniqmt_lab.config",
    "miniqmt_lab.market",
    "miniqmt_lab.rules",
    "miniqmt_lab.indicators",
    "miniqmt_lab.bars",
    "miniqmt_lab.engine",
    "miniqmt_lab.backtest",
    "miniqmt_lab.qmt",
    "miniqmt_lab.widgets",
    "miniqmt_lab.cli",
]

PROBE = """
import importlib, json, sys
from numba.core.registry import CPUDispatcher
mod = importlib.import_module(sys.argv[1])
compiled = []
for name, m in list(sys.modules.items()):
    if not name.startswith("miniqmt_lab"):
        continue
    for attr, obj in vars(m).items():
        if isinstance(obj, CPUDispatcher) and obj.signatures:
            compiled.append(f"{name}.{attr}")
print(json.dumps({
    "vectorbt": "vectorbt" in sys.modules,
    "xtquant": "xtquant" in sys.modules,
    "compiled": compiled,
}))
"""


@pytest.mark.parametrize("module", MODULES)
def test_import_is_cheap(module):
    proc = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts == {"vectorbt": False, "xtquant": False, "compiled": []}


LAYERS = {
    # a module and the package parts it must never load (the import graph runs one way)
    "miniqmt_lab.schema": ("miniqmt_lab.config", "miniqmt_lab.market", "miniqmt_lab.rules", "miniqmt_lab.engine",
                           "miniqmt_lab.protocols", "miniqmt_lab.records", "miniqmt_lab.errors"),
    "miniqmt_lab.protocols": ("miniqmt_lab.config", "miniqmt_lab.market", "miniqmt_lab.engine", "miniqmt_lab.rules"),
    "miniqmt_lab.rules.nb": ("miniqmt_lab.config", "miniqmt_lab.market", "miniqmt_lab.engine"),
    "miniqmt_lab.market": ("miniqmt_lab.config", "miniqmt_lab.engine", "miniqmt_lab.backtest"),
    "miniqmt_lab.config": ("miniqmt_lab.engine", "miniqmt_lab.backtest", "miniqmt_lab.rules.params"),
    "miniqmt_lab.backtest": ("miniqmt_lab.engine", "miniqmt_lab.qmt", "miniqmt_lab.widgets"),
    "miniqmt_lab.bars": ("miniqmt_lab.engine", "miniqmt_lab.backtest"),
    "miniqmt_lab.engine": ("miniqmt_lab.backtest", "miniqmt_lab.qmt", "miniqmt_lab.widgets", "miniqmt_lab.service"),
    "miniqmt_lab.qmt": ("miniqmt_lab.engine", "miniqmt_lab.widgets"),
}

LAYER_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("miniqmt_lab"))))
"""


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_import_loads_no_higher_layer(module):
    proc = subprocess.run([sys.executable, "-c", LAYER_PROBE, module], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    forbidden = [m for m in loaded if any(m == part or m.startswith(part + ".") for part in LAYERS[module])]
    assert forbidden == [], f"{module} loads {forbidden}"
