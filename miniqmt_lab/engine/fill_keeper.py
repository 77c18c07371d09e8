"""Fills the database could not take, kept until it can: in memory and in an append-only side file.

A fill is money that moved at the broker. When storing it fails even after retries (the database
locked for long, the disk full, the file gone), the engine still shows it in the book, appends it
to ``<database>.unsaved-fills.jsonl`` (flushed and synced), halts trading, and writes it to the
database as soon as the database takes writes again; a restart writes what the side file still
holds before anything else. The broker sync never overwrites a book that has unsaved fills.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from miniqmt_lab.engine.store import TradeRow
from miniqmt_lab.fsutil import atomic_write_text, owner_only
from miniqmt_lab.schema import Fill, Side

log = logging.getLogger(__name__)


def trade_to_json(trade: TradeRow) -> str:
    data = dataclasses.asdict(trade)
    data["time"] = trade.time.isoformat()
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def trade_from_json(text: str) -> TradeRow:
    data = json.loads(text)
    data["time"] = dt.datetime.fromisoformat(data["time"])
    return TradeRow(**data)


def as_fill(trade: TradeRow) -> Fill:
    """The broker fill a kept trade record came from (to apply it again to a restored book)."""
    return Fill(trade.order_id, trade.trade_id, trade.code, Side(trade.side), trade.price, trade.volume,
                trade.amount, trade.commission, trade.time, trade.signal_id, trade.rule)


class FillKeeper:
    """Unsaved fills (their trade records, cash after included) by trade id, in arrival order. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # when the data folder's disk is full, the temp folder (often another disk) holds the side file
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        self.fallback = Path(tempfile.gettempdir()) / f"miniqmt-lab-{digest}-{path.name}"
        self._lock = threading.Lock()
        self._fills: dict[str, TradeRow] = {}

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._fills)

    def __len__(self) -> int:
        with self._lock:
            return len(self._fills)

    def pending(self) -> list[TradeRow]:
        with self._lock:
            return list(self._fills.values())

    def keep(self, trade: TradeRow) -> bool:
        """Hold ``trade`` in memory and append it to the side file; False when the side file failed too."""
        with self._lock:
            self._fills[trade.trade_id] = trade
            for place in (self.path, self.fallback):
                try:
                    with open(place, "a", encoding="utf-8") as handle:
                        handle.write(trade_to_json(trade) + "\n")
                        handle.flush()
                        os.fsync(handle.fileno())
                    owner_only(place)
                    return True
                except OSError as exc:
                    log.critical("fill %s could not be written to %s (%s)", trade.trade_id, place, exc)
            log.critical("fill %s is held in memory only: %s", trade.trade_id, trade_to_json(trade))
            return False

    def stored(self, trade_id: str) -> None:
        """``trade_id`` reached the database: drop it here and from the side file."""
        with self._lock:
            if self._fills.pop(trade_id, None) is None:
                return
            self._rewrite()

    def _rewrite(self) -> None:
        try:
            self.fallback.unlink(missing_ok=True)
            if self._fills:
                atomic_write_text(self.path, "".join(trade_to_json(f) + "\n" for f in self._fills.values()))
            else:
                self.path.unlink(missing_ok=True)
        except OSError as exc:  # the database has them; a stale side file is written again at restart
            log.warning("could not rewrite %s: %s", self.path, exc)

    def load(self) -> list[TradeRow]:
        """The side files left by an earlier run (fills it may already have stored are skipped by id)."""
        with self._lock:
            fills = []
            lines = []
            for place in (self.path, self.fallback):
                if place.exists():
                    text = place.read_text(encoding="utf-8")
                    lines += [(place, n, line) for n, line in enumerate(text.splitlines(), 1)]
            for place, number, line in lines:
                if not line.strip():
                    continue
                try:
                    trade = trade_from_json(line)
                except (ValueError, TypeError, KeyError) as exc:
                    log.error("%s line %d is unreadable (%s): skipped", place, number, exc)
                    continue
                self._fills[trade.trade_id] = trade
                fills.append(trade)
            return fills


__all__ = ["FillKeeper", "as_fill", "trade_from_json", "trade_to_json"]
