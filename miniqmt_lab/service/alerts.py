"""Alerts for unattended running: fills, rejections, halts, thread restarts, broker disconnects and
reconnects, and a daily summary, sent through apprise (WeCom, DingTalk, Feishu, e-mail, Telegram...).

Two threads of their own, so the engine never waits for a notifier: the *watcher* looks at the
engine's snapshot and at its records (read-only connections, by ``seq`` cursors, so nothing is told
twice or missed) once a second; the *sender* delivers what the watcher found through a bounded queue.
Off while ``alerts.alert_urls`` is empty; ``alerts.alert_events`` chooses the kinds.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from miniqmt_lab.config import AlertSettings, ConfigError
from miniqmt_lab.market import SHANGHAI
from miniqmt_lab.records import read_only_query
from miniqmt_lab.schema import EngineSnapshot, Outcome
from miniqmt_lab.service import history

if TYPE_CHECKING:
    from miniqmt_lab.engine import Engine

log = logging.getLogger(__name__)

REFUSED = (Outcome.REJECTED.value, Outcome.FAILED.value)
"""Signal outcomes told as a rejection."""
FILLS_ONE_BY_ONE = 5  # more fills than this in one look are told in one alert
QUEUE_CAPACITY = 1000


class Notifier(Protocol):
    def send(self, title: str, body: str) -> bool:
        """Deliver one message; False (or an exception) when it did not go out."""
        ...


class AppriseNotifier:
    """Sends to every apprise URL of the settings (``mailto://``, ``dingtalk://``, ``wecombot://``...)."""

    def __init__(self, urls: Sequence[str]) -> None:
        import apprise

        self._apprise = apprise.Apprise()
        for i, url in enumerate(urls):
            if not self._apprise.add(url):
                scheme = url.split("://", 1)[0]
                raise ConfigError(f"alerts.alert_urls[{i}]: apprise cannot use this {scheme}:// URL")

    def send(self, title: str, body: str) -> bool:
        return bool(self._apprise.notify(title=title, body=body))


@dataclass(frozen=True, slots=True)
class Alert:
    event: str  # one of config.ALERT_EVENTS
    title: str
    body: str


class AlertSender:
    """Delivers alerts on its own thread; when the queue is full the newest alert is dropped and counted."""

    def __init__(self, notifier: Notifier, *, capacity: int = QUEUE_CAPACITY) -> None:
        self.notifier = notifier
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[Alert | None] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None

    def put(self, alert: Alert) -> bool:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            log.warning("alert queue full: dropped %r", alert.title)
            return False
        return True

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="alerts-send", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued within ``timeout``, then end the thread."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("alerts still queued at stop were not sent")
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                ok = self.notifier.send(alert.title, alert.body)
            except Exception:
                log.exception("sending the alert %r failed", alert.title)
                ok = False
            if ok:
                self.sent += 1
            else:
                self.failed += 1
                log.warning("the alert %r did not go out", alert.title)


class AlertWatcher:
    """Finds what to tell by comparing each look at the engine with the one before."""

    def __init__(
        self,
        engine: Engine,
        settings: AlertSettings,
        put: Callable[[Alert], object],
        *,
        interval: float = 1.0,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(SHANGHAI),
    ) -> None:
        self.engine = engine
        self.events = frozenset(settings.alert_events)
        self.summary_time = dt.time.fromisoformat(settings.daily_summary_time)
        self.put = put
        self.interval = interval
        self.now = now
        self._query = read_only_query(engine.database_path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: EngineSnapshot | None = None
        self._trades = 0
        self._signals = 0
        self._told: dict[str, int] = {}  # rejected signal id -> seq, until the cursor passes it
        self._looked: dt.datetime | None = None

    # -- thread ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self.prime()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alerts-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # a bad look is logged; the next one comes a second later
                log.exception("looking for alerts failed")

    # -- looking -----------------------------------------------------------------------------------------

    def prime(self) -> None:
        """Start from now: what the records hold already is not told."""
        self._last = self.engine.snapshot()
        self._trades = history.last_seq(self._query, "trade_records")
        self._signals, self._told = 0, {}
        self._read_signals(tell=False)
        self._looked = self.now()

    def check(self) -> list[Alert]:
        """One look: the alerts found, each also handed to ``put`` when its kind is chosen."""
        if self._last is None:
            self.prime()
        assert self._last is not None
        snap = self.engine.snapshot()
        found = [*self._state_changes(self._last, snap), *self._fills(snap), *self._read_signals(tell=True)]
        now = self.now()
        target = dt.datetime.combine(now.date(), self.summary_time, tzinfo=now.tzinfo)
        if self._looked is not None and self._looked < target <= now:
            found.append(self._summary(snap, now.date()))
        self._last, self._looked = snap, now
        chosen = [a for a in found if a.event in self.events]
        for alert in chosen:
            self.put(alert)
        return chosen

    def _title(self, snap: EngineSnapshot, text: str) -> str:
        return f"[{snap.mode.upper()}] {text}"

    def _state_changes(self, old: EngineSnapshot, new: EngineSnapshot) -> list[Alert]:
        out = []
        if new.trading_state != old.trading_state:
            out.append(Alert("halt", self._title(new, f"trading {new.trading_state.upper()}"),
                             f"was {old.trading_state}; reason: {new.state_reason or 'none given'}"))
        if old.running and new.running and old.broker.connected != new.broker.connected:
            kind, word = ("reconnect", "reconnected") if new.broker.connected else ("disconnect", "DISCONNECTED")
            out.append(Alert(kind, self._title(new, f"broker {new.broker.name} {word}"),
                             new.broker.message or f"account {new.broker.account or '-'}"))
        before = {t.name: t.restarts for t in old.threads}
        for thread in new.threads:
            if thread.restarts > before.get(thread.name, 0):
                out.append(Alert("thread_restart", self._title(new, f"thread {thread.name} restarted"),
                                 f"the watchdog restarted {thread.name} ({thread.restarts} restart(s) this run);"
                                 f" last error: {new.last_error or '-'}"))
        return out

    def _fills(self, snap: EngineSnapshot) -> list[Alert]:
        rows: list[dict[str, Any]] = []
        while True:
            page = history.trades_after(self._query, self._trades)
            rows.extend(page.rows)
            self._trades = page.last
            if not page.more:
                break
        names = {p.stock_code: p.stock_name for p in snap.positions}

        def line(r: dict[str, Any]) -> str:
            name = f" {names[r['stock_code']]}" if names.get(r["stock_code"]) else ""
            return f"{r['side']} {r['volume']} {r['stock_code']}{name} @ {r['price']:.2f} ({r['rule']})"

        if len(rows) <= FILLS_ONE_BY_ONE:
            return [Alert("fill", self._title(snap, f"fill: {line(r)}"),
                          f"amount {r['amount']:,.2f}, fees {r['commission']:,.2f}, at {r['time']}") for r in rows]
        amount = sum(r["amount"] for r in rows)
        return [Alert("fill", self._title(snap, f"{len(rows)} fills, {amount:,.2f} yuan"),
                      "\n".join(line(r) for r in rows[:50]) + ("\n..." if len(rows) > 50 else ""))]

    def _read_signals(self, *, tell: bool) -> list[Alert]:
        out: list[Alert] = []
        since, cursor = self._signals, None
        while True:
            page = history.signals_after(self._query, since)
            for r in page.rows:
                if r["outcome"] in REFUSED and r["id"] not in self._told:
                    self._told[r["id"]] = r["seq"]
                    if tell:
                        out.append(Alert("rejection", f"[{self.engine.mode.upper()}] rejected: {r['side']}"
                                         f" {r['volume']} {r['stock_code']} ({r['rule']})",
                                         f"{r['outcome']}: {r['message']}"))
            if cursor is None and page.next < page.last:
                cursor = page.next
            since = page.last
            if not page.more:
                break
        self._signals = cursor if cursor is not None else since
        self._told = {i: seq for i, seq in self._told.items() if seq > self._signals}
        return out

    def _summary(self, snap: EngineSnapshot, day: dt.date) -> Alert:
        start = day.isoformat()
        fills = self._query("SELECT side, COUNT(*), COALESCE(SUM(amount), 0), COALESCE(SUM(commission), 0)"
                            " FROM trade_records WHERE time >= ? GROUP BY side ORDER BY side", (start,))
        outcomes = self._query("SELECT outcome, COUNT(*) FROM signals WHERE time >= ? GROUP BY outcome"
                               " ORDER BY outcome", (start,))
        lines = [
            f"engine {'running' if snap.running else 'STOPPED'}, trading {snap.trading_state},"
            f" auto trading {'on' if snap.auto_trading else 'off'}, broker"
            f" {'connected' if snap.broker.connected else 'DISCONNECTED'}",
            f"cash {snap.cash:,.2f}; total asset {snap.total_asset:,.2f}; {len(snap.positions)} position(s)",
        ]
        lines += [f"{side}: {n} fill(s), {amount:,.2f} yuan, fees {fees:,.2f}" for side, n, amount, fees in fills]
        if not fills:
            lines.append("no fills today")
        if outcomes:
            lines.append("signals: " + ", ".join(f"{outcome} {n}" for outcome, n in outcomes))
        for p in sorted(snap.positions, key=lambda v: -v.market_value)[:20]:
            lines.append(f"  {p.stock_code} {p.stock_name} {p.volume} @ {p.price:.2f} ({p.profit_ratio:+.2%})")
        if snap.last_error:
            lines.append(f"last error: {snap.last_error}")
        return Alert("daily_summary", self._title(snap, f"daily summary {day.isoformat()}"), "\n".join(lines))


class Alerts:
    """The watcher and the sender of one served engine."""

    def __init__(self, watcher: AlertWatcher, sender: AlertSender) -> None:
        self.watcher = watcher
        self.sender = sender

    @classmethod
    def for_engine(cls, engine: Engine, settings: AlertSettings, notifier: Notifier | None = None,
                   **watch: Any) -> Alerts | None:
        """Alerts of ``engine``, or None when no alert URL is set (alerts off)."""
        if notifier is None:
            if not settings.alert_urls:
                return None
            notifier = AppriseNotifier(settings.alert_urls)
        sender = AlertSender(notifier)
        return cls(AlertWatcher(engine, settings, sender.put, **watch), sender)

    def start(self) -> None:
        self.sender.start()
        try:
            self.watcher.start()
        except (sqlite3.Error, FileNotFoundError) as exc:
            log.error("alerts cannot read the engine's records (%s): alerts are off", exc)

    def stop(self, timeout: float = 5.0) -> None:
        self.watcher.stop(timeout)
        self.sender.stop(timeout)


__all__ = ["Alert", "AlertSender", "AlertWatcher", "Alerts", "AppriseNotifier", "Notifier"]
