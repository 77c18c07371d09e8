"""xtquant, imported when the QMT broker or feed is built, and every way it can be unusable
turned into one actionable :class:`QmtUnavailable` line.

The first ``import xtquant`` in a process runs an update check over HTTP (10 s timeout plus DNS,
errors swallowed) and the native parts load only on Windows, so nothing imports xtquant at package
import time, and the broker and feed import it when they are built (:func:`preload`), off every
timed path. The adapters take a ``modules`` object (anything with ``xttrader``, ``xttype``,
``xtconstant`` and ``xtdata`` attributes, such as :class:`miniqmt_lab.xtquant_double.FakeQmt`);
without one they use :class:`RealXtQuant`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import itertools
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from miniqmt_lab.errors import QmtUnavailable

log = logging.getLogger(__name__)

CLIENT_DOWN_MARK = "无法连接xtquant服务"
"""Start of the plain Exception every xtdata call raises when no client is running."""
CONNECTION_LOST_MARK = "行情服务连接断开"
"""The plain Exception a download raises when the client goes away while it runs."""

NOT_INSTALLED = "xtquant is not installed: pip install xtquant on the QMT Windows machine (README: Going live)"
CLIENT_DOWN = "the QMT client is not running: start miniQMT (极简模式), log in, then try again"
USERDATA_HINT = r"the client's userdata_mini folder, e.g. D:\国金QMT交易端\userdata_mini"


class XtModules(Protocol):
    """The parts of xtquant the adapters use."""

    @property
    def xttrader(self) -> Any: ...

    @property
    def xttype(self) -> Any: ...

    @property
    def xtconstant(self) -> Any: ...

    @property
    def xtdata(self) -> Any: ...


def import_part(part: str) -> ModuleType:
    """``xtquant.<part>``, or QmtUnavailable saying whether xtquant is missing or cannot load here."""
    try:
        return importlib.import_module(f"xtquant.{part}")
    except ModuleNotFoundError as exc:
        if exc.name == "xtquant":
            raise QmtUnavailable(NOT_INSTALLED) from None
        raise QmtUnavailable(_platform_message(part, exc)) from None
    except ImportError as exc:
        raise QmtUnavailable(_platform_message(part, exc)) from None
    except Exception as exc:  # xtdata's data centre raises a plain Exception when its init fails
        raise QmtUnavailable(
            f"xtquant.{part} failed to start ({exc}): reinstall xtquant matching the client (docs/xtquant.md)"
        ) from None


def _platform_message(part: str, exc: ImportError) -> str:
    return (
        f"xtquant.{part} cannot load on {sys.platform} ({exc}): its native parts are Windows-only;"
        " run live trading on the QMT Windows machine and use paper mode here"
    )


class RealXtQuant:
    """The installed xtquant, each part imported on first use."""

    @functools.cached_property
    def xttrader(self) -> ModuleType:
        return import_part("xttrader")

    @functools.cached_property
    def xttype(self) -> ModuleType:
        return import_part("xttype")

    @functools.cached_property
    def xtconstant(self) -> ModuleType:
        return import_part("xtconstant")

    @functools.cached_property
    def xtdata(self) -> ModuleType:
        return import_part("xtdata")


def resolve(modules: XtModules | None) -> XtModules:
    return modules if modules is not None else RealXtQuant()


def preload(modules: XtModules | None, parts: tuple[str, ...]) -> tuple[XtModules, str]:
    """``modules`` (default: the installed xtquant) with ``parts`` imported now, so the first
    import's update check is paid here and not on a timed call; (modules, why not) when a part
    cannot be imported: using it raises QmtUnavailable again then."""
    xt = resolve(modules)
    for part in parts:
        try:
            getattr(xt, part)
        except QmtUnavailable as exc:
            log.info("xtquant.%s not available yet: %s", part, exc)
            return xt, str(exc)
    return xt, ""


def is_client_down(exc: BaseException) -> bool:
    return CLIENT_DOWN_MARK in str(exc) or CONNECTION_LOST_MARK in str(exc)


@contextlib.contextmanager
def client_errors() -> Iterator[None]:
    """Turn xtdata's plain "cannot connect" Exception into QmtUnavailable; anything else passes."""
    try:
        yield
    except QmtUnavailable:
        raise
    except Exception as exc:
        if is_client_down(exc):
            raise QmtUnavailable(CLIENT_DOWN) from None
        raise


def check_userdata_path(path: str) -> Path:
    """The client's ``userdata_mini`` folder, or QmtUnavailable naming what to set instead."""
    text = str(path).strip()
    if not text:
        raise QmtUnavailable(f"qmt.qmt_userdata_path is empty: set it to {USERDATA_HINT}")
    folder = Path(text)
    if not folder.is_dir():
        raise QmtUnavailable(f"qmt.qmt_userdata_path {text!r} is not an existing folder: set it to {USERDATA_HINT}")
    if folder.name.lower() != "userdata_mini":
        inner = folder / "userdata_mini"
        if inner.is_dir():
            hint = f"use {inner}"
        else:
            # the full QMT keeps a 'userdata' folder that xttrader cannot connect through
            hint = "point it at the userdata_mini folder of a client started in 极简模式 (miniQMT)"
        raise QmtUnavailable(f"qmt.qmt_userdata_path {text!r} is not a userdata_mini folder: {hint}")
    return folder


_SESSIONS = itertools.count()


def derive_session_id(avoid: int = 0) -> int:
    """A session id unlikely to collide with another process connecting to the same client, and
    never ``avoid`` (the one that stopped working)."""
    while True:
        session = int(time.time()) % 1_000_000 * 1000 + (os.getpid() + next(_SESSIONS)) % 1000 + 1
        if session != avoid:
            return session


__all__ = [
    "CLIENT_DOWN",
    "CLIENT_DOWN_MARK",
    "CONNECTION_LOST_MARK",
    "NOT_INSTALLED",
    "RealXtQuant",
    "XtModules",
    "check_userdata_path",
    "client_errors",
    "derive_session_id",
    "import_part",
    "is_client_down",
    "preload",
    "resolve",
]
