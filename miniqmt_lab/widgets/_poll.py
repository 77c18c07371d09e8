"""The engine as the widgets see it: its latest snapshot and tables, refreshed off the UI thread.

The widgets use only :class:`miniqmt_lab.protocols.EngineFace` of an engine, so an ``Engine`` in this
kernel and an ``EngineClient`` of a served engine are watched alike. A daemon thread reads
``engine.version`` (one integer) every ``interval`` seconds and fetches snapshot, positions, trades and
signals only when it changed. Widgets observe the traits of
:class:`EngineWatch`; the engine never waits for a widget, so a slow browser or a heavy table only
delays this thread, and a burst of engine changes is coalesced into one refresh of the latest state.
"""

from __future__ import annotations

import logging
import threading

import pandas as pd
import traitlets

from miniqmt_lab.protocols import EngineFace

log = logging.getLogger(__name__)


class EngineWatch(traitlets.HasTraits):
    """Observable mirror of one engine, updated when ``engine.version`` changes."""

    version = traitlets.Int(-1)
    snapshot = traitlets.Any(None, allow_none=True)
    positions = traitlets.Instance(pd.DataFrame, allow_none=True)
    trades = traitlets.Instance(pd.DataFrame, allow_none=True)
    signals = traitlets.Instance(pd.DataFrame, allow_none=True)
    error = traitlets.Unicode("")  # why the last refresh failed; cleared by the next good one

    def __init__(self, engine: EngineFace, *, interval: float = 0.5, start: bool = True) -> None:
        super().__init__()
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.engine = engine
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        if start:
            self.start()

    @property
    def polling(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.polling:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="miniqmt-widget-poll", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def refresh(self, *, force: bool = False) -> bool:
        """Pull the engine's state if its version moved (or ``force``); True when traits were updated.

        Also called directly by tests and notebooks that want the widgets current right now.
        """
        with self._refresh_lock:  # the poll thread and a direct caller must not interleave their writes
            version = self.engine.version
            if version == self.version and not force:
                return False
            snap = self.engine.snapshot()
            positions = self.engine.positions()
            trades = self.engine.trades()
            signals = self.engine.signals()
            # one notification burst, after every trait holds the new state: observers never see
            # a new snapshot beside old tables
            with self.hold_trait_notifications():
                self.snapshot = snap
                self.positions = positions
                self.trades = trades
                self.signals = signals
                self.error = ""
                self.version = snap.version
            return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # a failing engine or widget must not kill the poller
                text = f"{type(exc).__name__}: {exc}"
                if text != self.error:  # a lasting failure is logged once, not twice a second
                    log.exception("widget refresh failed")
                self.error = text
            self._stop.wait(self.interval)
