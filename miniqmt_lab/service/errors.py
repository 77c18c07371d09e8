"""Errors across the wire: each typed error of the engine has a tag and an HTTP status, and a tag
read back by :class:`~miniqmt_lab.service.client.EngineClient` becomes the same typed error again.

Every refusal is ``{"error": tag, "message": text}`` with a 4xx status: an order the engine refuses is
409 with the refusal's ``reason`` as the tag; a malformed body 422 naming the field; a missing or
wrong token 401; a live call without ``"confirm": true`` 428.
"""

from __future__ import annotations

import re

from miniqmt_lab import errors
from miniqmt_lab.engine.engine import ModeMismatch
from miniqmt_lab.engine.lock import DatabaseInUse
from miniqmt_lab.engine.risk import OrderTooLarge, RateLimited, TradingHalted


class ServiceError(errors.MiniQmtError):
    """A refusal from a served engine whose tag has no typed error here; ``status`` and ``tag`` say which."""

    def __init__(self, message: str, *, status: int = 400, tag: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.tag = tag


class InvalidRequest(ServiceError, ValueError):
    """A call the server found malformed (422): a bad body or value, the field named in the message."""


class Unauthorized(errors.MiniQmtError):
    """The request carried no token or a wrong one (``Authorization: Bearer <token>``)."""


class ConfirmationRequired(errors.MiniQmtError):
    """A call that can trade on a LIVE account came without ``"confirm": true``."""


class NothingToSave(errors.MiniQmtError, ValueError):
    """A rules change that names no rule."""


def tag_of(cls: type[BaseException]) -> str:
    """``EngineNotRunning`` -> ``engine_not_running``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


_ORDER_REJECTIONS: tuple[type[errors.OrderRejected], ...] = (
    errors.OrderRejected, errors.InvalidVolume, errors.InvalidPrice, errors.PriceLimitBreached,
    errors.OutsideTradingTime, errors.InsufficientCash, errors.InsufficientPosition, TradingHalted, RateLimited,
    OrderTooLarge,
)
_STATUS: dict[type[errors.MiniQmtError], int] = {
    Unauthorized: 401,
    ConfirmationRequired: 428,
    errors.ConfigError: 422,
    errors.InvalidStockCode: 422,
    NothingToSave: 422,
    errors.EngineNotRunning: 409,
    DatabaseInUse: 409,
    ModeMismatch: 409,
    errors.BrokerTimeout: 409,
    errors.QmtUnavailable: 409,
}
_BY_TAG: dict[str, type[errors.MiniQmtError]] = {
    **{cls.reason: cls for cls in _ORDER_REJECTIONS},
    **{tag_of(cls): cls for cls in _STATUS},
}


def describe(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and tag of an error raised while serving a call."""
    if isinstance(exc, errors.OrderRejected):
        return 409, exc.reason
    for cls, status in _STATUS.items():
        if isinstance(exc, cls):
            return status, tag_of(cls)
    if isinstance(exc, errors.MiniQmtError):
        return 409, tag_of(type(exc))
    return 422, "invalid_value"  # a ValueError from a call's own checks


def rebuild(status: int, tag: str, message: str) -> errors.MiniQmtError:
    """The typed error a refusal stands for, as the client raises it."""
    cls = _BY_TAG.get(tag)
    if cls is None:
        kind = InvalidRequest if status == 422 else ServiceError
        return kind(message, status=status, tag=tag)
    return cls(message)


__all__ = ["ConfirmationRequired", "InvalidRequest", "NothingToSave", "ServiceError", "Unauthorized", "describe",
           "rebuild", "tag_of"]
