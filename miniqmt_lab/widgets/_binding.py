"""Loop guard for two-way bindings between a state object and its widgets (the glue-jupyter pattern).

Model → view writes happen inside ``with guard:``; view → model observers return early while the
guard is held, so writing a widget from the state never echoes back into the state.
"""

from __future__ import annotations

import threading
from types import TracebackType


class Guard:
    """Re-entrant and per thread: the poller thread syncing widgets does not mute a user's click."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __enter__(self) -> Guard:
        self._local.depth = getattr(self._local, "depth", 0) + 1
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._local.depth -= 1

    def __bool__(self) -> bool:
        return getattr(self._local, "depth", 0) > 0
