"""Small file helpers shared by every part that writes: owner-only permissions and atomic writes.

Databases, journals, logs, tokens and saved configs hold account data: on POSIX they are made
readable by their owner only. (On Windows files inherit the folder's access list; the user profile
is private by default.)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

POSIX = os.name == "posix"


def owner_only(path: str | os.PathLike[str]) -> None:
    """Make ``path`` readable and writable by its owner only (POSIX; a no-op elsewhere)."""
    if POSIX:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, 0o600)


def owner_only_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) and make it accessible by its owner only (POSIX)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if POSIX:
        with contextlib.suppress(PermissionError):
            os.chmod(folder, 0o700)
    return folder


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to a temp file beside ``path``, owner-only, then rename it over ``path``."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding=encoding, newline="") as handle:
            if POSIX:
                os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, file)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return file


__all__ = ["atomic_write_text", "owner_only", "owner_only_dir"]
