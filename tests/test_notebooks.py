"""Every notebook runs top to bottom in a fresh python3 kernel, on the synthetic sample data."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 60  # seconds per cell
NOTEBOOK_BUDGET = 60  # seconds per notebook, kernel start included


def _builder():
    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_is_built_from_the_script_and_has_no_outputs() -> None:
    builder = _builder()
    assert sorted(builder.NOTEBOOKS) == NAMES
    for name in NAMES:
        committed = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert committed == builder.build(name), f"{name} differs from make_notebooks.py: rerun it"
        assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str, tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},  # a stray relative path lands in tmp, not the repo
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIQMT_")}  # as on a fresh install
    started = time.perf_counter()
    client.execute(env=env)
    elapsed = time.perf_counter() - started
    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors
    assert elapsed < NOTEBOOK_BUDGET, f"{name} took {elapsed:.1f} s"
