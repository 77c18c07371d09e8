"""Sweeps on Dask distributed: a local cluster of two worker processes gives the table of the local sweep."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pandas as pd
import psutil
import pytest

from miniqmt_lab.backtest import prepare_bars, schedulers, sweep
from miniqmt_lab.bars import sample_bars
from miniqmt_lab.errors import SweepError

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

GRID = {"stop_loss_ratio": [-0.05, -0.1], "initial_take_profit_ratio": [0.04, 0.08], "grid_levels": [(0.93, 0.86), ()]}
RUN = {"entries": "always", "init_cash": 200_000.0, "chunk_size": 3}


@pytest.fixture(scope="module")
def bars():
    return prepare_bars(sample_bars(12, 160, seed=3))


@pytest.fixture(scope="module")
def local(bars):
    return sweep(bars, GRID, progress=False, n_jobs=2, **RUN)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        yield c


def children() -> set[psutil.Process]:
    return set(psutil.Process().children(recursive=True))


def assert_same_sweep(result, local) -> None:
    pd.testing.assert_frame_equal(result.table, local.table)
    pd.testing.assert_frame_equal(result.equity, local.equity)


def test_a_client_runs_the_sweep_of_this_machine(bars, local, client):
    seen = []
    result = sweep(bars, GRID, progress=lambda *a: seen.append(a), scheduler=client, **RUN)
    assert_same_sweep(result, local)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)  # combinations, as chunks finish
    assert seen[-1] == (8, 8) and len(seen) == 3  # chunks of 3, 3 and 2
    assert client.status == "running"  # a given Client is the caller's: left open
    assert not client.who_has()  # nothing of the sweep (bars, chunks) is left on the workers


def test_an_address_runs_the_sweep_on_that_cluster(bars, local, client):
    result = sweep(bars, GRID, progress=False, scheduler=client.scheduler.address, **RUN)
    assert_same_sweep(result, local)


def test_dask_starts_a_local_cluster_and_closes_it(bars, local):
    before = children()
    result = sweep(bars, GRID, progress=False, scheduler="dask", n_jobs=2, **RUN)
    assert_same_sweep(result, local)
    _, alive = psutil.wait_procs(children() - before, timeout=30)
    assert not alive


def test_a_worker_raising_gives_a_clear_error_and_closes_the_cluster(bars, tmp_path):
    # each worker of the cluster the sweep starts loads this first: its simulation runs out of memory
    preload = tmp_path / "out_of_memory.py"
    preload.write_text(textwrap.dedent(
        """
        import miniqmt_lab.backtest.schedulers as schedulers

        def simulate_nb(*args):
            raise MemoryError("no room for the equity of this chunk")

        schedulers.simulate_nb = simulate_nb
        """
    ))
    before = children()
    with dask.config.set({"distributed.worker.preload": [str(preload)]}), \
            pytest.raises(SweepError, match=r"combinations \d+-\d+ failed on a local Dask cluster") as failure:
        sweep(bars, GRID, progress=False, scheduler="dask", n_jobs=1, **RUN)
    assert "MemoryError: no room for the equity of this chunk" in str(failure.value)
    assert isinstance(failure.value.__cause__, MemoryError)
    _, alive = psutil.wait_procs(children() - before, timeout=30)
    assert not alive


def test_an_address_nobody_answers_is_a_clear_error(bars, monkeypatch):
    monkeypatch.setattr(schedulers, "CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(SweepError, match=re.escape("no Dask scheduler answered at tcp://127.0.0.1:9 ")):
        sweep(bars, GRID, progress=False, scheduler="tcp://127.0.0.1:9", **RUN)


def test_importing_the_backtest_does_not_import_dask():
    code = "import sys, miniqmt_lab.backtest; print(sorted({'dask', 'distributed'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
