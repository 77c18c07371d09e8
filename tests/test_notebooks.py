"""Every notebook is built by notebooks/make_notebooks.py, committed clean (no outputs, execution counts or
widget state), builds engines only through the factory, runs top to bottom in a fresh python3 kernel on the
synthetic sample data, and leaves nothing behind in the temporary folder once its kernel shut down.

Run times are printed (``pytest -s``), never asserted; the per-cell timeout only turns a hang into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 90  # seconds per cell
LOCKS = "miniqmt-lab-locks"  # miniqmt_lab.engine.lock.LOCK_FOLDER's name
REBUILD = "rebuild them with `python notebooks/make_notebooks.py`"


def _builder():
    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_is_built_from_the_script_and_committed_clean() -> None:
    builder = _builder()
    assert sorted(builder.NOTEBOOKS) == NAMES
    for name in NAMES:
        committed = nbformat.read(NOTEBOOKS / name, as_version=4)
        code = [c for c in committed.cells if c.cell_type == "code"]
        assert all(not c.get("outputs") for c in code), f"{name} has outputs: {REBUILD}"
        assert all(c.get("execution_count") is None for c in code), f"{name} has execution counts: {REBUILD}"
        assert "widgets" not in committed.metadata, f"{name} holds widget state: {REBUILD}"
        assert (NOTEBOOKS / name).stat().st_size < 40_000, f"{name} is too large for a clean notebook: {REBUILD}"
        assert committed == builder.build(name), f"{name} differs from make_notebooks.py: {REBUILD}"


def test_notebooks_build_engines_only_through_the_factory() -> None:
    """No notebook constructs ``Engine(...)``, ``QmtBroker(...)`` or a feed by hand, in code or in the text."""
    for name in NAMES:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        text = "\n".join(cell.source for cell in notebook.cells)
        for forbidden in (r"\bEngine\(", r"\bQmtBroker\b", r"\bSimBroker\b", r"\bReplayFeed\b", r"\bReplayClock\b"):
            assert not re.search(forbidden, text), f"{name} uses {forbidden}: build engines with build_engine"
        if re.search(r"\bengine\s*=", text):
            assert "build_engine" in text, name


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_and_leaves_nothing_behind(name: str, tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    scratch = tmp_path / "tmp"  # the kernel's temporary folder: empty again once the kernel has shut down
    scratch.mkdir()
    cwd = tmp_path / "cwd"  # a stray relative path lands here, not in the repository
    cwd.mkdir()
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(cwd)}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIQMT_")}  # as on a fresh install
    env.update(TMPDIR=str(scratch), TEMP=str(scratch), TMP=str(scratch))
    started = time.perf_counter()
    client.execute(env=env)  # shuts the kernel down gracefully at the end
    print(f"\n{name}: {time.perf_counter() - started:.1f} s, kernel start and shutdown included")
    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors
    left = sorted(p.name for p in scratch.iterdir())
    # the engine keeps its one-engine-per-database lock files (named after the database file's identity) in a
    # shared folder of the system's temporary folder; everything the notebook made is gone
    assert left in ([], [LOCKS]), left
    assert all(p.suffix == ".lock" for p in (scratch / LOCKS).glob("*"))
    assert sorted(p.name for p in cwd.iterdir()) == []
