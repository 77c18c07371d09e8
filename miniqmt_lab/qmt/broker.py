"""``QmtBroker``: the Broker protocol over xtquant's ``XtQuantTrader`` (live trading on miniQMT).

The broker is a facade over its parts, which share one lock:

* :mod:`miniqmt_lab.qmt.callbacks`: xtquant's callback thread only queues ``(name, data)``; the
  ``qmt-events`` pump hands each callback to its handler, in arrival order, onto
  :attr:`QmtBroker.events`.
* :mod:`miniqmt_lab.qmt.translate`: what the adapter knows of its orders, and the handlers that
  turn order callbacks into ``OrderUpdate``/``Fill``/``BrokerError``.
* :mod:`miniqmt_lab.qmt.connection`: every query and order call under ``engine.call_timeout``;
  connect under ``engine.connect_timeout``, close, and the ``qmt-reconnect`` thread after
  ``on_disconnected`` (``ConnectionChanged``); the trader itself on its own thread
  (:mod:`miniqmt_lab.qmt.host`).

Here: submitting and cancelling orders, the account queries and the status. xtquant is imported
when the broker is built (its first import runs a slow update check), never inside a timed call.

Rejected orders are recorded in :attr:`QmtBroker.rejected` and never sent again.

``close`` stops the trader, the pump and any reconnect; ``connect`` after it creates, starts and
subscribes a new trader (an engine stopped and started again). What the adapter knows of its orders
is kept, so pushes for an order sent before the close are still reported with its signal; fills
made while closed are not replayed: the engine's broker sync adopts the positions and cash.

The list queries of xtquant return None both on failure and for an empty list (the SDK's docs):
:meth:`QmtBroker.positions` and :meth:`QmtBroker.orders` read None as "none today" while the
connection is up and ``query_stock_asset`` answers, and as :class:`QmtUnavailable` otherwise.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from miniqmt_lab import market as mkt
from miniqmt_lab.config import Settings
from miniqmt_lab.errors import InvalidVolume, OrderRejected, QmtUnavailable
from miniqmt_lab.qmt.callbacks import Pump
from miniqmt_lab.qmt.connection import RECONNECTED, Connection, TimedCalls
from miniqmt_lab.qmt.loader import XtModules, derive_session_id, preload
from miniqmt_lab.qmt.translate import (
    STRATEGY_NAME,
    OrderTracker,
    TrackedOrder,
    order_remark,
    order_status,
    parse_remark,
    side_of,
)
from miniqmt_lab.schema import (
    BrokerAsset,
    BrokerEvent,
    BrokerOrder,
    BrokerPosition,
    BrokerStatus,
    ConnectionChanged,
    OrderRequest,
    Side,
    mask_account,
)

log = logging.getLogger(__name__)


class QmtBroker:
    """The Broker protocol on a miniQMT account through ``xtquant.xttrader``.

    ``modules`` supplies xtquant (default: the installed package, imported here; if it cannot be,
    :meth:`connect` says why); tests and demos pass a :class:`miniqmt_lab.xtquant_double.FakeQmt`.
    ``reconnect_delay`` and ``reconnect_max_delay`` bound the backoff between reconnect attempts
    (seconds).
    """

    name = "qmt"
    live = True  # orders reach a real account: an engine on this broker is live

    def __init__(
        self,
        settings: Settings,
        *,
        modules: XtModules | None = None,
        reconnect_delay: float = 1.0,
        reconnect_max_delay: float = 60.0,
    ) -> None:
        self.settings = settings
        self.events: queue.Queue[BrokerEvent] = queue.Queue()
        xt, self.import_problem = preload(modules, ("xttrader", "xttype", "xtconstant"))
        self._lock = threading.RLock()
        self._call = TimedCalls(settings.engine.call_timeout)
        raw: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._connection = Connection(
            settings, xt=xt, session_id=settings.qmt.session_id or derive_session_id(), lock=self._lock,
            call=self._call, raw=raw, emit=self.events.put, reconnect_delay=reconnect_delay,
            reconnect_max_delay=reconnect_max_delay,
        )
        if self.import_problem:
            self._connection.message = f"not connected: {self.import_problem}"
        self._orders = OrderTracker(
            settings.fees, lock=self._lock, emit=self.events.put, constants=self._connection.constants
        )
        self._pump = Pump(raw, {
            "on_order_stock_async_response": self._orders.on_order_stock_async_response,
            "on_stock_order": self._orders.on_stock_order,
            "on_stock_trade": self._orders.on_stock_trade,
            "on_order_error": self._orders.on_order_error,
            "on_cancel_order_stock_async_response": self._orders.on_cancel_order_stock_async_response,
            "on_cancel_error": self._orders.on_cancel_error,
            "on_account_status": self._on_account_status,
            "on_disconnected": self._connection.on_disconnected,
            RECONNECTED: self._connection.on_reconnected,
        })

    @property
    def session_id(self) -> int:
        """The session id of the current trader (a fresh trader after a failed reconnect gets a new one)."""
        return self._connection.session_id

    @property
    def rejected(self) -> dict[str, str]:
        """Broker order id -> why the client refused it."""
        return self._orders.rejected

    # -- life cycle --------------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect to the client and subscribe the account within ``engine.connect_timeout``, or raise
        QmtUnavailable saying what to fix (BrokerTimeout when the budget ran out); meanwhile
        :meth:`status` says "connecting to QMT..."."""
        if not self._connection.open():
            return
        self._pump.start()
        self.events.put(ConnectionChanged(True, self._connection.message))
        log.info("QMT broker connected to account %s, session %s",
                 mask_account(self.settings.qmt.account_id), self.session_id)

    def close(self) -> None:
        self._connection.end_reconnects()
        self._pump.stop()
        self._connection.close()

    # -- orders ------------------------------------------------------------------------------------
    def submit(self, order: OrderRequest) -> str:
        trader, account, xtc = self._connection.live()
        code = mkt.normalize_code(order.code)
        volume = order.volume
        if isinstance(volume, bool) or not isinstance(volume, int) or volume <= 0:
            raise InvalidVolume(f"order volume must be a positive whole number of shares, got {volume!r}")
        if order.price is None:
            price_type, price = xtc.LATEST_PRICE, 0.0
        else:
            price_type, price = xtc.FIX_PRICE, mkt.check_price(order.price, what="limit price")
        order_type = xtc.STOCK_BUY if order.side is Side.BUY else xtc.STOCK_SELL
        what = f"{order.side.value} {volume} {code}"
        tracked = TrackedOrder(code, order.side, volume, price, order.rule, order.signal_id, order.stamp)

        def place() -> Any:
            return self._call(
                trader.order_stock_async, account, code, order_type, volume, price_type, price,
                STRATEGY_NAME, order_remark(order.rule, order.signal_id), what="order_stock_async",
            )

        answer = self._orders.send(tracked, what, place, self._call.timeout)
        order_id = int(answer.order_id)
        if order_id <= 0:
            raise OrderRejected(f"QMT refused {what}: {answer.error_msg or 'no reason given'}")
        return str(order_id)

    def cancel(self, order_id: str) -> None:
        """Ask the client to cancel; the outcome arrives as an order update or a cancel BrokerError."""
        trader, account, _ = self._connection.live()
        self._call(trader.cancel_order_stock_async, account, int(order_id), what="cancel_order_stock_async")

    # -- queries -----------------------------------------------------------------------------------
    def positions(self) -> list[BrokerPosition]:
        trader, account, _ = self._connection.live()
        rows = self._call(trader.query_stock_positions, account, what="query_stock_positions")
        if rows is None:
            self._nothing_today(trader, account, "query_stock_positions")
            return []
        return [
            BrokerPosition(
                code=p.stock_code, volume=int(p.volume), available=int(p.can_use_volume), cost=float(p.avg_price),
                last_price=float(p.last_price), market_value=float(p.market_value), name=p.instrument_name or "",
            )
            for p in rows
            if int(p.volume) > 0  # the client lists stocks sold out today with volume 0
        ]

    def orders(self) -> list[BrokerOrder]:
        """Today's orders of this program (its strategy name), each with the signal id of its remark
        (cut to the counter's 24 characters: match it with ``startswith``); [] when there are none."""
        trader, account, xtc = self._connection.live()
        rows = self._call(trader.query_stock_orders, account, False, what="query_stock_orders")
        if rows is None:
            self._nothing_today(trader, account, "query_stock_orders")
            return []
        out = []
        for o in rows:
            if getattr(o, "strategy_name", "") != STRATEGY_NAME:
                continue
            _, signal_id = parse_remark(o.order_remark)
            out.append(BrokerOrder(
                order_id=str(o.order_id), code=o.stock_code, side=side_of(o.order_type, xtc.STOCK_BUY),
                volume=int(o.order_volume), filled_volume=int(o.traded_volume), price=float(o.price),
                status=order_status(o.order_status), signal_id=signal_id,
            ))
        return out

    def _nothing_today(self, trader: Any, account: Any, what: str) -> None:
        """A list query's None means "none today" only while the connection is up, the account's
        asset query answers, and nothing known contradicts it (holdings with a market value for
        positions, orders this broker sent today for orders); otherwise the client is unavailable."""
        if not self._connection.connected:
            raise QmtUnavailable(f"{what} returned nothing and the QMT client connection is down")
        asset = self._call(trader.query_stock_asset, account, what="query_stock_asset")
        if asset is None:
            raise QmtUnavailable(f"{what} and query_stock_asset returned nothing: the QMT client may have"
                                 " disconnected")
        if what == "query_stock_positions" and float(asset.market_value) > 0:
            raise QmtUnavailable(f"{what} returned nothing although the account holds"
                                 f" {float(asset.market_value):.2f} in stock: the query failed")
        if what == "query_stock_orders" and self._orders.sent_today():
            raise QmtUnavailable(f"{what} returned nothing although this broker sent orders today: the query"
                                 " failed")

    def asset(self) -> BrokerAsset:
        trader, account, _ = self._connection.live()
        a = self._call(trader.query_stock_asset, account, what="query_stock_asset")
        if a is None:
            raise QmtUnavailable("query_stock_asset returned nothing: the QMT client may have disconnected")
        return BrokerAsset(float(a.cash), float(a.frozen_cash), float(a.market_value), float(a.total_asset))

    def status(self) -> BrokerStatus:
        connection = self._connection
        with self._lock:
            return BrokerStatus(
                connected=connection.connected,
                name=self.name,
                message=connection.message,
                account=mask_account(self.settings.qmt.account_id),
                live=True,
                outages=connection.outages,
                details={
                    "session_id": connection.session_id,
                    "connecting": connection.connecting,
                    "renewals": connection.renewals,
                    "open_orders": self._orders.open_orders(),
                    "rejected": len(self.rejected),
                    "hung_calls": self._call.hung_count(),
                    "reconnecting": connection.reconnecting,
                    "pump": self._pump.state,
                    "pump_alive": self._pump.alive,
                    "pump_failures": self._pump.failures,
                },
            )

    def _on_account_status(self, s: Any) -> None:
        log.info("QMT account %s status %s", mask_account(str(s.account_id)), s.status)
