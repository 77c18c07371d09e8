"""The ``xtquant.xtconstant`` values and ``xtquant.xttype`` objects, with the real names, for the
xtquant double.

Field names and numbers are those of ``shared/spec/xtquant.md``; tests compare them with the real
package where it can be imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class XtConstant:
    """The values of ``xtquant.xtconstant`` the adapters rely on."""

    STOCK_BUY = 23
    STOCK_SELL = 24

    LATEST_PRICE = 5
    FIX_PRICE = 11
    MARKET_SH_CONVERT_5_CANCEL = 42
    MARKET_SH_CONVERT_5_LIMIT = 43
    MARKET_PEER_PRICE_FIRST = 44
    MARKET_MINE_PRICE_FIRST = 45
    MARKET_SZ_INSTBUSI_RESTCANCEL = 46
    MARKET_SZ_CONVERT_5_CANCEL = 47
    MARKET_SZ_FULL_OR_CANCEL = 48

    ORDER_UNREPORTED = 48
    ORDER_WAIT_REPORTING = 49
    ORDER_REPORTED = 50
    ORDER_REPORTED_CANCEL = 51
    ORDER_PARTSUCC_CANCEL = 52
    ORDER_PART_CANCEL = 53
    ORDER_CANCELED = 54
    ORDER_PART_SUCC = 55
    ORDER_SUCCEEDED = 56
    ORDER_JUNK = 57
    ORDER_UNKNOWN = 255

    SECURITY_ACCOUNT = 2
    CREDIT_ACCOUNT = 3


C = XtConstant
MARKET_PRICE_TYPES = frozenset(
    {C.LATEST_PRICE, *range(C.MARKET_SH_CONVERT_5_CANCEL, C.MARKET_SZ_FULL_OR_CANCEL + 1)}
)
FINAL_STATUSES = frozenset({C.ORDER_PART_CANCEL, C.ORDER_CANCELED, C.ORDER_SUCCEEDED, C.ORDER_JUNK})
REPORTED_LIMIT, REPORTED_MARKET = 50, 88  # price_type as returned orders report it
DIRECTION_BUY, DIRECTION_SELL = 48, 49


# -- xttype -----------------------------------------------------------------------------------------


class StockAccount:
    """``xttype.StockAccount``: the account type given as text is stored as its xtconstant number."""

    _TYPES: ClassVar[dict[str, int]] = {"STOCK": C.SECURITY_ACCOUNT, "CREDIT": C.CREDIT_ACCOUNT}

    def __init__(self, account_id: str, account_type: str = "STOCK") -> None:
        if account_type.upper() not in self._TYPES:
            raise ValueError(f"unknown account type {account_type!r}")
        self.account_id = str(account_id)
        self.account_type = self._TYPES[account_type.upper()]

    def __repr__(self) -> str:
        return f"StockAccount({self.account_id!r}, {self.account_type})"


@dataclass
class XtAsset:
    account_type: int
    account_id: str
    cash: float
    frozen_cash: float
    market_value: float
    total_asset: float
    fetch_balance: float = 0.0


@dataclass
class XtPosition:
    account_type: int
    account_id: str
    stock_code: str
    volume: int
    can_use_volume: int
    open_price: float
    avg_price: float
    market_value: float
    frozen_volume: int
    on_road_volume: int
    yesterday_volume: int
    last_price: float
    profit_rate: float
    direction: int
    instrument_name: str
    float_profit: float
    open_date: str
    position_profit: float


@dataclass
class XtOrder:
    account_type: int
    account_id: str
    stock_code: str
    order_id: int
    order_sysid: str
    order_time: int
    order_type: int
    order_volume: int
    price_type: int
    price: float
    traded_volume: int
    traded_price: float
    order_status: int
    status_msg: str
    strategy_name: str
    order_remark: str
    direction: int
    offset_flag: int
    instrument_name: str


@dataclass
class XtTrade:
    account_type: int
    account_id: str
    stock_code: str
    order_type: int
    traded_id: str
    traded_time: int
    traded_price: float
    traded_volume: int
    traded_amount: float
    order_id: int
    order_sysid: str
    strategy_name: str
    order_remark: str
    direction: int
    offset_flag: int
    commission: float
    instrument_name: str


@dataclass
class XtOrderError:
    account_type: int
    account_id: str
    order_id: int
    error_id: int
    error_msg: str
    strategy_name: str
    order_remark: str
    seq: int = 0


@dataclass
class XtCancelError:
    account_type: int
    account_id: str
    order_id: int
    market: int
    order_sysid: str
    error_id: int
    error_msg: str


@dataclass
class XtOrderResponse:
    account_type: int
    account_id: str
    order_id: int
    strategy_name: str
    order_remark: str
    error_msg: str
    seq: int


@dataclass
class XtCancelOrderResponse:
    account_type: int
    account_id: str
    cancel_result: int
    order_id: int
    order_sysid: str
    seq: int
    error_msg: str = ""


@dataclass
class XtAccountStatus:
    account_type: int
    account_id: str
    status: int


class XtQuantTraderCallback:
    """``xttrader.XtQuantTraderCallback``: every push does nothing unless a subclass says otherwise."""

    def on_connected(self) -> None:
        """Declared by xtquant but never called."""

    def on_disconnected(self) -> None: ...

    def on_account_status(self, status: XtAccountStatus) -> None: ...

    def on_stock_asset(self, asset: XtAsset) -> None: ...

    def on_stock_order(self, order: XtOrder) -> None: ...

    def on_stock_trade(self, trade: XtTrade) -> None: ...

    def on_stock_position(self, position: XtPosition) -> None: ...

    def on_order_error(self, order_error: XtOrderError) -> None: ...

    def on_cancel_error(self, cancel_error: XtCancelError) -> None: ...

    def on_order_stock_async_response(self, response: XtOrderResponse) -> None: ...

    def on_cancel_order_stock_async_response(self, response: XtCancelOrderResponse) -> None: ...
