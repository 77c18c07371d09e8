"""Threads as explicit state machines, a watchdog that restarts dead ones, and calls under a timeout.

A :class:`ManagedThread` runs one ``step`` after another. A step returns how long to wait before
the next one; an exception in a step is logged and the loop goes on, and ``max_errors`` failures in
a row fault the thread (state FAULTED, the thread ends) so the :class:`Watchdog` starts a fresh one.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from miniqmt_lab.errors import BrokerTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")
Wait = Callable[[float, threading.Event], bool]


class ThreadState(StrEnum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAULTED = "faulted"


def _real_wait(seconds: float, stop: threading.Event) -> bool:
    return stop.wait(max(0.0, seconds))


class ManagedThread:
    """One named loop of ``step`` calls with idempotent ``start``/``stop``, a stop Event and a heartbeat."""

    def __init__(
        self,
        name: str,
        step: Callable[[], float],
        *,
        wait: Wait = _real_wait,
        error_delay: float = 1.0,
        max_errors: int = 3,
        on_change: Callable[[], None] = lambda: None,
        on_error: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.name = name
        self._step = step
        self._wait = wait
        self.error_delay = error_delay
        self.max_errors = max_errors
        self._on_change = on_change
        self._on_error = on_error
        self._lock = threading.Lock()
        self._state = ThreadState.NEW
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_heartbeat: float | None = None  # epoch seconds
        self.last_error = ""
        self.started_at: float | None = None  # time.monotonic() of start()
        self.faulted_at: float | None = None  # time.monotonic() of the fault

    def __repr__(self) -> str:
        return f"ManagedThread({self.name!r}, {self._state})"

    @property
    def state(self) -> ThreadState:
        return self._state

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _set_state(self, state: ThreadState) -> None:
        with self._lock:
            self._state = state
        self._on_change()

    def beat(self) -> None:
        self.last_heartbeat = time.time()

    def start(self) -> None:
        """Start once; a no-op while starting or running. A stopped or faulted thread is not reused."""
        with self._lock:
            if self._state in (ThreadState.STARTING, ThreadState.RUNNING):
                return
            if self._state is not ThreadState.NEW:
                raise RuntimeError(f"thread {self.name!r} is {self._state}: create a new one to run again")
            self._state = ThreadState.STARTING
            self.started_at = time.monotonic()
            self._thread = threading.Thread(target=self._run, name=f"miniqmt-{self.name}", daemon=True)
        self._on_change()
        self._thread.start()

    def request_stop(self) -> None:
        with self._lock:
            if self._state in (ThreadState.STARTING, ThreadState.RUNNING):
                self._state = ThreadState.STOPPING
            elif self._state is ThreadState.NEW:
                self._state = ThreadState.STOPPED
        self.stop_event.set()
        self._on_change()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the loop to end and wait for it; True when it ended within ``timeout``. Idempotent."""
        self.request_stop()
        return self.join(timeout)

    def join(self, timeout: float) -> bool:
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        with self._lock:
            if self._state is ThreadState.STARTING:
                self._state = ThreadState.RUNNING
        self._on_change()
        errors = 0
        try:
            while not self.stop_event.is_set():
                self.beat()
                try:
                    delay = self._step()
                    errors = 0
                except Exception as exc:  # a step failing must not end the loop at once
                    errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("thread %s: step failed (%d in a row)", self.name, errors)
                    self._on_error(self.last_error)
                    if errors >= self.max_errors:
                        self._fault(f"{errors} failures in a row, last: {self.last_error}")
                        return
                    delay = self.error_delay
                if delay > 0 and self._wait(delay, self.stop_event):
                    break
        except BaseException as exc:  # anything else escaping a step (SystemExit, ...) ends the loop
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._on_error(self.last_error)
            self._fault(self.last_error)
            return
        self._set_state(ThreadState.STOPPED)

    def _fault(self, why: str) -> None:
        self.faulted_at = time.monotonic()
        log.error("thread %s FAULTED: %s", self.name, why)
        self._set_state(ThreadState.FAULTED)


class Watchdog:
    """Restarts business threads that died, at most once per ``cooldown`` seconds each.

    ``threads()`` returns the current thread object of every supervised name; ``restart(name)``
    builds, registers and starts a fresh one. Restarts are counted per name.
    """

    def __init__(
        self,
        threads: Callable[[], Mapping[str, ManagedThread]],
        restart: Callable[[str], ManagedThread],
        *,
        cooldown: float,
        stuck_after: Callable[[str], float],
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threads = threads
        self._restart = restart
        self.cooldown = cooldown
        self._now = now
        self._stuck_after = stuck_after
        self.restarts: dict[str, int] = {}
        self._last_restart: dict[str, float] = {}
        self._warned_stuck: set[str] = set()

    def check(self) -> list[str]:
        """One pass over the threads; returns the names restarted."""
        restarted = []
        now = self._now()
        for name, thread in list(self._threads().items()):
            if thread.state in (ThreadState.STOPPING, ThreadState.STOPPED, ThreadState.NEW):
                continue
            if thread.alive and thread.state is not ThreadState.FAULTED:
                self._check_heartbeat(name, thread)
                continue
            last = self._last_restart.get(name)
            if last is not None and now - last < self.cooldown:
                continue
            self._last_restart[name] = now
            self.restarts[name] = self.restarts.get(name, 0) + 1
            log.warning(
                "watchdog: thread %s is %s (%s); restarting it (restart %d)",
                name, thread.state, thread.last_error or "no error recorded", self.restarts[name],
            )
            self._restart(name)
            restarted.append(name)
        return restarted

    def _check_heartbeat(self, name: str, thread: ManagedThread) -> None:
        # a hung thread cannot be killed in Python; say so once, loudly, instead of starting a twin
        beat = thread.last_heartbeat
        if beat is None:
            return
        silent = time.time() - beat
        if silent > self._stuck_after(name):
            if name not in self._warned_stuck:
                self._warned_stuck.add(name)
                log.error("watchdog: thread %s has not beaten for %.0f s; it may be stuck in a call", name, silent)
        else:
            self._warned_stuck.discard(name)


class CallRunner:
    """Runs broker or feed calls on worker threads under a timeout, so that a hung call cannot hang a loop.

    A call that times out keeps its worker until it returns (Python cannot kill a thread); when every
    worker is held so, the next call gets a thread of its own instead of queueing behind them, so hung
    replies never use the engine up. ``hung`` counts calls past their timeout that have not returned.
    """

    def __init__(self, timeout: float, workers: int = 4, name: str = "call") -> None:
        self.timeout = timeout
        self._name = name
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"miniqmt-{name}")
        self._free = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._hung = 0

    @property
    def hung(self) -> int:
        with self._lock:
            return self._hung

    def _start(self, fn: Callable[..., T], args: tuple[object, ...]) -> concurrent.futures.Future[T]:
        if self._free.acquire(blocking=False):
            def pooled() -> T:
                try:
                    return fn(*args)
                finally:
                    self._free.release()

            return self._pool.submit(pooled)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def own() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=own, name=f"miniqmt-{self._name}-extra", daemon=True).start()
        return future

    def call(self, what: str, fn: Callable[..., T], *args: object, timeout: float | None = None) -> T:
        limit = self.timeout if timeout is None else timeout
        future = self._start(fn, args)
        try:
            return future.result(timeout=limit)
        except concurrent.futures.TimeoutError:
            with self._lock:
                self._hung += 1
            future.add_done_callback(self._returned_late)
            raise BrokerTimeout(f"{what} did not return within {limit:g} s") from None

    def _returned_late(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._hung -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
