"""The JSON forms of what an engine shows, written by the server and read back by :class:`EngineClient`.

JSON has no NaN: a non-finite float travels as ``null`` and a ``float`` field reads it back as NaN.
Times travel as ISO text (aware times keep their offset and come back as Asia/Shanghai); record times
are the database's naive Asia/Shanghai text. Only the standard library and the neutral layer are
used, so the client stays light.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import types
import typing
from collections.abc import Mapping
from enum import Enum
from functools import cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

T = TypeVar("T")
SHANGHAI = ZoneInfo("Asia/Shanghai")  # every aware time of the product is Shanghai time


_FIELDS: dict[type, tuple[str, ...]] = {}
_PLAIN = frozenset({str, int, bool, type(None)})


def to_json(value: Any) -> Any:
    """Plain JSON data of a dataclass, a mapping, a sequence or a scalar (called per status reply, so the
    common cases come first and each dataclass's field names are looked up once)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    names = _FIELDS.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: to_json(getattr(value, name)) for name in names}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return to_json(item())
    return str(value)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_json(cls: type[T], data: Mapping[str, Any]) -> T:
    """A dataclass of the neutral layer rebuilt from :func:`to_json`'s output; unknown keys are ignored."""
    kind: Any = cls
    hints = _hints(kind)
    values = {f.name: _read(hints[f.name], data[f.name]) for f in dataclasses.fields(kind) if f.name in data}
    return cls(**values)


def _read(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        return _read(options[0], value)
    if hint is float:
        return math.nan if value is None else float(value)
    if hint is dt.datetime:
        moment = dt.datetime.fromisoformat(value)
        return moment.astimezone(SHANGHAI) if moment.tzinfo is not None else moment
    if hint is dt.date:
        return dt.date.fromisoformat(value)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_read(item, v) for v in value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_json(hint, value)
    return value


def record_rows(columns: tuple[str, ...], rows: list[tuple]) -> list[dict[str, Any]]:
    """Database rows as JSON objects (NULL and NaN both as ``null``)."""
    return [{c: to_json(v) for c, v in zip(columns, row, strict=True)} for row in rows]


__all__ = ["from_json", "record_rows", "to_json"]
