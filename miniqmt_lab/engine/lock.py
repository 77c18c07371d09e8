"""One engine per book: an exclusive lock on the database file's identity for the life of a run.

The lock is taken on a lock file named after the database file's device and inode, so a symlink or a
hard link to the same database cannot let a second engine trade the same book. The OS frees the lock
when the process dies, so a crashed engine never blocks its restart.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

from miniqmt_lab.errors import MiniQmtError

LOCK_FOLDER = Path(tempfile.gettempdir()) / "miniqmt-lab-locks"


class DatabaseInUse(MiniQmtError, RuntimeError):
    """Another running engine holds this database: two engines on one book would trade it twice."""


def identity_lock_path(database: Path) -> Path:
    """The lock file of ``database``'s identity (the file is created empty when it does not exist yet)."""
    database.parent.mkdir(parents=True, exist_ok=True)
    database.touch(exist_ok=True)
    st = os.stat(database)  # follows symlinks: every name of one file gives the same lock
    return LOCK_FOLDER / f"{st.st_dev:x}-{st.st_ino:x}.lock"


class DatabaseLock:
    """``acquire`` or raise :class:`DatabaseInUse`; ``release`` is idempotent."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._file: BinaryIO | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        if self._file is not None:
            return
        path = identity_lock_path(self.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "a+b")  # noqa: SIM115 - held open while the engine runs
        try:
            _lock_file(file)
        except OSError:
            file.close()
            raise DatabaseInUse(f"another engine is running on {self.database}: stop it first") from None
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the lock
            self._file = None


def _lock_file(file: BinaryIO) -> None:
    if sys.platform == "win32":
        import msvcrt

        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


__all__ = ["DatabaseInUse", "DatabaseLock", "identity_lock_path"]
