"""The double's ``xtquant.xttrader``: ``XtQuantTrader`` and its callback thread.

:class:`FakeXtQuantTrader` has the real methods, arguments and return codes; what they do to the
account is its client's (:class:`~miniqmt_lab.xtquant_double.client.FakeQmt`, seen here only
through :class:`TraderClient`). As the real SDK (``shared/spec/xtquant.md``):

* callbacks are delivered on one thread per trader, in order; a sync call made on that thread is
  refused (the real client deadlocks there);
* ``order_stock_async`` / ``cancel_order_stock_async`` always return a new positive seq; a refusal
  comes as callbacks carrying it;
* the list queries return None for an empty list as well as on failure;
* blocking calls wait for ever unless ``set_timeout(ms)`` was called, then fail after it;
* a trader built on another thread than the main one and dropped on the main thread fails in
  ``__del__`` ("Exception ignored ... 'oldloop'").

:class:`XtTraderModule` is the ``xttrader`` module surface that creates traders bound to their client.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from miniqmt_lab.xtquant_double.xttype import (
    FINAL_STATUSES,
    StockAccount,
    XtAsset,
    XtOrder,
    XtPosition,
    XtQuantTraderCallback,
    XtTrade,
)

log = logging.getLogger(__name__)


class AccountBooks(Protocol):
    def asset(self) -> XtAsset: ...

    def positions(self) -> list[XtPosition]: ...

    def orders_snapshot(self) -> list[XtOrder]: ...

    def trades_snapshot(self) -> list[XtTrade]: ...


class TraderClient(Protocol):
    """What a trader asks of the client it is connected to."""

    account_id: str
    ledger: AccountBooks
    callback_delay: float
    violations: list[str]
    callback_errors: list[tuple[str, str]]

    def register(self, trader: FakeXtQuantTrader) -> None: ...

    def connect_trader(self, trader: FakeXtQuantTrader) -> int: ...

    def admit(self, method: str, timeout: float | None) -> bool: ...

    def place(self, trader: FakeXtQuantTrader, account: StockAccount, stock_code: str, order_type: int,
              order_volume: int, price_type: int, price: float, strategy_name: str, order_remark: str,
              *, seq: int | None) -> tuple[int, threading.Event | None]: ...

    def cancel(self, trader: FakeXtQuantTrader, account: StockAccount, order_id: int, *, seq: int | None) -> int: ...


@dataclass
class _Delivery:
    name: str
    data: Any
    delay: float = 0.0
    done: threading.Event | None = None


class FakeXtQuantTrader:
    """``xttrader.XtQuantTrader(path, session, callback=None)`` against a :class:`TraderClient`."""

    def __init__(self, client: TraderClient, path: str, session: int,
                 callback: XtQuantTraderCallback | None = None) -> None:
        self._client = client
        self.path = str(path)
        self.session = int(session)
        self.built_on = threading.current_thread().name
        if self.built_on == "MainThread":
            self.oldloop = None  # the real one keeps the main thread's event loop here
        self._callback = callback
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._seq = itertools.count(1)
        self._timeout: float | None = None
        self.connected = False
        self.stale = False  # built before the client restarted: it never connects again
        self.stopped = False
        self.subscribed: set[str] = set()
        client.register(self)

    def __del__(self) -> None:
        # the real __del__ restores the main thread's event loop, kept only when built on the main thread
        if threading.current_thread().name == "MainThread" and not hasattr(self, "oldloop"):
            self._client.violations.append(f"trader of session {self.session} built on {self.built_on}"
                                           " was dropped on the main thread ('oldloop')")
            raise AttributeError("'XtQuantTrader' object has no attribute 'oldloop'")

    # -- life cycle ----------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def native_timeout(self) -> float | None:
        """What ``set_timeout`` set, in seconds; None: blocking calls wait for ever."""
        return self._timeout

    def register_callback(self, callback: XtQuantTraderCallback) -> None:
        self._callback = callback

    def set_timeout(self, timeout: int = 0) -> None:
        """Blocking calls give up after ``timeout`` milliseconds (0: wait for ever)."""
        self._timeout = timeout / 1000 if timeout > 0 else None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._deliver, name=f"fake-xt-callback-{self.session}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.connected = False
        self.stopped = True
        self.subscribed.clear()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            if thread is not threading.current_thread():
                thread.join(5.0)

    def connect(self) -> int:
        if not self._client.admit("connect", self._timeout):
            return -1
        return self._client.connect_trader(self)

    def subscribe(self, account: StockAccount) -> int:
        self._refuse_in_callback("subscribe")
        if not self._client.admit("subscribe", self._timeout):
            return -1
        if not self.connected or account.account_id != self._client.account_id:
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
        order_id, _ = self._client.place(self, account, stock_code, order_type, order_volume, price_type, price,
                                         strategy_name, order_remark, seq=None)
        return order_id

    def order_stock_async(self, account: StockAccount, stock_code: str, order_type: int, order_volume: int,
                          price_type: int, price: float, strategy_name: str = "", order_remark: str = "") -> int:
        seq = next(self._seq)
        if not self.connected:
            return seq  # the request goes nowhere: no answer ever comes
        _, answered = self._client.place(self, account, stock_code, order_type, order_volume, price_type, price,
                                         strategy_name, order_remark, seq=seq)
        if answered is not None:  # ``response_first``: the answer is out before the seq is
            answered.wait(5.0)
        return seq

    def cancel_order_stock(self, account: StockAccount, order_id: int) -> int:
        self._refuse_in_callback("cancel_order_stock")
        if not self.connected:
            return -1
        return self._client.cancel(self, account, int(order_id), seq=None)

    def cancel_order_stock_async(self, account: StockAccount, order_id: int) -> int:
        seq = next(self._seq)
        if self.connected:
            self._client.cancel(self, account, int(order_id), seq=seq)
        return seq

    # -- queries -------------------------------------------------------------------------------------
    def query_stock_asset(self, account: StockAccount) -> XtAsset | None:
        return self._query("query_stock_asset", account, lambda: self._client.ledger.asset())

    def query_stock_positions(self, account: StockAccount) -> list[XtPosition] | None:
        return self._query("query_stock_positions", account, lambda: self._client.ledger.positions() or None)

    def query_stock_position(self, account: StockAccount, stock_code: str) -> XtPosition | None:
        def one() -> XtPosition | None:
            return next((p for p in self._client.ledger.positions() if p.stock_code == stock_code), None)

        return self._query("query_stock_position", account, one)

    def query_stock_orders(self, account: StockAccount, cancelable_only: bool = False) -> list[XtOrder] | None:
        def orders() -> list[XtOrder] | None:
            rows = self._client.ledger.orders_snapshot()
            if cancelable_only:
                rows = [o for o in rows if o.order_status not in FINAL_STATUSES]
            return rows or None

        return self._query("query_stock_orders", account, orders)

    def query_stock_order(self, account: StockAccount, order_id: int) -> XtOrder | None:
        def one() -> XtOrder | None:
            return next((o for o in self._client.ledger.orders_snapshot() if o.order_id == int(order_id)), None)

        return self._query("query_stock_order", account, one)

    def query_stock_trades(self, account: StockAccount) -> list[XtTrade] | None:
        return self._query("query_stock_trades", account, lambda: self._client.ledger.trades_snapshot() or None)

    # -- internals -----------------------------------------------------------------------------------
    def _query(self, name: str, account: StockAccount, answer: Callable[[], Any]) -> Any:
        self._refuse_in_callback(name)
        if not self._client.admit(name, self._timeout):
            return None
        if not self.connected or account.account_id != self._client.account_id:
            return None
        return answer()

    def _refuse_in_callback(self, name: str) -> None:
        """A sync call made on the callback thread waits for a reply that thread itself must deliver."""
        if self._thread is not None and threading.current_thread() is self._thread:
            message = f"{name} called inside a callback: the real client deadlocks here"
            self._client.violations.append(message)
            raise RuntimeError(message)

    def post(self, name: str, data: Any = None, *, delay: float = 0.0, done: threading.Event | None = None) -> None:
        """Queue a callback for this trader's callback thread."""
        self._queue.put(_Delivery(name, data, delay, done))

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            wait = item.delay + self._client.callback_delay
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
                log.exception("double xttrader: callback %s raised", item.name)
                self._client.callback_errors.append((item.name, repr(exc)))
            finally:
                if item.done is not None:
                    item.done.set()


class XtTraderModule:
    """The ``xttrader`` module surface: trader instances are bound to their client."""

    XtQuantTraderCallback: type[XtQuantTraderCallback] = XtQuantTraderCallback

    def __init__(self, client: TraderClient) -> None:
        self._client = client

    def XtQuantTrader(  # the real class name, called like a class
        self, path: str, session: int, callback: XtQuantTraderCallback | None = None
    ) -> FakeXtQuantTrader:
        return FakeXtQuantTrader(self._client, path, session, callback)
