"""Where a sweep's chunks of combinations run: threads, local processes, or a Dask cluster.

Every scheduler gets the same inputs (the simulation loop's arguments: the bars prepared once, the
fees, the cash) and the same chunks of the rule table, runs :func:`run_chunk` on each and reports the
chunks as they finish; the sweep puts them back in order, so the table does not depend on where or
in which order they ran.

* ``"threads"`` (default): a thread pool in this process (the loop releases the GIL).
* ``"processes"``: a pool of fresh Python processes on this machine, each sent the inputs once.
* ``"dask"``: a Dask ``LocalCluster`` started for the sweep and closed after it: one worker process
  with ``n_jobs`` threads, laid out as a cluster machine should be (below).
* ``"tcp://host:port"`` or a ``distributed.Client``: a Dask cluster started by hand
  (``dask scheduler`` on one machine, ``dask worker tcp://host:8786 --nworkers 1 --nthreads <cores>``
  on each machine that helps; every worker needs the same miniqmt-lab installed). The inputs are
  scattered to the workers once.

One worker process per machine with a thread per core, rather than a process per core: threads
share one copy of the bars (the loop releases the GIL), while processes each stream their own copy
through the same memory bus. Measured at the whole-market shape on 2 cores, two processes ran each
chunk 1.3-2x slower than two threads of one process.

Dask is imported only when one of its schedulers is asked for.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from miniqmt_lab.backtest.nb import SimOutput, simulate_nb
from miniqmt_lab.errors import SweepError
from miniqmt_lab.rules.nb import RuleTable
from miniqmt_lab.rules.params import table_rows

if TYPE_CHECKING:
    from distributed import Client

LOCAL_SCHEDULERS = ("threads", "processes", "dask")
DASK_INSTALL = "pip install 'miniqmt-lab[dask]' (or: pip install 'dask[distributed]')"
CONNECT_TIMEOUT_S = 10.0


TABLE_ARG = 2
"""Where the rule table goes among ``simulate_nb``'s arguments."""


def loop_inputs(loop_args: tuple[Any, ...]) -> dict[str, Any]:
    """What every chunk needs: ``simulate_nb``'s arguments for a sweep (no trade records kept), with
    ``None`` in place of the rule table (:data:`TABLE_ARG`). Sent to each worker once."""
    return {"loop_args": tuple(loop_args)}


def run_chunk(inputs: Mapping[str, Any], table: RuleTable) -> SimOutput:
    """The loop over one chunk of combinations: equity and position counts of each."""
    args = list(inputs["loop_args"])
    args[TABLE_ARG] = table
    return simulate_nb(*args)


def run_chunks(
    inputs: dict[str, Any],
    table: RuleTable,
    scheduler: str | Client | None,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
) -> Iterator[tuple[range, SimOutput]]:
    """(combinations, output) of every chunk of ``table``, in the order the chunks finish.

    ``chunk_size`` rows per chunk (default: about two chunks per worker thread, at most 32 rows);
    ``n_jobs``: threads or processes of a local pool or cluster (default: one per CPU). A chunk that
    fails raises :class:`SweepError` naming its combinations and the scheduler, with the worker's
    exception as its cause; chunks not yet started are cancelled and what was started is closed.
    """
    check_scheduler(scheduler)
    if scheduler is None or scheduler == "threads":
        chunks = _chunks(table, chunk_size, local_jobs(n_jobs))
        with ThreadPoolExecutor(max_workers=min(local_jobs(n_jobs), len(chunks))) as pool:
            futures = {pool.submit(run_chunk, inputs, rows): combos for combos, rows in chunks}
            yield from _from_executor(futures, "threads")
    elif scheduler == "processes":
        chunks = _chunks(table, chunk_size, local_jobs(n_jobs))
        spawn = multiprocessing.get_context("spawn")  # as on Windows: no forked copy of this process's threads
        with ProcessPoolExecutor(max_workers=min(local_jobs(n_jobs), len(chunks)), mp_context=spawn,
                                 initializer=_keep_inputs, initargs=(inputs,)) as pool:
            futures = {pool.submit(_run_kept_chunk, rows): combos for combos, rows in chunks}
            yield from _from_executor(futures, "local processes")
    else:
        with dask_client(scheduler, n_jobs) as (client, where):
            yield from _from_dask(client, where, inputs, table, chunk_size)


def check_scheduler(scheduler: object) -> None:
    """Refuse a scheduler that is none of the kinds above, before any work is done."""
    if scheduler is None or scheduler in LOCAL_SCHEDULERS:
        return
    if isinstance(scheduler, str):
        if "://" not in scheduler:
            raise ValueError(f"scheduler must be None, 'threads', 'processes', 'dask', a Dask scheduler address "
                             f"such as 'tcp://host:8786' or a distributed.Client, got {scheduler!r}")
        return
    refusal = f"scheduler must be a str, None or a distributed.Client, got {type(scheduler).__name__}"
    try:
        from distributed import Client
    except ImportError as exc:  # then it cannot be a Client either
        raise TypeError(refusal) from exc
    if not isinstance(scheduler, Client):
        raise TypeError(refusal)


def local_jobs(n_jobs: int | None) -> int:
    return max(1, n_jobs or os.cpu_count() or 1)


def _chunks(table: RuleTable, chunk_size: int | None, jobs: int) -> list[tuple[range, RuleTable]]:
    n = len(table.stop_loss_ratio)
    size = chunk_size or max(1, min(32, math.ceil(n / (2 * jobs))))
    return [(range(a, min(a + size, n)), table_rows(table, a, min(a + size, n))) for a in range(0, n, size)]


def _failed(combos: range, where: str, exc: BaseException) -> SweepError:
    return SweepError(f"sweep combinations {combos.start}-{combos.stop - 1} failed on {where}: "
                      f"{type(exc).__name__}: {exc}")


# -- local pools ---------------------------------------------------------------------------------------

_kept_inputs: dict[str, Any] = {}


def _keep_inputs(inputs: dict[str, Any]) -> None:
    """Process-pool initializer: the inputs arrive once per process and stay for its chunks."""
    _kept_inputs.update(inputs)


def _run_kept_chunk(table: RuleTable) -> SimOutput:
    return run_chunk(_kept_inputs, table)


def _from_executor(futures: dict[Future[SimOutput], range], where: str) -> Iterator[tuple[range, SimOutput]]:
    pending = dict(futures)
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                combos = pending.pop(future)
                try:
                    output = future.result()
                except Exception as exc:
                    raise _failed(combos, where, exc) from exc
                yield combos, output
    finally:
        for future in pending:
            future.cancel()


# -- Dask ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def dask_client(scheduler: str | Client | None, n_jobs: int | None) -> Iterator[tuple[Client, str]]:
    """(client, description) for ``scheduler``; what is started here is closed here, a given Client is not."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise SweepError(f"scheduler={scheduler!r} needs Dask distributed: {DASK_INSTALL}") from exc
    if scheduler == "dask":
        with LocalCluster(n_workers=1, threads_per_worker=local_jobs(n_jobs), processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client, f"a local Dask cluster ({cluster.scheduler_address})"
    elif isinstance(scheduler, str):
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise SweepError(f"no Dask scheduler answered at {scheduler} within {CONNECT_TIMEOUT_S:g} s: {exc} "
                             "(start one with `dask scheduler`, and workers with `dask worker <address>`)") from exc
        with client:
            yield client, f"the Dask cluster at {scheduler}"
    elif isinstance(scheduler, Client):
        yield scheduler, f"the Dask cluster at {scheduler.scheduler.address}"
    else:
        raise TypeError(f"not a Dask scheduler: {scheduler!r}")


def _from_dask(
    client: Client, where: str, inputs: dict[str, Any], table: RuleTable, chunk_size: int | None
) -> Iterator[tuple[range, SimOutput]]:
    from distributed import as_completed

    threads = sum(client.nthreads().values())
    if not threads:
        raise SweepError(f"{where} has no workers: start some with `dask worker <scheduler address>`")
    shared = client.scatter(inputs, broadcast=True, hash=False)  # the bars go to each worker once
    futures = {client.submit(run_chunk, shared, rows, pure=False): combos
               for combos, rows in _chunks(table, chunk_size, threads)}
    try:
        for future in as_completed(futures):
            try:
                output = future.result()
            except Exception as exc:
                raise _failed(futures[future], where, exc) from exc
            yield futures[future], output
    finally:
        client.cancel([*futures, *shared.values()])
