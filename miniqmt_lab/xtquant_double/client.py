"""The double's miniQMT client: one logged-in account, its connections, faults, and the life of an
order with the callbacks it sends (``shared/spec/xtquant.md``).

:class:`FakeQmt` stands in for the four xtquant parts the adapters use, with the real names:
``xttrader`` (:mod:`miniqmt_lab.xtquant_double.xttrader`), ``xttype`` and ``xtconstant``
(:mod:`~miniqmt_lab.xtquant_double.xttype`) and ``xtdata`` (:mod:`~miniqmt_lab.xtquant_double.xtdata`).
It keeps one account (cash, T+1 positions, orders, trades: :mod:`~miniqmt_lab.xtquant_double.ledger`)
over a :class:`~miniqmt_lab.xtquant_double.market.FakeMarket`, and it can be told to misbehave the
ways the real client does: drop the connection, restart, hang a call, reject an order, fill part of
one, answer late, not be running at all, or make the first import of xtquant slow.

    qmt = FakeQmt(account_id="8800001234", userdata_path=folder)
    qmt.market.set_instrument("600000.SH", "浦发银行", prev_close=10.0)
    qmt.market.set_price("600000.SH", 10.1)
    broker = QmtBroker(settings, modules=qmt)
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from miniqmt_lab import market as mkt
from miniqmt_lab.config import FeeSettings
from miniqmt_lab.xtquant_double.ledger import ClientOrder, FakeLedger, Holding
from miniqmt_lab.xtquant_double.market import Clock, FakeMarket
from miniqmt_lab.xtquant_double.xtdata import FakeXtData
from miniqmt_lab.xtquant_double.xttrader import FakeXtQuantTrader, XtTraderModule
from miniqmt_lab.xtquant_double.xttype import (
    DIRECTION_BUY,
    DIRECTION_SELL,
    FINAL_STATUSES,
    MARKET_PRICE_TYPES,
    REPORTED_LIMIT,
    REPORTED_MARKET,
    C,
    StockAccount,
    XtAccountStatus,
    XtAsset,
    XtCancelError,
    XtCancelOrderResponse,
    XtConstant,
    XtOrder,
    XtOrderError,
    XtOrderResponse,
    XtPosition,
    XtTrade,
)

REMARK_LIMIT = 24
"""Order remarks longer than this are cut by the double, as some counters do."""


class FakeQmt:
    """A miniQMT client with one logged-in account; its ``xttrader``/``xttype``/``xtconstant``/``xtdata``
    attributes are what ``QmtBroker(settings, modules=...)`` and ``QmtFeed`` import from xtquant.

    Orders go 48 → 50 → 55/56 (or 57 when refused). A limit order fills once marketable (buy limit at
    or above the price, sell at or below) at its own price (``fill_price="order"``) or at the market
    price (``"market"``); a latest-price order fills at once at the market price. Faults:
    :meth:`disconnect`, :meth:`restart`, :meth:`hang`, :meth:`fail_next`, :meth:`reject_next`,
    :meth:`partial_next`, :meth:`push`, ``running = False`` (no client), ``callback_delay``,
    ``response_delay``, ``response_first`` and ``import_delay`` (the first use of any xtquant part
    waits that long on the using thread, as the real package's update check over HTTP does on its
    first import).
    """

    def __init__(
        self,
        *,
        account_id: str = "8800000001",
        cash: float = 1_000_000.0,
        market: FakeMarket | None = None,
        userdata_path: str | os.PathLike[str] | None = None,
        fees: FeeSettings | None = None,
        fill_price: str = "order",
        report_commission: bool = True,
        clock: Clock | None = None,
        import_delay: float = 0.0,
    ) -> None:
        if fill_price not in ("order", "market"):
            raise ValueError(f"fill_price must be 'order' or 'market', got {fill_price!r}")
        self.market = market or FakeMarket(clock)
        self.clock: Clock = clock or self.market.clock
        self.account_id = str(account_id)
        self.userdata_path = os.fspath(userdata_path) if userdata_path is not None else None
        self.import_delay = import_delay
        self.imported_on: list[str] = []  # the thread that paid for the first import

        self._xtconstant = XtConstant
        self._xttype = SimpleNamespace(
            StockAccount=StockAccount, XtAsset=XtAsset, XtPosition=XtPosition, XtOrder=XtOrder, XtTrade=XtTrade,
            XtOrderError=XtOrderError, XtCancelError=XtCancelError, XtOrderResponse=XtOrderResponse,
            XtCancelOrderResponse=XtCancelOrderResponse, XtAccountStatus=XtAccountStatus,
        )
        self._xttrader = XtTraderModule(self)
        self._xtdata = FakeXtData(self.market, lambda: self.running, lambda name, timeout: self.admit(name, timeout))
        self._import_lock = threading.Lock()

        self.running = True
        self.callback_delay = 0.0
        self.response_delay = 0.0
        self.response_first = False
        self.sessions: list[int] = []  # the session id of every trader built, in order
        self.order_requests: list[dict[str, Any]] = []
        self.callback_errors: list[tuple[str, str]] = []
        self.violations: list[str] = []

        self._lock = threading.RLock()
        self._traders: list[weakref.ref[FakeXtQuantTrader]] = []  # weak: a dropped trader is gone
        self._orders: dict[int, ClientOrder] = {}
        self.ledger = FakeLedger(
            account_id=self.account_id, cash=cash, market=self.market, clock=self.clock, fees=fees or FeeSettings(),
            fill_price=fill_price, report_commission=report_commission, orders=self._orders, lock=self._lock,
        )
        self._order_ids = itertools.count(100_001)
        self._refuse_connects = 0
        self._rejections: deque[str] = deque()
        self._hangs: dict[str, threading.Event] = {}
        self._forever: set[str] = set()
        self._failures: dict[str, int] = {}
        self._hung: dict[str, int] = {}
        self.market.add_listener(self._on_price)

    # -- the xtquant parts ----------------------------------------------------------------------------
    def _imported(self) -> None:
        """The first use of any part pays ``import_delay`` on its thread; others wait for it, as
        Python's import lock makes them."""
        with self._import_lock:
            if not self.imported_on:
                time.sleep(self.import_delay)
                self.imported_on.append(threading.current_thread().name)

    @property
    def xttrader(self) -> XtTraderModule:
        self._imported()
        return self._xttrader

    @property
    def xttype(self) -> SimpleNamespace:
        self._imported()
        return self._xttype

    @property
    def xtconstant(self) -> type[XtConstant]:
        self._imported()
        return self._xtconstant

    @property
    def xtdata(self) -> FakeXtData:
        self._imported()
        return self._xtdata

    @property
    def traders(self) -> list[FakeXtQuantTrader]:
        """The traders built and not dropped yet, in the order they were built."""
        with self._lock:
            live = [t for t in (ref() for ref in self._traders) if t is not None]
        return live

    # -- fault injection and set-up -------------------------------------------------------------------
    def disconnect(self, *, refuse_connects: int = 0) -> None:
        """Drop every trader's connection (``on_disconnected`` fires); the next ``refuse_connects`` connects fail."""
        with self._lock:
            self._refuse_connects = refuse_connects
            traders = [t for t in self.traders if t.connected]
            for trader in traders:
                trader.connected = False
                trader.subscribed.clear()
        for trader in traders:
            trader.post("on_disconnected")

    def restart(self) -> None:
        """The client process restarts: every connection drops, and the traders built before never
        connect again (``connect()`` -1 for ever); a new ``XtQuantTrader`` connects."""
        with self._lock:
            for trader in self.traders:
                trader.stale = True
        self.disconnect()

    def reject_next(self, message: str = "[COUNTER] 委托被拒绝") -> None:
        """The next order passes the argument checks, then the counter refuses it (status 57)."""
        with self._lock:
            self._rejections.append(message)

    def partial_next(self, volume: int) -> None:
        """The next order that fills takes only ``volume`` shares (55) and leaves the rest working."""
        with self._lock:
            self.ledger.partials.append(int(volume))

    def hang(self, method: str, *, forever: bool = False) -> None:
        """Calls of ``method`` (a trader query, ``"connect"``, ``"subscribe"`` or an xtdata function)
        block until :meth:`release`, or until the trader's ``set_timeout`` runs out; ``forever``:
        whatever ``set_timeout`` says (a native call stuck where its timeout does not reach)."""
        with self._lock:
            self._hangs.setdefault(method, threading.Event())
            if forever:
                self._forever.add(method)

    def fail_next(self, method: str, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` fail as the real client's do: a query returns None,
        ``connect`` and ``subscribe`` -1."""
        with self._lock:
            self._failures[method] = self._failures.get(method, 0) + times

    def release(self) -> None:
        with self._lock:
            hangs, self._hangs = self._hangs, {}
            self._forever.clear()
        for gate in hangs.values():
            gate.set()

    def hung(self, method: str) -> int:
        """How many calls of ``method`` are blocked right now."""
        with self._lock:
            return self._hung.get(method, 0)

    def push(self, name: str, data: Any = None) -> None:
        """Deliver any callback (even a malformed object) to every subscribed trader, in order."""
        for trader in self._subscribers():
            trader.post(name, data)

    def set_position(self, code: str, volume: int, avg_price: float, *, available: int | None = None) -> None:
        """A holding carried over from earlier days (sellable unless ``available`` says otherwise)."""
        code = mkt.normalize_code(code)
        with self._lock:
            can_use = volume if available is None else available
            self.ledger.holdings[code] = Holding(
                volume=volume, can_use=can_use, locked=volume - can_use,
                locked_on=self.ledger.today() if volume > can_use else None,
                avg_price=avg_price, open_price=avg_price, open_date=self.ledger.today().strftime("%Y%m%d"),
            )

    @property
    def cash(self) -> float:
        with self._lock:
            return self.ledger.cash

    # -- what traders ask of their client -------------------------------------------------------------
    def register(self, trader: FakeXtQuantTrader) -> None:
        with self._lock:
            self._traders.append(weakref.ref(trader))
            self.sessions.append(trader.session)

    def connect_trader(self, trader: FakeXtQuantTrader) -> int:
        with self._lock:
            if not trader.started or trader.stale or not self.running or not os.path.isdir(trader.path):
                return -1
            if self.userdata_path is not None and os.path.normcase(os.path.abspath(trader.path)) != os.path.normcase(
                os.path.abspath(self.userdata_path)
            ):
                return -1
            if any(t is not trader and t.connected and t.session == trader.session for t in self.traders):
                return -1  # one connection per session id
            if self._refuse_connects > 0:
                self._refuse_connects -= 1
                return -1
            trader.connected = True
            return 0

    def _subscribers(self) -> list[FakeXtQuantTrader]:
        with self._lock:
            return [t for t in self.traders if t.connected and self.account_id in t.subscribed]

    def admit(self, method: str, timeout: float | None) -> bool:
        """Whether a call of ``method`` goes through: it blocks while ``method`` is hung, and False
        means it fails (the trader's ``timeout`` ran out first, or :meth:`fail_next` said so)."""
        with self._lock:
            if self._failures.get(method, 0) > 0:
                self._failures[method] -= 1
                return False
            gate = self._hangs.get(method)
            if gate is None:
                return True
            if method in self._forever:
                timeout = None
            self._hung[method] = self._hung.get(method, 0) + 1
        try:
            return gate.wait(timeout)
        finally:
            with self._lock:
                self._hung[method] -= 1

    # -- orders ---------------------------------------------------------------------------------------
    def place(self, trader: FakeXtQuantTrader, account: StockAccount, stock_code: str, order_type: int,
               order_volume: int, price_type: int, price: float, strategy_name: str, order_remark: str,
               *, seq: int | None) -> tuple[int, threading.Event | None]:
        remark = str(order_remark)[:REMARK_LIMIT]
        with self._lock:
            self.order_requests.append({
                "stock_code": stock_code, "order_type": order_type, "order_volume": order_volume,
                "price_type": price_type, "price": price, "strategy_name": strategy_name, "order_remark": remark,
            })
            problem = self._argument_problem(account, stock_code, order_type, order_volume, price_type, price)
            order_id = -1 if problem else next(self._order_ids)
            answered: threading.Event | None = None
            if seq is not None:
                answered = threading.Event() if self.response_first else None
                trader.post("on_order_stock_async_response", XtOrderResponse(
                    C.SECURITY_ACCOUNT, self.account_id, order_id, strategy_name, remark, problem, seq,
                ), delay=self.response_delay, done=answered)
            if problem:
                self._send_error(trader, XtOrderError(
                    C.SECURITY_ACCOUNT, self.account_id, -1, -61, problem, strategy_name, remark, seq or 0,
                ))
                return -1, answered
            code = mkt.normalize_code(stock_code)
            is_market = price_type in MARKET_PRICE_TYPES
            xt = XtOrder(
                account_type=C.SECURITY_ACCOUNT, account_id=self.account_id, stock_code=code, order_id=order_id,
                order_sysid=str(order_id * 7 % 1_000_000), order_time=int(self.clock().timestamp()),
                order_type=order_type, order_volume=int(order_volume),
                price_type=REPORTED_MARKET if is_market else REPORTED_LIMIT,
                price=0.0 if is_market else float(price), traded_volume=0, traded_price=0.0,
                order_status=C.ORDER_UNREPORTED, status_msg="", strategy_name=strategy_name, order_remark=remark,
                direction=DIRECTION_BUY if order_type == C.STOCK_BUY else DIRECTION_SELL, offset_flag=order_type,
                instrument_name=self.market.name(code),
            )
            order = ClientOrder(xt)
            self._orders[order_id] = order
            self._push_order(order)
            refusal = self._rejections.popleft() if self._rejections else self.ledger.counter_problem(order, is_market)
            if refusal:
                self._finish(order, C.ORDER_JUNK, refusal)
                self._send_error(trader, XtOrderError(
                    C.SECURITY_ACCOUNT, self.account_id, order_id, -1, refusal, strategy_name, remark, seq or 0,
                ))
                return order_id, answered
            self.ledger.freeze(order, is_market)
            xt.order_status = C.ORDER_REPORTED
            self._push_order(order)
            self._try_fill(order)
            return order_id, answered

    def _argument_problem(self, account: StockAccount, stock_code: str, order_type: int, volume: int,
                          price_type: int, price: float) -> str:
        if account.account_id != self.account_id:
            return f"账号{account.account_id}未登录"
        if order_type not in (C.STOCK_BUY, C.STOCK_SELL):
            return f"不支持的委托类型{order_type}"
        if price_type != C.FIX_PRICE and price_type not in MARKET_PRICE_TYPES:
            return f"不支持的报价类型{price_type}"
        if not isinstance(volume, int) or volume <= 0:
            return f"委托数量{volume}无效"
        if price_type == C.FIX_PRICE and not (isinstance(price, int | float) and math.isfinite(price) and price > 0):
            return f"委托价格{price}无效"
        try:
            mkt.normalize_code(stock_code)
        except ValueError:
            return f"证券代码{stock_code}无效"
        return ""

    def _on_price(self, code: str) -> None:
        with self._lock:
            for order in list(self._orders.values()):
                if order.xt.stock_code == code:
                    self._try_fill(order)

    def _try_fill(self, order: ClientOrder) -> None:
        trade = self.ledger.try_fill(order)
        if trade is None:
            return
        xt = order.xt
        for trader in self._subscribers():
            trader.post("on_stock_trade", replace(trade))
        if xt.traded_volume >= xt.order_volume:
            self._finish(order, C.ORDER_SUCCEEDED, "")
        else:
            xt.order_status = C.ORDER_PART_SUCC
            self._push_order(order)
        self._push_account(xt.stock_code)

    def cancel(self, trader: FakeXtQuantTrader, account: StockAccount, order_id: int, *, seq: int | None) -> int:
        with self._lock:
            order = self._orders.get(order_id)
            problem = ""
            if account.account_id != self.account_id:
                problem = f"账号{account.account_id}未登录"
            elif order is None:
                problem = f"委托{order_id}不存在"
            elif order.xt.order_status in FINAL_STATUSES:
                problem = f"委托{order_id}已是最终状态({order.xt.order_status}), 不能撤单"
            sysid = order.xt.order_sysid if order is not None else ""
            if seq is not None:
                trader.post("on_cancel_order_stock_async_response", XtCancelOrderResponse(
                    C.SECURITY_ACCOUNT, self.account_id, -1 if problem else 0, order_id, sysid, seq, problem,
                ))
            if problem:
                self._send_error(trader, XtCancelError(
                    C.SECURITY_ACCOUNT, self.account_id, order_id, 0, sysid, -1, problem,
                ), name="on_cancel_error")
                return -1
            assert order is not None
            xt = order.xt
            partly = xt.traded_volume > 0
            xt.order_status = C.ORDER_PARTSUCC_CANCEL if partly else C.ORDER_REPORTED_CANCEL
            self._push_order(order)
            self.ledger.release(order)
            self._finish(order, C.ORDER_PART_CANCEL if partly else C.ORDER_CANCELED, "")
            self._push_account(xt.stock_code)
            return 0

    def _finish(self, order: ClientOrder, status: int, message: str) -> None:
        order.xt.order_status = status
        order.xt.status_msg = message
        self._push_order(order)

    def _push_order(self, order: ClientOrder) -> None:
        for trader in self._subscribers():
            trader.post("on_stock_order", replace(order.xt))

    def _push_account(self, code: str) -> None:
        position = next((p for p in self.ledger.positions() if p.stock_code == code), None)
        asset = self.ledger.asset()
        for trader in self._subscribers():
            if position is not None:
                trader.post("on_stock_position", position)
            trader.post("on_stock_asset", asset)

    def _send_error(self, trader: FakeXtQuantTrader, error: XtOrderError | XtCancelError,
                    name: str = "on_order_error") -> None:
        """Errors go to the trader that sent the request, whether or not it subscribed."""
        targets = {id(t): t for t in [trader, *self._subscribers()] if t.connected}
        for target in targets.values():
            target.post(name, replace(error))


__all__ = ["REMARK_LIMIT", "FakeQmt"]
