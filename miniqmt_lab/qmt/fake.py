"""An in-process double of the miniQMT client as xtquant sees it (``shared/spec/xtquant.md``).

:class:`FakeQmt` stands in for the four xtquant parts the adapters use, with the real names:
``xttrader`` (``XtQuantTrader`` with the real methods, arguments, return codes and callback order,
one callback thread per trader that sync queries must not be called from), ``xttype`` (objects
with the real field names), ``xtconstant`` and ``xtdata``. It keeps one account (cash, T+1
positions, orders, trades) over a :class:`FakeMarket` of prices and bars, and it can be told to
misbehave the ways the real client does: drop the connection, hang a query, reject an order, fill
part of one, answer late, or not be running at all. The adapter tests run on it; demos can too.

    qmt = FakeQmt(account_id="8800001234", userdata_path=folder)
    qmt.market.set_instrument("600000.SH", "浦发银行", prev_close=10.0)
    qmt.market.set_price("600000.SH", 10.1)
    broker = QmtBroker(settings, modules=qmt)
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from miniqmt_lab import market as mkt
from miniqmt_lab.config import FeeSettings
from miniqmt_lab.qmt import fake_types
from miniqmt_lab.qmt.fake_data import CLIENT_DOWN_MESSAGE, Clock, FakeMarket, FakeXtData
from miniqmt_lab.qmt.fake_types import (
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
    XtQuantTraderCallback,
    XtTrade,
)

log = logging.getLogger(__name__)

REMARK_LIMIT = 24
"""Order remarks longer than this are cut by the fake, as some counters do."""


# -- the client's account and orders ----------------------------------------------------------------


@dataclass
class _Holding:
    volume: int = 0
    can_use: int = 0
    frozen: int = 0
    locked: int = 0  # bought on ``locked_on``: sellable from the next trading day (T+1)
    locked_on: dt.date | None = None
    avg_price: float = 0.0
    open_price: float = 0.0
    open_date: str = ""


@dataclass
class _Order:
    xt: XtOrder
    frozen_cash: float = 0.0
    fee_paid: float = 0.0
    hold: bool = False  # an injected partial fill: the rest waits for a cancel
    amount: float = 0.0


@dataclass
class _Delivery:
    name: str
    data: Any
    delay: float = 0.0
    done: threading.Event | None = None


class FakeXtQuantTrader:
    """``xttrader.XtQuantTrader(path, session, callback=None)`` against a :class:`FakeQmt`."""

    def __init__(self, qmt: FakeQmt, path: str, session: int, callback: XtQuantTraderCallback | None = None) -> None:
        self._qmt = qmt
        self.path = str(path)
        self.session = int(session)
        self._callback = callback
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count(1)
        self.connected = False
        self.subscribed: set[str] = set()

    # -- life cycle ----------------------------------------------------------------------------------
    def register_callback(self, callback: XtQuantTraderCallback) -> None:
        self._callback = callback

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._deliver, name=f"fake-xt-callback-{self.session}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.connected = False
        self.subscribed.clear()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            if thread is not threading.current_thread():
                thread.join(5.0)

    def connect(self) -> int:
        return self._qmt._connect(self)

    def subscribe(self, account: StockAccount) -> int:
        if not self.connected or account.account_id != self._qmt.account_id:
            return -1
        self.subscribed.add(account.account_id)
        return 0

    def unsubscribe(self, account: StockAccount) -> int:
        self.subscribed.discard(account.account_id)
        return 0

    # -- orders --------------------------------------------------------------------------------------
    def order_stock(self, account: StockAccount, stock_code: str, order_type: int, order_volume: int,
                    price_type: int, price: float, strategy_name: str = "", order_remark: str = "") -> int:
        self._refuse_in_callback("order_stock")
        if not self.connected:
            return -1
        order_id, _ = self._qmt._place(self, account, stock_code, order_type, order_volume, price_type, price,
                                       strategy_name, order_remark, seq=None)
        return order_id

    def order_stock_async(self, account: StockAccount, stock_code: str, order_type: int, order_volume: int,
                          price_type: int, price: float, strategy_name: str = "", order_remark: str = "") -> int:
        if not self.connected:
            return -1
        seq = next(self._seq)
        _, answered = self._qmt._place(self, account, stock_code, order_type, order_volume, price_type, price,
                                       strategy_name, order_remark, seq=seq)
        if answered is not None:  # ``response_first``: the answer is out before the seq is
            answered.wait(5.0)
        return seq

    def cancel_order_stock(self, account: StockAccount, order_id: int) -> int:
        self._refuse_in_callback("cancel_order_stock")
        if not self.connected:
            return -1
        return self._qmt._cancel(self, account, int(order_id), seq=None)

    def cancel_order_stock_async(self, account: StockAccount, order_id: int) -> int:
        if not self.connected:
            return -1
        seq = next(self._seq)
        self._qmt._cancel(self, account, int(order_id), seq=seq)
        return seq

    # -- queries -------------------------------------------------------------------------------------
    def query_stock_asset(self, account: StockAccount) -> XtAsset | None:
        return self._query("query_stock_asset", account, lambda: self._qmt._asset())

    def query_stock_positions(self, account: StockAccount) -> list[XtPosition] | None:
        return self._query("query_stock_positions", account, lambda: self._qmt._positions())

    def query_stock_position(self, account: StockAccount, stock_code: str) -> XtPosition | None:
        def one() -> XtPosition | None:
            return next((p for p in self._qmt._positions() if p.stock_code == stock_code), None)

        return self._query("query_stock_position", account, one)

    def query_stock_orders(self, account: StockAccount, cancelable_only: bool = False) -> list[XtOrder] | None:
        def orders() -> list[XtOrder]:
            rows = self._qmt._orders_snapshot()
            return [o for o in rows if o.order_status not in FINAL_STATUSES] if cancelable_only else rows

        return self._query("query_stock_orders", account, orders)

    def query_stock_order(self, account: StockAccount, order_id: int) -> XtOrder | None:
        def one() -> XtOrder | None:
            return next((o for o in self._qmt._orders_snapshot() if o.order_id == int(order_id)), None)

        return self._query("query_stock_order", account, one)

    def query_stock_trades(self, account: StockAccount) -> list[XtTrade] | None:
        return self._query("query_stock_trades", account, lambda: self._qmt._trades_snapshot())

    # -- internals -----------------------------------------------------------------------------------
    def _query(self, name: str, account: StockAccount, answer: Callable[[], Any]) -> Any:
        self._refuse_in_callback(name)
        self._qmt._maybe_hang(name)
        if not self.connected or account.account_id != self._qmt.account_id:
            return None
        return answer()

    def _refuse_in_callback(self, name: str) -> None:
        """A sync call made on the callback thread waits for a reply that thread itself must deliver."""
        if self._thread is not None and threading.current_thread() is self._thread:
            message = f"{name} called inside a callback: the real client deadlocks here"
            self._qmt.violations.append(message)
            raise RuntimeError(message)

    def _post(self, name: str, data: Any = None, *, delay: float = 0.0, done: threading.Event | None = None) -> None:
        self._queue.put(_Delivery(name, data, delay, done))

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            wait = item.delay + self._qmt.callback_delay
            if wait > 0:
                time.sleep(wait)
            try:
                handler = getattr(self._callback, item.name, None) if self._callback is not None else None
                if handler is None:
                    continue
                if item.name in ("on_disconnected", "on_connected"):
                    handler()
                else:
                    handler(item.data)
            except Exception as exc:  # the real client logs and goes on; a broken callback must not stop pushes
                log.exception("fake xttrader: callback %s raised", item.name)
                self._qmt.callback_errors.append((item.name, repr(exc)))
            finally:
                if item.done is not None:
                    item.done.set()


class _XtTraderModule:
    """The ``xttrader`` module surface: trader instances are bound to their :class:`FakeQmt`."""

    XtQuantTraderCallback: type[XtQuantTraderCallback] = XtQuantTraderCallback

    def __init__(self, qmt: FakeQmt) -> None:
        self._qmt = qmt

    def XtQuantTrader(  # the real class name, called like a class
        self, path: str, session: int, callback: fake_types.XtQuantTraderCallback | None = None
    ) -> FakeXtQuantTrader:
        trader = FakeXtQuantTrader(self._qmt, path, session, callback)
        self._qmt.traders.append(trader)
        return trader


class FakeQmt:
    """A miniQMT client with one logged-in account; its ``xttrader``/``xttype``/``xtconstant``/``xtdata``
    attributes are what ``QmtBroker(settings, modules=...)`` and ``QmtFeed`` import from xtquant.

    Orders go 48 → 50 → 55/56 (or 57 when refused). A limit order fills once marketable (buy limit at
    or above the price, sell at or below) at its own price (``fill_price="order"``) or at the market
    price (``"market"``); a latest-price order fills at once at the market price. Faults:
    :meth:`disconnect`, :meth:`hang`, :meth:`reject_next`, :meth:`partial_next`, :meth:`push`,
    ``running = False`` (no client), ``callback_delay``, ``response_delay`` and ``response_first``.
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
    ) -> None:
        if fill_price not in ("order", "market"):
            raise ValueError(f"fill_price must be 'order' or 'market', got {fill_price!r}")
        self.market = market or FakeMarket(clock)
        self.clock: Clock = clock or self.market.clock
        self.account_id = str(account_id)
        self.userdata_path = os.fspath(userdata_path) if userdata_path is not None else None
        self.fees = fees or FeeSettings()
        self.fill_price = fill_price
        self.report_commission = report_commission

        self.xtconstant = XtConstant
        self.xttype = SimpleNamespace(
            StockAccount=StockAccount, XtAsset=XtAsset, XtPosition=XtPosition, XtOrder=XtOrder, XtTrade=XtTrade,
            XtOrderError=XtOrderError, XtCancelError=XtCancelError, XtOrderResponse=XtOrderResponse,
            XtCancelOrderResponse=XtCancelOrderResponse, XtAccountStatus=XtAccountStatus,
        )
        self.xttrader = _XtTraderModule(self)
        self.xtdata = FakeXtData(self.market, lambda: self.running)

        self.running = True
        self.callback_delay = 0.0
        self.response_delay = 0.0
        self.response_first = False
        self.traders: list[FakeXtQuantTrader] = []
        self.order_requests: list[dict[str, Any]] = []
        self.callback_errors: list[tuple[str, str]] = []
        self.violations: list[str] = []

        self._lock = threading.RLock()
        self._cash = float(cash)
        self._holdings: dict[str, _Holding] = {}
        self._orders: dict[int, _Order] = {}
        self._trades: list[XtTrade] = []
        self._order_ids = itertools.count(100_001)
        self._trade_ids = itertools.count(1)
        self._refuse_connects = 0
        self._rejections: deque[str] = deque()
        self._partials: deque[int] = deque()
        self._hangs: dict[str, threading.Event] = {}
        self._hung: dict[str, int] = {}
        self.market.add_listener(self._on_price)

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
            trader._post("on_disconnected")

    def reject_next(self, message: str = "[COUNTER] 委托被拒绝") -> None:
        """The next order passes the argument checks, then the counter refuses it (status 57)."""
        with self._lock:
            self._rejections.append(message)

    def partial_next(self, volume: int) -> None:
        """The next order that fills takes only ``volume`` shares (55) and leaves the rest working."""
        with self._lock:
            self._partials.append(int(volume))

    def hang(self, method: str) -> None:
        """Calls of ``method`` (e.g. ``"query_stock_positions"``) block until :meth:`release`."""
        with self._lock:
            self._hangs.setdefault(method, threading.Event())

    def release(self) -> None:
        with self._lock:
            hangs, self._hangs = self._hangs, {}
        for gate in hangs.values():
            gate.set()

    def hung(self, method: str) -> int:
        """How many calls of ``method`` are blocked right now."""
        with self._lock:
            return self._hung.get(method, 0)

    def push(self, name: str, data: Any = None) -> None:
        """Deliver any callback (even a malformed object) to every subscribed trader, in order."""
        for trader in self._subscribers():
            trader._post(name, data)

    def set_position(self, code: str, volume: int, avg_price: float, *, available: int | None = None) -> None:
        """A holding carried over from earlier days (sellable unless ``available`` says otherwise)."""
        code = mkt.normalize_code(code)
        with self._lock:
            can_use = volume if available is None else available
            self._holdings[code] = _Holding(
                volume=volume, can_use=can_use, locked=volume - can_use,
                locked_on=self._today() if volume > can_use else None,
                avg_price=avg_price, open_price=avg_price, open_date=self._today().strftime("%Y%m%d"),
            )

    @property
    def cash(self) -> float:
        with self._lock:
            return self._cash

    # -- connection -----------------------------------------------------------------------------------
    def _connect(self, trader: FakeXtQuantTrader) -> int:
        with self._lock:
            if trader._thread is None or not self.running or not os.path.isdir(trader.path):
                return -1
            if self.userdata_path is not None and os.path.normcase(os.path.abspath(trader.path)) != os.path.normcase(
                os.path.abspath(self.userdata_path)
            ):
                return -1
            if self._refuse_connects > 0:
                self._refuse_connects -= 1
                return -1
            trader.connected = True
            return 0

    def _subscribers(self) -> list[FakeXtQuantTrader]:
        with self._lock:
            return [t for t in self.traders if t.connected and self.account_id in t.subscribed]

    def _maybe_hang(self, method: str) -> None:
        with self._lock:
            gate = self._hangs.get(method)
            if gate is None:
                return
            self._hung[method] = self._hung.get(method, 0) + 1
        gate.wait()
        with self._lock:
            self._hung[method] -= 1

    # -- orders ---------------------------------------------------------------------------------------
    def _place(self, trader: FakeXtQuantTrader, account: StockAccount, stock_code: str, order_type: int,
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
                trader._post("on_order_stock_async_response", XtOrderResponse(
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
            order = _Order(xt)
            self._orders[order_id] = order
            self._push_order(order)
            refusal = self._rejections.popleft() if self._rejections else self._counter_problem(order, is_market)
            if refusal:
                self._finish(order, C.ORDER_JUNK, refusal)
                self._send_error(trader, XtOrderError(
                    C.SECURITY_ACCOUNT, self.account_id, order_id, -1, refusal, strategy_name, remark, seq or 0,
                ))
                return order_id, answered
            self._freeze(order, is_market)
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

    def _counter_problem(self, order: _Order, is_market: bool) -> str:
        xt = order.xt
        last = self.market.price(xt.stock_code)
        if is_market and not (last > 0):
            return "[COUNTER] 无行情，市价委托被拒绝"
        if not is_market:
            up, down = self.market.limits(xt.stock_code)
            if (up > 0 and xt.price > up + 1e-9) or (down > 0 and xt.price < down - 1e-9):
                return f"[COUNTER] 委托价格{xt.price}超出涨跌停范围[{down}, {up}]"
        if xt.order_type == C.STOCK_BUY:
            if xt.order_volume % mkt.LOT:
                return f"[COUNTER] 买入数量{xt.order_volume}必须是{mkt.LOT}的整数倍"
            need = self._freeze_amount(order, is_market)
            if need > self._cash + 1e-6:
                return f"[COUNTER] 可用资金不足: 需要{need:.2f}, 可用{self._cash:.2f}"
            return ""
        holding = self._holding(xt.stock_code)
        if holding is None or holding.can_use < xt.order_volume:
            available = holding.can_use if holding is not None else 0
            return f"[COUNTER] 可用股份不足: 委托{xt.order_volume}, 可用{available}"
        return ""

    def _freeze_amount(self, order: _Order, is_market: bool) -> float:
        xt = order.xt
        price = self.market.price(xt.stock_code) if is_market else xt.price
        amount = price * xt.order_volume
        return amount + mkt.order_fees(amount, "BUY", self.fees).total

    def _freeze(self, order: _Order, is_market: bool) -> None:
        xt = order.xt
        if xt.order_type == C.STOCK_BUY:
            order.frozen_cash = self._freeze_amount(order, is_market)
            self._cash -= order.frozen_cash
        else:
            holding = self._holdings[xt.stock_code]
            holding.can_use -= xt.order_volume
            holding.frozen += xt.order_volume

    def _on_price(self, code: str) -> None:
        with self._lock:
            for order in list(self._orders.values()):
                if order.xt.stock_code == code:
                    self._try_fill(order)

    def _try_fill(self, order: _Order) -> None:
        xt = order.xt
        if order.hold or xt.order_status not in (C.ORDER_REPORTED, C.ORDER_PART_SUCC):
            return
        last = self.market.price(xt.stock_code)
        if not (last > 0):
            return
        is_market = xt.price_type == REPORTED_MARKET
        if not is_market and (xt.price < last if xt.order_type == C.STOCK_BUY else xt.price > last):
            return
        volume = xt.order_volume - xt.traded_volume
        if self._partials:
            volume = min(self._partials.popleft(), volume)
            order.hold = volume < xt.order_volume - xt.traded_volume
        price = last if is_market or self.fill_price == "market" else xt.price
        self._fill(order, volume, price)

    def _fill(self, order: _Order, volume: int, price: float) -> None:
        xt = order.xt
        side = "BUY" if xt.order_type == C.STOCK_BUY else "SELL"
        amount = round(price * volume, 2)
        before = xt.order_volume - xt.traded_volume
        order.amount += amount
        # fees of an order are charged on its whole traded amount (minimum commission once)
        due = mkt.order_fees(order.amount, side, self.fees).total
        fee = round(max(due - order.fee_paid, 0.0), 2)
        order.fee_paid += fee
        holding = self._holdings.setdefault(xt.stock_code, _Holding(open_date=self._today().strftime("%Y%m%d")))
        if side == "BUY":
            release = order.frozen_cash * volume / before
            order.frozen_cash -= release
            self._cash += release - amount - fee
            self._roll(holding)
            cost = holding.avg_price * holding.volume + amount + fee
            holding.open_price = (holding.open_price * holding.volume + amount) / (holding.volume + volume)
            holding.volume += volume
            holding.avg_price = cost / holding.volume
            holding.locked += volume
            holding.locked_on = self._today()
        else:
            self._cash += amount - fee
            holding.volume -= volume
            holding.frozen -= volume
        xt.traded_price = round((xt.traded_price * xt.traded_volume + price * volume) / (xt.traded_volume + volume), 4)
        xt.traded_volume += volume
        trade = XtTrade(
            account_type=C.SECURITY_ACCOUNT, account_id=self.account_id, stock_code=xt.stock_code,
            order_type=xt.order_type, traded_id=f"T{next(self._trade_ids):08d}",
            traded_time=int(self.clock().timestamp()), traded_price=price, traded_volume=volume,
            traded_amount=amount, order_id=xt.order_id, order_sysid=xt.order_sysid,
            strategy_name=xt.strategy_name, order_remark=xt.order_remark, direction=xt.direction,
            offset_flag=xt.offset_flag, commission=fee if self.report_commission else 0.0,
            instrument_name=xt.instrument_name,
        )
        self._trades.append(trade)
        for trader in self._subscribers():
            trader._post("on_stock_trade", replace(trade))
        if xt.traded_volume >= xt.order_volume:
            self._finish(order, C.ORDER_SUCCEEDED, "")
        else:
            xt.order_status = C.ORDER_PART_SUCC
            self._push_order(order)
        self._push_account(xt.stock_code)

    def _cancel(self, trader: FakeXtQuantTrader, account: StockAccount, order_id: int, *, seq: int | None) -> int:
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
                trader._post("on_cancel_order_stock_async_response", XtCancelOrderResponse(
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
            if xt.order_type == C.STOCK_BUY:
                self._cash += order.frozen_cash
                order.frozen_cash = 0.0
            else:
                holding = self._holdings[xt.stock_code]
                rest = xt.order_volume - xt.traded_volume
                holding.can_use += rest
                holding.frozen -= rest
            self._finish(order, C.ORDER_PART_CANCEL if partly else C.ORDER_CANCELED, "")
            self._push_account(xt.stock_code)
            return 0

    def _finish(self, order: _Order, status: int, message: str) -> None:
        order.xt.order_status = status
        order.xt.status_msg = message
        self._push_order(order)

    def _push_order(self, order: _Order) -> None:
        for trader in self._subscribers():
            trader._post("on_stock_order", replace(order.xt))

    def _push_account(self, code: str) -> None:
        position = next((p for p in self._positions() if p.stock_code == code), None)
        asset = self._asset()
        for trader in self._subscribers():
            if position is not None:
                trader._post("on_stock_position", position)
            trader._post("on_stock_asset", asset)

    def _send_error(self, trader: FakeXtQuantTrader, error: XtOrderError | XtCancelError,
                    name: str = "on_order_error") -> None:
        """Errors go to the trader that sent the request, whether or not it subscribed."""
        targets = {id(t): t for t in [trader, *self._subscribers()] if t.connected}
        for target in targets.values():
            target._post(name, replace(error))

    # -- account views --------------------------------------------------------------------------------
    def _today(self) -> dt.date:
        return mkt.to_shanghai(self.clock()).date()

    def _roll(self, holding: _Holding) -> None:
        if holding.locked and holding.locked_on is not None and holding.locked_on < self._today():
            holding.can_use += holding.locked
            holding.locked = 0
            holding.locked_on = None

    def _holding(self, code: str) -> _Holding | None:
        holding = self._holdings.get(code)
        if holding is not None:
            self._roll(holding)
        return holding

    def _positions(self) -> list[XtPosition]:
        with self._lock:
            rows = []
            for code in sorted(self._holdings):
                h = self._holding(code)
                assert h is not None
                last = self.market.price(code)
                last = last if last > 0 else h.avg_price
                value = round(h.volume * last, 2)
                profit = round(value - h.volume * h.avg_price, 2)
                rows.append(XtPosition(
                    account_type=C.SECURITY_ACCOUNT, account_id=self.account_id, stock_code=code, volume=h.volume,
                    can_use_volume=h.can_use, open_price=h.open_price, avg_price=h.avg_price, market_value=value,
                    frozen_volume=h.frozen, on_road_volume=0, yesterday_volume=h.volume - h.locked, last_price=last,
                    profit_rate=profit / (h.volume * h.avg_price) if h.volume and h.avg_price else 0.0,
                    direction=DIRECTION_BUY, instrument_name=self.market.name(code), float_profit=profit,
                    open_date=h.open_date, position_profit=profit,
                ))
            return rows

    def _asset(self) -> XtAsset:
        with self._lock:
            frozen = sum(o.frozen_cash for o in self._orders.values())
            value = round(sum(p.market_value for p in self._positions()), 2)
            return XtAsset(C.SECURITY_ACCOUNT, self.account_id, round(self._cash, 2), round(frozen, 2), value,
                           round(self._cash + frozen + value, 2), round(self._cash, 2))

    def _orders_snapshot(self) -> list[XtOrder]:
        with self._lock:
            return [replace(o.xt) for o in self._orders.values()]

    def _trades_snapshot(self) -> list[XtTrade]:
        with self._lock:
            return [replace(t) for t in self._trades]


__all__ = [
    "CLIENT_DOWN_MESSAGE",
    "FakeMarket",
    "FakeQmt",
    "FakeXtData",
    "FakeXtQuantTrader",
    "StockAccount",
    "XtAccountStatus",
    "XtAsset",
    "XtCancelError",
    "XtCancelOrderResponse",
    "XtConstant",
    "XtOrder",
    "XtOrderError",
    "XtOrderResponse",
    "XtPosition",
    "XtQuantTraderCallback",
    "XtTrade",
]
