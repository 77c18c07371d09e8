"""Dated fee schedules: commission both ways, stamp duty on sells, transfer fee both ways.

Stamp duty and the transfer fee are dated rates and a trade pays the rate of its own trading day
(rules.md): :func:`fee_params` gives the kernel's :class:`~miniqmt_lab.rules.nb.FeeParams` of a day,
:func:`fee_table` the rates of many days at once (the backtest switches them at each day roll).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np

from miniqmt_lab.rules.nb import FeeParams, fee_parts_nb

COMMISSION_RATE = 0.00025
MIN_COMMISSION = 5.0
STAMP_DUTY_SCHEDULE: tuple[tuple[str, float], ...] = (("1990-12-19", 0.001), ("2023-08-28", 0.0005))
"""Stamp duty on sells, ``(from_date, rate)``: 0.1% until 2023-08-27, 0.05% from 2023-08-28."""
TRANSFER_FEE_SCHEDULE: tuple[tuple[str, float], ...] = (("1990-12-19", 0.00002), ("2022-04-29", 0.00001))
"""Transfer fee both ways, ``(from_date, rate)``: 0.002% until 2022-04-28, 0.001% from 2022-04-29."""


class FeeSettingsLike(Protocol):
    @property
    def commission_rate(self) -> float: ...

    @property
    def min_commission(self) -> float: ...

    @property
    def stamp_duty_schedule(self) -> tuple[tuple[str, float], ...]: ...

    @property
    def transfer_fee_schedule(self) -> tuple[tuple[str, float], ...]: ...


class _Defaults:
    commission_rate = COMMISSION_RATE
    min_commission = MIN_COMMISSION
    stamp_duty_schedule = STAMP_DUTY_SCHEDULE
    transfer_fee_schedule = TRANSFER_FEE_SCHEDULE


def rate_on(schedule: Sequence[tuple[str, float]], day: dt.date | None) -> float:
    """The rate of a dated ``(from_date, rate)`` schedule on ``day`` (None: the latest rate)."""
    if day is None:
        return float(schedule[-1][1])
    rate = float(schedule[0][1])
    for start, value in schedule:
        if dt.date.fromisoformat(start) <= day:
            rate = float(value)
    return rate


def rates_on(schedule: Sequence[tuple[str, float]], days: np.ndarray) -> np.ndarray:
    """:func:`rate_on` of every day of a ``datetime64`` array, vectorised."""
    starts = np.array([np.datetime64(start, "D") for start, _ in schedule])
    values = np.array([float(rate) for _, rate in schedule])
    at = np.searchsorted(starts, np.asarray(days).astype("datetime64[D]"), side="right") - 1
    return values[np.maximum(at, 0)]


def fee_params(fees: FeeSettingsLike | None = None, day: dt.date | None = None) -> FeeParams:
    """The kernel's fee parameters on trading day ``day`` (None: today's rates); ``fees`` is a
    ``FeeSettings`` (None: the A-share defaults)."""
    source = fees if fees is not None else _Defaults()
    return FeeParams(
        float(source.commission_rate),
        float(source.min_commission),
        rate_on(source.stamp_duty_schedule, day),
        rate_on(source.transfer_fee_schedule, day),
    )


class FeeTable(NamedTuple):
    """Fee rates of each trading day of a backtest (row ``d`` is day ``d``): plain arrays for the loop."""

    commission_rate: float
    min_commission: float
    stamp_duty_rate: np.ndarray  # (n_days,)
    transfer_fee_rate: np.ndarray  # (n_days,)


def fee_table(fees: FeeSettingsLike | None, days: np.ndarray) -> FeeTable:
    """The rates of every day in ``days`` (datetime64, one per trading day of the backtest)."""
    source = fees if fees is not None else _Defaults()
    return FeeTable(
        float(source.commission_rate),
        float(source.min_commission),
        rates_on(source.stamp_duty_schedule, days),
        rates_on(source.transfer_fee_schedule, days),
    )


class Fees(NamedTuple):
    commission: float
    stamp_duty: float
    transfer_fee: float

    @property
    def total(self) -> float:
        return round(self.commission + self.stamp_duty + self.transfer_fee, 2)


def order_fees(
    amount: float, side: str, fee_settings: FeeSettingsLike | None = None, day: dt.date | None = None
) -> Fees:
    """Fees of one order of ``amount`` yuan, side 'BUY' or 'SELL', on trading day ``day`` (None: today's
    rates), by the kernel's arithmetic; ``fee_settings`` is a ``FeeSettings`` (None: A-share defaults)."""
    return Fees(*fee_parts_nb(float(amount), side.upper() == "SELL", fee_params(fee_settings, day)))
