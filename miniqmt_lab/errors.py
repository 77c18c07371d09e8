"""Typed errors: every bad input the product can meet has its own class and a one-line message."""

from __future__ import annotations


class MiniQmtError(Exception):
    """Base of every error raised on purpose by miniqmt_lab."""


class ConfigError(MiniQmtError, ValueError):
    """A config file or environment variable is broken; the message names the key."""


class InvalidStockCode(MiniQmtError, ValueError):
    """A stock code that is not a valid A-share code."""


class OrderRejected(MiniQmtError):
    """An order refused before it reached a broker. `reason` is a short machine-readable tag."""

    reason = "rejected"


class InvalidVolume(OrderRejected, ValueError):
    reason = "invalid_volume"


class InvalidPrice(OrderRejected, ValueError):
    reason = "invalid_price"


class PriceLimitBreached(OrderRejected):
    reason = "price_limit"


class OutsideTradingTime(OrderRejected):
    reason = "outside_trading_time"


class InsufficientCash(OrderRejected):
    reason = "insufficient_cash"


class InsufficientPosition(OrderRejected):
    reason = "insufficient_available"


class EngineNotRunning(MiniQmtError):
    """A command reached an engine that is stopped or stopping."""


class EngineRunning(MiniQmtError):
    """A change that needs a stopped engine reached a running one."""


class BrokerTimeout(MiniQmtError, TimeoutError):
    """A broker or feed call did not return within the call timeout."""


class QmtUnavailable(MiniQmtError, RuntimeError):
    """xtquant or the QMT client cannot be used; the message says what to do."""


class SweepError(MiniQmtError, RuntimeError):
    """A parameter sweep could not run where it was sent (a worker failed, no cluster answered)."""
