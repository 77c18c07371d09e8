"""The live engine: threads around the trading core, a versioned snapshot for widgets, manual orders.

Broker, feed and clock are injected (no ``if simulation`` here): paper trading is a
:class:`SimBroker`, a replay is a :class:`ReplayFeed` driving its :class:`ReplayClock`, live is the
QMT broker and feed on the wall clock. A broker that simulates the venue offers
``attach(clock, trades)`` and gets the engine's clock and trade records at start, so its ledger
follows the engine's T+1 days and survives restarts.

Threads (intervals from ``settings.engine``): ``monitor`` (tick rounds and broker sync), ``strategy``
(executes signals), ``events`` (broker events), ``data`` (watch list, entry history), ``sync``
(SQLite backstop), and the ``watchdog`` restarting any of them that dies.

An engine runs any number of times: ``stop`` closes what a run uses (threads, call runner, database,
journal, feed, broker) and ``start`` after it rebuilds them (:meth:`Engine._open_run`), the trader
restored from SQLite exactly as a new engine would be.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from miniqmt_lab.config import RuleSettings, Settings
from miniqmt_lab.engine.clock import WallClock
from miniqmt_lab.engine.context import RunContext
from miniqmt_lab.engine.entries import EntrySource, make_entries
from miniqmt_lab.engine.journal import Journal, compact_journals, prune_journals
from miniqmt_lab.engine.lock import DatabaseLock
from miniqmt_lab.engine.manual import manual_order
from miniqmt_lab.engine.replay import IdleFeed
from miniqmt_lab.engine.sim_broker import SimBroker
from miniqmt_lab.engine.store import Store
from miniqmt_lab.engine.threads import CallRunner, ManagedThread, ThreadState, Watchdog
from miniqmt_lab.engine.trading import EVENTS_WAIT, Trader
from miniqmt_lab.engine.views import position_views, positions_frame
from miniqmt_lab.errors import EngineNotRunning, EngineRunning, MiniQmtError
from miniqmt_lab.market import CALENDAR, SHANGHAI
from miniqmt_lab.protocols import Broker, EngineClock, Feed
from miniqmt_lab.schema import BrokerStatus, EngineSnapshot, Side, ThreadHealth, TradingState, mask_account

log = logging.getLogger(__name__)

BUSINESS_THREADS = ("monitor", "strategy", "events", "data", "sync")


def _pick_clock(feed: object, clock: EngineClock | None) -> EngineClock:
    feed_clock = getattr(feed, "clock", None)
    if clock is None:
        return feed_clock if feed_clock is not None else WallClock()
    if feed_clock is not None and feed_clock is not clock:
        raise ValueError(
            "the replay feed drives its own clock: pass clock=feed.clock, or build the feed with clock=..."
        )
    return clock


class ModeMismatch(MiniQmtError, ValueError):
    """Paper settings with a broker that reaches a real account, or live settings with the paper broker."""


def check_mode(settings: Settings, broker: Broker) -> str:
    """The engine's mode, decided by its broker ('live' when orders reach a real account); settings
    that say otherwise fail here with the fix named."""
    live = bool(getattr(broker, "live", False))
    name = getattr(broker, "name", type(broker).__name__)
    if live and settings.engine.simulation:
        raise ModeMismatch(
            f"the settings say simulation = true (paper) but the broker {name} sends orders to a real account:"
            " build the engine with miniqmt_lab.factory.build_engine(settings) (paper on live QMT quotes uses the"
            " paper broker), or set simulation = false in the config file to trade live"
        )
    if not live and not settings.engine.simulation:
        raise ModeMismatch(
            f"the settings say simulation = false (live) but the broker {name} is a paper broker: build the"
            " engine with miniqmt_lab.factory.build_engine(settings), which connects the QMT broker, or set"
            " simulation = true to trade on paper"
        )
    return "live" if live else "paper"


class Engine:
    """See ``docs/contracts.md`` (Engine) for the public API.

    The broker decides paper or live (:attr:`mode`); everything shown (banner, database name,
    confirmations, status, logs) reads that one fact. Build engines with
    :func:`miniqmt_lab.factory.build_engine` rather than by hand.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        broker: Broker | None = None,
        feed: Feed | None = None,
        clock: EngineClock | None = None,
        entries: EntrySource | pd.DataFrame | str | None = None,
        database: str | os.PathLike[str] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        e = self.settings.engine
        CALENDAR.add_holidays(dt.date.fromisoformat(day) for day in e.holidays)
        self.feed: Feed = feed if feed is not None else IdleFeed()
        self.clock = _pick_clock(self.feed, clock)
        self.broker: Broker = broker if broker is not None else SimBroker(self.settings, clock=self.clock)
        self.mode = check_mode(self.settings, self.broker)
        # symlinks resolved: SQLite keys its write-ahead log on the name, so every engine uses the real one
        self.database_path = (Path(database) if database is not None else self.settings.database_path).resolve()
        self.journal_path: Path | None = None
        self._version = 0
        self._version_lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._phase = "new"  # new -> running -> stopped -> (start) running -> stopped ...
        self._history_day: dt.date | None = None
        self._lock = DatabaseLock(self.database_path)
        self._lock.check_name()
        self._entries = make_entries(entries, self.feed, self.settings.data_path, e.entry, self._watch_codes)
        self._open_run(auto_trading=e.auto_trading)

    def _open_run(self, *, auto_trading: bool) -> None:
        """Build what one run uses and ``stop`` closes: the call runners, the database, the trader with
        book, cash, last prices, trading state and processed-signal memory read from it, and a watchdog
        over no threads yet. Nothing is written here: a database another engine runs on stays as it is."""
        e = self.settings.engine
        calls = CallRunner(e.call_timeout, workers=8, name="broker")
        feed_calls = CallRunner(e.call_timeout, workers=2, name="feed")
        try:
            store = Store(self.database_path, timeout=e.database_timeout)
        except BaseException:
            calls.close()
            feed_calls.close()
            raise
        trader = Trader(RunContext(
            self.settings,
            broker=self.broker,
            feed=self.feed,
            clock=self.clock,
            store=store,
            entries=self._entries,
            calls=calls,
            feed_calls=feed_calls,
            on_change=self._bump,
        ))
        try:
            trader.restore()
        except BaseException:
            store.close()
            calls.close()
            feed_calls.close()
            raise
        trader.ctx.auto_trading = auto_trading
        self._calls, self._feed_calls, self.store, self.trader = calls, feed_calls, store, trader
        self.interrupted = 0
        self._threads: dict[str, ManagedThread] = {}
        self._watchdog_thread: ManagedThread | None = None
        self._watchdog = Watchdog(
            lambda: dict(self._threads), self._restart, cooldown=e.restart_cooldown, stuck_after=self._stuck_after
        )

    def __repr__(self) -> str:
        return f"Engine({self.mode}, {self._phase}, database={str(self.database_path)!r})"

    # -- versioning -------------------------------------------------------------------------------

    def _bump(self) -> None:
        with self._version_lock:
            self._version += 1

    @property
    def version(self) -> int:
        """Bumped on every change of book, trades, signals, flags and thread state."""
        return self._version

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._phase == "running"

    def start(self) -> None:
        """Connect the broker, open the feed and start the threads. Idempotent while running.

        After :meth:`stop` it starts again: book, cash and processed-signal memory restored from the
        database, a new session journal, fresh threads, the broker connected again; auto trading
        stays as it was set. Connecting has its own budget (``engine.connect_timeout``).
        """
        with self._lifecycle:
            if self._phase == "running":
                return
            self._lock.acquire()
            try:
                if self._phase == "stopped":
                    self._open_run(auto_trading=self.trader.ctx.auto_trading)
                    self._phase = "new"
                ctx = self.trader.ctx
                self.interrupted = self.trader.settle_previous_run()
                connecting = f"connecting to {self.broker.name}..."
                ctx.broker_status = dataclasses.replace(ctx.broker_status, message=connecting)
                self._bump()
                # the broker's own budget is connect_timeout: the outer wait leaves it the time to say why
                connect_wait = self.settings.engine.connect_timeout + self.settings.engine.call_timeout
                self._calls.call("broker.connect", self.broker.connect, timeout=connect_wait)
                ctx.broker_status = self._calls.call("broker.status", self.broker.status)
                self._feed_calls.call("feed.open", self.feed.open, timeout=connect_wait)
            except BaseException:
                self._lock.release()
                raise
            attach = getattr(self.broker, "attach", None)
            if callable(attach):
                with ctx.book.lock:
                    quotes = dict(ctx.book.quotes)
                events = self.store.events_frame()
                if events.empty:
                    attach(self.clock, self.store.ledger_frame(), quotes)
                else:  # a venue ledger rebuilt from trades alone would miss the bonus shares and dividends
                    attach(self.clock, self.store.ledger_frame(), quotes, events=events)
            now = dt.datetime.now(SHANGHAI)
            session = f"{self.mode}-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
            journals = self.database_path.parent / "journal"
            prune_journals(journals, self.settings.paths.journal_retention_days, now)
            compact_journals(journals, self.settings.paths.journal_compact_days, now)
            self.journal_path = journals / f"{session}.sqlite"
            ctx.journal = Journal(self.journal_path)
            ctx.accepting = True
            try:
                self._data_step()
            except Exception:  # entries or the watch list failing must not keep the engine down
                log.exception("first data update failed; the data thread retries")
            for name in BUSINESS_THREADS:
                self._threads[name] = self._make_thread(name)
                self._threads[name].start()
            self._start_watchdog()
            self._phase = "running"
            log.info("engine started (%s, database %s, journal %s)", self.mode, self.database_path, self.journal_path)
        self._bump()

    def _start_watchdog(self) -> None:
        if self.settings.engine.thread_monitor:
            self._watchdog_thread = ManagedThread(
                "watchdog", self._watchdog_step, error_delay=self.settings.engine.thread_check_interval,
                on_change=self._bump,
            )
            self._watchdog_thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting commands, stop the watchdog and the threads, close the feed, the broker and the
        stores. Idempotent; :meth:`start` runs the engine again. The database lock is released even when
        saving the book fails (a full disk): the records written so far stay consistent."""
        with self._lifecycle:
            if self._phase == "stopped":
                return
            was_running = self._phase == "running"
            self._phase = "stopped"
            deadline = time.monotonic() + timeout
            ctx = self.trader.ctx
            ctx.accepting = False
            try:
                if was_running:
                    self._stop_threads(deadline)
                try:
                    self.trader.broker_events.store_kept_fills()
                    self.trader.flush()
                except Exception as exc:
                    log.error("saving the book at stop failed (%s); fills and signals were saved as they came", exc)
                if ctx.fills:
                    log.critical("%d fill(s) are not in the database: they wait in %s (or %s) for the next start",
                                 len(ctx.fills), ctx.fills.path, ctx.fills.fallback)
                closers = (("feed.close", self._feed_calls, self.feed.close),
                           ("broker.close", self._calls, self.broker.close))
                for what, runner, call in closers:
                    try:
                        runner.call(what, call, timeout=max(0.1, deadline - time.monotonic()))
                    except Exception as exc:  # closing is best effort; the records are safe already
                        log.warning("%s failed: %s", what, exc)
                ctx.broker_status = dataclasses.replace(
                    ctx.broker_status, connected=False, message="closed: the engine stopped"
                )
            finally:
                self._calls.close()
                self._feed_calls.close()
                if ctx.journal is not None:
                    ctx.journal.close()
                self.store.close()
                self._lock.release()
            log.info("engine stopped")
        self._bump()

    def _stop_threads(self, deadline: float) -> None:
        def remaining() -> float:
            return max(0.1, deadline - time.monotonic())

        ctx = self.trader.ctx
        if self._watchdog_thread is not None:
            self._watchdog_thread.stop(remaining())
        for name in ("monitor", "strategy", "data", "sync"):
            self._threads[name].request_stop()
        ctx.tasks.put(None)  # wakes the strategy thread at once
        self._threads["strategy"].stop(remaining())
        self.trader.execution.stop_tasks()  # acknowledges what the monitor may be waiting for
        self._threads["monitor"].join(remaining())
        self._threads["events"].stop(remaining())
        try:
            self.trader.broker_events.drain()
        except Exception as exc:
            log.error("applying the last broker events failed: %s", exc)
        for name in ("data", "sync"):
            self._threads[name].join(remaining())
        stuck = [name for name, t in self._threads.items() if t.alive]
        if stuck:
            log.error("threads still running after stop: %s", ", ".join(stuck))

    # -- threads ----------------------------------------------------------------------------------

    def _make_thread(self, name: str) -> ManagedThread:
        e = self.settings.engine
        trader = self.trader

        def on_error(message: str) -> None:
            trader.ctx.last_error = f"thread {name}: {message}"

        if name == "monitor":
            return ManagedThread(name, trader.monitor.step, wait=self.clock.sleep, error_delay=e.monitor_interval,
                                 on_change=self._bump, on_error=on_error)
        steps = {
            "strategy": (trader.execution.step, e.strategy_interval),
            "events": (trader.broker_events.step, EVENTS_WAIT),
            "data": (self._data_step, e.data_update_interval),
            "sync": (self._sync_step, e.sqlite_sync_interval),
        }
        step, interval = steps[name]
        return ManagedThread(name, step, error_delay=interval, on_change=self._bump, on_error=on_error)

    def _restart(self, name: str) -> ManagedThread:
        thread = self._make_thread(name)
        self._threads[name] = thread
        thread.start()
        return thread

    def _stuck_after(self, name: str) -> float:
        e = self.settings.engine
        longest = {
            "monitor": max(e.monitor_interval, e.idle_sleep) + 2 * e.call_timeout + 1.0,
            "strategy": e.strategy_interval + 3 * e.call_timeout,
            "events": EVENTS_WAIT,
            "data": e.data_update_interval + e.call_timeout,
            "sync": e.sqlite_sync_interval,
        }[name]
        return 3 * longest + e.thread_check_interval

    def _watchdog_step(self) -> float:
        restarted = self._watchdog.check()
        for name in restarted:
            self.trader.ctx.issue("thread_restart", "", f"thread {name} died and was restarted by the watchdog")
        return self.settings.engine.thread_check_interval

    def _supervise_watchdog(self) -> None:
        """The watchdog is watched too (by the sync thread): a faulted one is replaced."""
        watchdog = self._watchdog_thread
        if watchdog is None or self._phase != "running":
            return
        if watchdog.state is ThreadState.FAULTED or (watchdog.state is ThreadState.RUNNING and not watchdog.alive):
            log.error("the watchdog thread is %s (%s): starting a new one", watchdog.state, watchdog.last_error)
            self._watchdog.restarts["watchdog"] = self._watchdog.restarts.get("watchdog", 0) + 1
            self._start_watchdog()

    def _watch_codes(self) -> list[str]:
        return sorted(set(self.trader.book.codes()) | set(self.settings.engine.stock_pool))

    def _data_step(self) -> float:
        ctx = self.trader.ctx
        codes = self._watch_codes()
        if codes:
            self._feed_calls.call("feed.watch", self.feed.watch, codes)
            self._refresh_history(codes)
        if ctx.entries is not None:
            ctx.entries.refresh()
        return self.settings.engine.data_update_interval

    def _refresh_history(self, codes: list[str]) -> None:
        """Once a day, a live feed brings the daily bars (and corporate actions) the entries are computed
        from up to yesterday into ``<data_dir>/bars.duckdb`` (``feed.refresh_history(codes, store)``; a
        replay has its bars already)."""
        refresh = getattr(self.feed, "refresh_history", None)
        day = self._clock_time()
        if not callable(refresh) or day is None or self._history_day == day.date():
            return
        from miniqmt_lab.bars import BarStore

        path = self.settings.data_path / "bars.duckdb"
        with BarStore(path) as store:
            self._feed_calls.call("feed.refresh_history", refresh, codes, store,
                                  timeout=10 * self.settings.engine.connect_timeout)
        self._history_day = day.date()
        log.info("daily bars of %d stock(s) refreshed in %s", len(codes), path)

    def _sync_step(self) -> float:
        ctx = self.trader.ctx
        self._supervise_watchdog()
        self.trader.flush()
        if ctx.journal is not None:
            ctx.journal.flush()
        return self.settings.engine.sqlite_sync_interval

    def wait_idle(self, timeout: float) -> bool:
        """True once a finite feed (replay) is finished and every round processed."""
        return self.trader.ctx.drained.wait(timeout)

    # -- commands ---------------------------------------------------------------------------------

    def replace_rules(self, rules: RuleSettings) -> None:
        """New rules, in force from the next start; only while the engine is not running (a run decides
        with the rules it started with)."""
        with self._lifecycle:
            if self._phase == "running":
                raise EngineRunning("the engine is running: stop it before changing its rules")
        self.stop()  # a built, never started engine closes the run it opened with the old rules
        self.settings = dataclasses.replace(self.settings, rules=rules)
        log.warning("rules replaced; in force from the next start")
        self._bump()

    def set_auto_trading(self, on: bool) -> None:
        self.trader.ctx.auto_trading = bool(on)
        log.warning("auto trading %s (%s)", "ON" if on else "off", self.mode)
        self._bump()

    @property
    def trading_state(self) -> TradingState:
        return self.trader.ctx.risk.state

    def set_trading_state(self, state: TradingState | str, reason: str = "", *, by: str = "user") -> None:
        """The kill switch: ``active`` trades, ``reducing`` only sells, ``halted`` sends no order.

        Kept in the database: a halt survives a restart until switched back here.
        """
        try:
            new = TradingState(state)
        except ValueError:
            raise ValueError(f"trading state must be one of {', '.join(s.value for s in TradingState)},"
                             f" got {state!r}") from None
        ctx = self.trader.ctx
        ctx.risk.set_state(new, reason, self._clock_time() or dt.datetime.now(SHANGHAI), by=by)
        self._bump()

    def buy(
        self, code: str, volume: int | None = None, *, amount: float | None = None, price: float | None = None
    ) -> str:
        """Manual buy of ``volume`` shares, or of ``amount`` yuan rounded down to whole lots; returns the order id.

        Without ``price`` the order is a limit at the last price the feed sent. Raises the typed errors
        of :mod:`miniqmt_lab.errors`; recorded with rule ``manual``.
        """
        self._require_running()
        return manual_order(self.trader.ctx, self.trader.execution, Side.BUY, code, volume, amount, price)

    def sell(self, code: str, volume: int, *, price: float | None = None) -> str:
        """Manual sell; whole lots, or the whole remaining holding. Returns the order id."""
        self._require_running()
        return manual_order(self.trader.ctx, self.trader.execution, Side.SELL, code, volume, None, price)

    def cancel(self, order_id: str) -> None:
        """Ask the broker to cancel a working order; its final status arrives as a broker event."""
        self._require_running()
        self._calls.call("broker.cancel", self.broker.cancel, str(order_id))

    def _require_running(self) -> None:
        if self._phase != "running":
            raise EngineNotRunning(f"the engine is {self._phase}: start it before placing orders")

    # -- views ------------------------------------------------------------------------------------

    def _thread_health(self) -> tuple[ThreadHealth, ...]:
        threads = dict(self._threads)
        if self._watchdog_thread is not None:
            threads["watchdog"] = self._watchdog_thread
        return tuple(
            ThreadHealth(name, str(t.state), t.alive, t.last_heartbeat, self._watchdog.restarts.get(name, 0))
            for name, t in threads.items()
        )

    def _broker_status(self, ctx: RunContext) -> BrokerStatus:
        status = dataclasses.replace(ctx.broker_status)
        account = self.settings.qmt.account_id
        status.account = mask_account(account) if account else status.account
        status.live = self.mode == "live"
        return status

    def _clock_time(self) -> dt.datetime | None:
        try:
            return self.clock.now()
        except RuntimeError:  # a replay clock before its first round
            return None

    def snapshot(self) -> EngineSnapshot:
        version = self._version
        ctx = self.trader.ctx  # a restart replaces it: read one run's facts
        with ctx.book.lock:
            views = position_views(ctx.book, ctx.params)
            cash = ctx.book.cash
        return EngineSnapshot(
            version=version,
            time=self._clock_time(),
            mode=self.mode,
            auto_trading=ctx.auto_trading,
            running=self.running,
            cash=cash,
            total_asset=cash + sum(v.market_value for v in views),
            positions=views,
            threads=self._thread_health(),
            broker=self._broker_status(ctx),
            last_error=ctx.last_error,
            trading_state=ctx.risk.state.value,
            state_reason=ctx.risk.reason,
            database=str(self.database_path),
        )

    def status(self) -> dict[str, Any]:
        """The snapshot's facts as plain data, plus where the records are and monitor counters."""
        snap = self.snapshot()
        ctx = self.trader.ctx
        out = {f.name: getattr(snap, f.name) for f in dataclasses.fields(snap)}
        out["positions"] = [dataclasses.asdict(p) for p in snap.positions]
        out["threads"] = [dataclasses.asdict(t) for t in snap.threads]
        out["broker"] = dataclasses.asdict(snap.broker)
        out["journal"] = str(self.journal_path) if self.journal_path else None
        out["monitor"] = dataclasses.asdict(ctx.stats)
        out["initial_cash"] = ctx.initial_cash
        out["interrupted_signals"] = self.interrupted
        out["unsaved_fills"] = len(ctx.fills)
        out["hung_calls"] = {"broker": self._calls.hung, "feed": self._feed_calls.hung}
        with ctx.book.lock:
            out["unknown_orders"] = [o.client_id for o in ctx.book.pending.values() if o.unknown]
        return out

    def positions(self) -> pd.DataFrame:
        ctx = self.trader.ctx
        return positions_frame(position_views(ctx.book, ctx.params))

    def trades(self) -> pd.DataFrame:
        """Every fill, columns ``TRADE_COLUMNS``, sorted by time then processing order."""
        return self.store.trades_frame()

    def signals(self) -> pd.DataFrame:
        """Every signal with its outcome: id, time, stock_code, rule, side, price, volume, outcome, message."""
        return self.store.signals_frame()

    def events(self) -> pd.DataFrame:
        """Corporate actions applied to holdings (``EVENT_COLUMNS``): bonus shares and dividends, not trades."""
        return self.store.events_frame()

    def issues(self) -> pd.DataFrame:
        """Bad input met (bad ticks, broker disagreements): time, kind, stock_code, message."""
        return self.store.issues_frame()

    def thread(self, name: str) -> ManagedThread:
        """The current thread object of ``name`` (a restart replaces it)."""
        if name == "watchdog" and self._watchdog_thread is not None:
            return self._watchdog_thread
        return self._threads[name]


__all__ = ["BUSINESS_THREADS", "Engine", "ModeMismatch", "ThreadState", "check_mode"]
