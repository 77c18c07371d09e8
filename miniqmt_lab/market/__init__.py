"""The A-share market model, by role: codes and boards, order sizes, fees, calendar and sessions, price
bands, corporate actions and the base price.

Fees, limit rounding, order sizing and the corporate-action transition are computed by the rule kernel
(``miniqmt_lab.rules.nb``); this package is the plain-Python face of those facts plus the calendar. It
sits between the kernel and the settings: ``config`` validates stock codes and takes its fee defaults
from here, never the other way round. Every name is importable from ``miniqmt_lab.market``.
"""

from __future__ import annotations

from miniqmt_lab.market.actions import (
    InvalidMarketData,
    action_message,
    check_actions,
    check_instruments,
    ex_rights_price,
)
from miniqmt_lab.market.bands import (
    LIMIT_WIDTH,
    NEW_LISTING_FREE_DAYS,
    ST_LIMIT_WIDTH,
    has_limits,
    last_unlimited_day,
    limit_prices,
    limit_width,
)
from miniqmt_lab.market.calendar import (
    CALENDAR,
    SESSIONS,
    SHANGHAI,
    TradingCalendar,
    in_session,
    is_new_trading_day,
    is_trading_time,
    seconds_to_next_session,
    to_shanghai,
    trading_day_number,
)
from miniqmt_lab.market.codes import Board, board_of, is_st, is_stock_code, normalize_code
from miniqmt_lab.market.fees import (
    COMMISSION_RATE,
    MIN_COMMISSION,
    STAMP_DUTY_SCHEDULE,
    TRANSFER_FEE_SCHEDULE,
    Fees,
    FeeSettingsLike,
    FeeTable,
    fee_params,
    fee_table,
    order_fees,
    rate_on,
    rates_on,
)
from miniqmt_lab.market.sizes import (
    LOT_RULES,
    check_buy_volume,
    check_price,
    check_sell_volume,
    lot_rule,
    min_buy_volume,
)
from miniqmt_lab.schema import LOT

__all__ = [
    "CALENDAR",
    "COMMISSION_RATE",
    "LIMIT_WIDTH",
    "LOT",
    "LOT_RULES",
    "MIN_COMMISSION",
    "NEW_LISTING_FREE_DAYS",
    "SESSIONS",
    "SHANGHAI",
    "STAMP_DUTY_SCHEDULE",
    "ST_LIMIT_WIDTH",
    "TRANSFER_FEE_SCHEDULE",
    "Board",
    "FeeSettingsLike",
    "FeeTable",
    "Fees",
    "InvalidMarketData",
    "TradingCalendar",
    "action_message",
    "board_of",
    "check_actions",
    "check_buy_volume",
    "check_instruments",
    "check_price",
    "check_sell_volume",
    "ex_rights_price",
    "fee_params",
    "fee_table",
    "has_limits",
    "in_session",
    "is_new_trading_day",
    "is_st",
    "is_stock_code",
    "is_trading_time",
    "last_unlimited_day",
    "limit_prices",
    "limit_width",
    "lot_rule",
    "min_buy_volume",
    "normalize_code",
    "order_fees",
    "rate_on",
    "rates_on",
    "seconds_to_next_session",
    "to_shanghai",
    "trading_day_number",
]
