"""One engine per book: an exclusive lock on the database file's identity for the life of a run.

The lock is taken on a lock file named after the database file's device and inode, so a symlink or a
hard link to the same database cannot let a second engine trade the same book. The OS frees the lock
when the process dies, so a crashed engine never blocks its restart; a released lock deletes its file
(a crashed one leaves an empty file that the next engine on that database takes over).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from miniqmt_lab.errors import MiniQmtError

LOCK_FOLDER = Path(tempfile.gettempdir()) / "miniqmt-lab-locks"


class DatabaseInUse(MiniQmtError, RuntimeError):
    """Another running engine holds this database: two engines on one book would trade it twice."""


def identity_lock_path(database: Path) -> Path:
    """The lock file of ``database``'s identity (the file is created empty when it does not exist yet)."""
    if not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        database.touch()
    st = os.stat(database)  # follows symlinks: every name of one file gives the same lock
    return LOCK_FOLDER / f"{st.st_dev:x}-{st.st_ino:x}.lock"


class DatabaseLock:
    """``acquire`` or raise :class:`DatabaseInUse`; ``release`` is idempotent."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._file: BinaryIO | None = None
        self._path = ""

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self, attempts: int = 5) -> None:
        """Take the lock; a lock held a moment by :meth:`check_name` of an engine being built elsewhere is
        tried again a few times before :class:`DatabaseInUse`."""
        if self._file is not None:
            return
        for attempt in range(attempts):
            file = self._try_lock(identity_lock_path(self.database))
            if file is not None:
                break
            time.sleep(0.02 * (attempt + 1))
        else:
            raise DatabaseInUse(f"another engine is running on {self.database}: stop it first")
        # the name the running engine uses: another name of the same file must not even be read
        file.seek(0)
        file.truncate()
        file.write(os.fsencode(str(self.database)))
        file.flush()
        self._file = file
        self._path = file.name

    @staticmethod
    def _try_lock(path: Path) -> BinaryIO | None:
        """The locked lock file, or None when another process holds it. A lock file is deleted when its
        holder releases it, so the lock counts only if the name still leads to the file we locked."""
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            file = open(path, "a+b")  # noqa: SIM115 - held open while the engine runs
            try:
                _lock_file(file)
            except OSError:
                file.close()
                return None
            try:
                same = os.path.samestat(os.fstat(file.fileno()), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                return file
            file.close()  # its holder deleted it between our open and our lock: take the new one

    def check_name(self) -> None:
        """Raise :class:`DatabaseInUse` when a running engine holds this file under another name (a
        hard link): SQLite keys its write-ahead log on the name, so reading through ours would show a
        stale book and writing would corrupt it."""
        if self._file is not None or not self.database.exists():
            return
        path = identity_lock_path(self.database)
        if not path.exists():
            return
        with open(path, "a+b") as file:
            try:
                _lock_file(file)
            except OSError:
                file.seek(0)
                holder = os.fsdecode(file.read()) or "another name"
                if os.path.normcase(holder) != os.path.normcase(str(self.database)):
                    raise DatabaseInUse(
                        f"another engine is running on this database as {holder}: {self.database} is the same"
                        " file under another name; stop that engine first"
                    ) from None

    def release(self) -> None:
        if self._file is not None:
            if sys.platform != "win32":  # Windows cannot delete an open file: it stays, empty of meaning
                with contextlib.suppress(OSError):
                    os.unlink(self._path)  # while still locked: no one can take a file on its way out
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


def wipe_database(database: Path) -> Path:
    """A clean paper account for a demo: the database and its side files removed, unless an engine runs
    on it (:class:`DatabaseInUse`, nothing deleted)."""
    lock = DatabaseLock(database)
    lock.acquire()
    try:
        for suffix in ("", "-wal", "-shm", ".unsaved-fills.jsonl"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    finally:
        lock.release()
    return database


__all__ = ["DatabaseInUse", "DatabaseLock", "identity_lock_path", "wipe_database"]
