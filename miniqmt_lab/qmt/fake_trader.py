"""The trader surface of the fake client: ``xttrader.XtQuantTrader`` and its callback thread.

:class:`FakeXtQuantTrader` has the real methods, arguments and return codes; what they do to the
account is :class:`~miniqmt_lab.qmt.fake.FakeQmt`'s. Each trader delivers its callbacks on its own
thread, in order, and refuses the sync calls made from that thread (the real client deadlocks
there). :class:`XtTraderModule` is the ``xttrader`` module surface that creates traders bound to
their client.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from miniqmt_lab.qmt.fake_types import (
    FINAL_STATUSES,
    StockAccount,
    XtAsset,
    XtOrder,
    XtPosition,
    XtQuantTraderCallback,
    XtTrade,
)

if TYPE_CHECKING:
    from miniqmt_lab.qmt.fake import FakeQmt

log = logging.getLogger(__name__)


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
        return self._query("query_stock_asset", account, lambda: self._qmt.ledger.asset())

    def query_stock_positions(self, account: StockAccount) -> list[XtPosition] | None:
        return self._query("query_stock_positions", account, lambda: self._qmt.ledger.positions())

    def query_stock_position(self, account: StockAccount, stock_code: str) -> XtPosition | None:
        def one() -> XtPosition | None:
            return next((p for p in self._qmt.ledger.positions() if p.stock_code == stock_code), None)

        return self._query("query_stock_position", account, one)

    def query_stock_orders(self, account: StockAccount, cancelable_only: bool = False) -> list[XtOrder] | None:
        def orders() -> list[XtOrder]:
            rows = self._qmt.ledger.orders_snapshot()
            return [o for o in rows if o.order_status not in FINAL_STATUSES] if cancelable_only else rows

        return self._query("query_stock_orders", account, orders)

    def query_stock_order(self, account: StockAccount, order_id: int) -> XtOrder | None:
        def one() -> XtOrder | None:
            return next((o for o in self._qmt.ledger.orders_snapshot() if o.order_id == int(order_id)), None)

        return self._query("query_stock_order", account, one)

    def query_stock_trades(self, account: StockAccount) -> list[XtTrade] | None:
        return self._query("query_stock_trades", account, lambda: self._qmt.ledger.trades_snapshot())

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


class XtTraderModule:
    """The ``xttrader`` module surface: trader instances are bound to their :class:`FakeQmt`."""

    XtQuantTraderCallback: type[XtQuantTraderCallback] = XtQuantTraderCallback

    def __init__(self, qmt: FakeQmt) -> None:
        self._qmt = qmt

    def XtQuantTrader(  # the real class name, called like a class
        self, path: str, session: int, callback: XtQuantTraderCallback | None = None
    ) -> FakeXtQuantTrader:
        trader = FakeXtQuantTrader(self._qmt, path, session, callback)
        self._qmt.traders.append(trader)
        return trader
