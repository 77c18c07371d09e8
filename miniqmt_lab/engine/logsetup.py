"""Logging for a headless engine: a rotating file per process, old files cleaned up, account ids masked.

Each process writes its own file, ``miniqmt_lab-<YYYYmmdd-HHMMSS>-<pid>.log`` (Asia/Shanghai time), so
two processes logging to one folder never rotate a file the other holds open (on Windows that fails).
Cleanup deletes only this product's log files older than ``paths.log_retention_days``, never another
program's. Library code never configures logging on import; the CLI (or a notebook) calls
:func:`setup_logging`.
"""

from __future__ import annotations

import datetime as dt
import logging
import logging.handlers
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from miniqmt_lab.config import Settings
from miniqmt_lab.fsutil import owner_only, owner_only_dir
from miniqmt_lab.market import SHANGHAI
from miniqmt_lab.schema import mask_account

LOG_PREFIX = "miniqmt_lab"
OWN_LOGS = re.compile(rf"^{LOG_PREFIX}(-\d{{8}}-\d{{6}}-\d+)?\.log(\.\d+)?$")
FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 20


class AccountMaskFilter(logging.Filter):
    """Replaces every account id in a record's message (and traceback) by its masked form."""

    def __init__(self, accounts: Iterable[str]) -> None:
        super().__init__()
        self._pairs = [(a, mask_account(a)) for a in accounts if a and len(a) > 2]

    def _mask(self, text: str) -> str:
        for account, masked in self._pairs:
            text = text.replace(account, masked)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._pairs:
            return True
        message = record.getMessage()
        masked = self._mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        return True


def log_file_name(now: dt.datetime | None = None, pid: int | None = None) -> str:
    moment = now or dt.datetime.now(SHANGHAI)
    return f"{LOG_PREFIX}-{moment:%Y%m%d-%H%M%S}-{os.getpid() if pid is None else pid}.log"


def cleanup_old_logs(log_dir: Path, retention_days: int, now: float | None = None) -> list[Path]:
    """Delete this product's log files in ``log_dir`` not modified for ``retention_days``; returns them.
    Other files, other programs' ``*.log`` included, are left alone."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    removed = []
    for file in log_dir.glob(f"{LOG_PREFIX}*.log*"):
        if not OWN_LOGS.match(file.name):
            continue
        try:
            if file.is_file() and file.stat().st_mtime < cutoff:
                file.unlink()
                removed.append(file)
        except OSError:  # a file another process rotates away is not ours to worry about
            continue
    return removed


def setup_logging(settings: Settings, *, console: bool = True, level: int = logging.INFO) -> Path:
    """Log to this process's file in ``log_dir`` (rotating) and optionally the console; returns the file.

    Calling it again replaces the handlers it installed before.
    """
    log_dir = owner_only_dir(settings.log_path)
    removed = cleanup_old_logs(log_dir, settings.paths.log_retention_days)
    mask = AccountMaskFilter([settings.qmt.account_id])
    formatter = logging.Formatter(FORMAT)
    file = log_dir / log_file_name()
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(file, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    ]
    owner_only(file)
    if console:
        handlers.append(logging.StreamHandler())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_miniqmt", False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(mask)
        handler._miniqmt = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    if removed:
        logging.getLogger(__name__).info("removed %d log file(s) older than %d days", len(removed),
                                         settings.paths.log_retention_days)
    return file
