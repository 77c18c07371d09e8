"""The double's account: cash, T+1 holdings, orders and trades; the counter's checks and matching.

:class:`FakeLedger` books what happens to orders (freezing cash or shares, fills with per-order fees,
releases on cancel) and shows the account as xtquant's objects. It sends no callback: its client
(:class:`~miniqmt_lab.xtquant_double.client.FakeQmt`) calls it under the lock they share and pushes
what changed to its traders. Its views (``positions``, ``asset``, the snapshots) take that lock themselves: the
traders' queries call them directly.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections import deque
from dataclasses import dataclass, replace

from miniqmt_lab import market as mkt
from miniqmt_lab.config import FeeSettings
from miniqmt_lab.xtquant_double.market import Clock, FakeMarket
from miniqmt_lab.xtquant_double.xttype import DIRECTION_BUY, REPORTED_MARKET, C, XtAsset, XtOrder, XtPosition, XtTrade


@dataclass
class Holding:
    volume: int = 0
    can_use: int = 0
    frozen: int = 0
    locked: int = 0  # bought on ``locked_on``: sellable from the next trading day (T+1)
    locked_on: dt.date | None = None
    avg_price: float = 0.0
    open_price: float = 0.0
    open_date: str = ""


@dataclass
class ClientOrder:
    xt: XtOrder
    frozen_cash: float = 0.0
    fee_paid: float = 0.0
    hold: bool = False  # an injected partial fill: the rest waits for a cancel
    amount: float = 0.0


class FakeLedger:
    """One account's books over ``market``. ``orders`` is the client's order table (by order id),
    which the ledger books and shows; orders fill as
    :class:`~miniqmt_lab.xtquant_double.client.FakeQmt` describes
    (``fill_price``), cut to the sizes queued in ``partials`` while there are any."""

    def __init__(
        self,
        *,
        account_id: str,
        cash: float,
        market: FakeMarket,
        clock: Clock,
        fees: FeeSettings,
        fill_price: str,
        report_commission: bool,
        orders: dict[int, ClientOrder],
        lock: threading.RLock,
    ) -> None:
        self.account_id = account_id
        self.market = market
        self.clock = clock
        self.fees = fees
        self.fill_price = fill_price
        self.report_commission = report_commission
        self.cash = float(cash)
        self.holdings: dict[str, Holding] = {}
        self.orders = orders
        self.trades: list[XtTrade] = []
        self.partials: deque[int] = deque()
        self._lock = lock
        self._trade_ids = itertools.count(1)

    # -- the counter ----------------------------------------------------------------------------------
    def counter_problem(self, order: ClientOrder, is_market: bool) -> str:
        """Why the counter refuses a new order, or ""."""
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
            if need > self.cash + 1e-6:
                return f"[COUNTER] 可用资金不足: 需要{need:.2f}, 可用{self.cash:.2f}"
            return ""
        holding = self.holding(xt.stock_code)
        if holding is None or holding.can_use < xt.order_volume:
            available = holding.can_use if holding is not None else 0
            return f"[COUNTER] 可用股份不足: 委托{xt.order_volume}, 可用{available}"
        return ""

    def _freeze_amount(self, order: ClientOrder, is_market: bool) -> float:
        xt = order.xt
        price = self.market.price(xt.stock_code) if is_market else xt.price
        amount = price * xt.order_volume
        return amount + mkt.order_fees(amount, "BUY", self.fees).total

    def freeze(self, order: ClientOrder, is_market: bool) -> None:
        """Hold what an accepted order needs: a buy's cash with fees, a sell's shares."""
        xt = order.xt
        if xt.order_type == C.STOCK_BUY:
            order.frozen_cash = self._freeze_amount(order, is_market)
            self.cash -= order.frozen_cash
        else:
            holding = self.holdings[xt.stock_code]
            holding.can_use -= xt.order_volume
            holding.frozen += xt.order_volume

    def release(self, order: ClientOrder) -> None:
        """Give back what a cancelled order still holds."""
        xt = order.xt
        if xt.order_type == C.STOCK_BUY:
            self.cash += order.frozen_cash
            order.frozen_cash = 0.0
        else:
            holding = self.holdings[xt.stock_code]
            rest = xt.order_volume - xt.traded_volume
            holding.can_use += rest
            holding.frozen -= rest

    # -- matching -------------------------------------------------------------------------------------
    def try_fill(self, order: ClientOrder) -> XtTrade | None:
        """The fill of a working order the market reaches, booked; None when it does not fill now."""
        xt = order.xt
        if order.hold or xt.order_status not in (C.ORDER_REPORTED, C.ORDER_PART_SUCC):
            return None
        last = self.market.price(xt.stock_code)
        if not (last > 0):
            return None
        is_market = xt.price_type == REPORTED_MARKET
        if not is_market and (xt.price < last if xt.order_type == C.STOCK_BUY else xt.price > last):
            return None
        volume = xt.order_volume - xt.traded_volume
        if self.partials:
            volume = min(self.partials.popleft(), volume)
            order.hold = volume < xt.order_volume - xt.traded_volume
        price = last if is_market or self.fill_price == "market" else xt.price
        return self._fill(order, volume, price)

    def _fill(self, order: ClientOrder, volume: int, price: float) -> XtTrade:
        xt = order.xt
        side = "BUY" if xt.order_type == C.STOCK_BUY else "SELL"
        amount = round(price * volume, 2)
        before = xt.order_volume - xt.traded_volume
        order.amount += amount
        # fees of an order are charged on its whole traded amount (minimum commission once)
        due = mkt.order_fees(order.amount, side, self.fees).total
        fee = round(max(due - order.fee_paid, 0.0), 2)
        order.fee_paid += fee
        holding = self.holdings.setdefault(xt.stock_code, Holding(open_date=self.today().strftime("%Y%m%d")))
        if side == "BUY":
            release = order.frozen_cash * volume / before
            order.frozen_cash -= release
            self.cash += release - amount - fee
            self._roll(holding)
            cost = holding.avg_price * holding.volume + amount + fee
            holding.open_price = (holding.open_price * holding.volume + amount) / (holding.volume + volume)
            holding.volume += volume
            holding.avg_price = cost / holding.volume
            holding.locked += volume
            holding.locked_on = self.today()
        else:
            self.cash += amount - fee
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
        self.trades.append(trade)
        return trade

    # -- holdings and views ---------------------------------------------------------------------------
    def today(self) -> dt.date:
        return mkt.to_shanghai(self.clock()).date()

    def _roll(self, holding: Holding) -> None:
        if holding.locked and holding.locked_on is not None and holding.locked_on < self.today():
            holding.can_use += holding.locked
            holding.locked = 0
            holding.locked_on = None

    def holding(self, code: str) -> Holding | None:
        """The holding of ``code`` with shares bought before today made sellable (T+1)."""
        holding = self.holdings.get(code)
        if holding is not None:
            self._roll(holding)
        return holding

    def positions(self) -> list[XtPosition]:
        with self._lock:
            rows = []
            for code in sorted(self.holdings):
                h = self.holding(code)
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

    def asset(self) -> XtAsset:
        with self._lock:
            frozen = sum(o.frozen_cash for o in self.orders.values())
            value = round(sum(p.market_value for p in self.positions()), 2)
            return XtAsset(C.SECURITY_ACCOUNT, self.account_id, round(self.cash, 2), round(frozen, 2), value,
                           round(self.cash + frozen + value, 2), round(self.cash, 2))

    def orders_snapshot(self) -> list[XtOrder]:
        with self._lock:
            return [replace(o.xt) for o in self.orders.values()]

    def trades_snapshot(self) -> list[XtTrade]:
        with self._lock:
            return [replace(t) for t in self.trades]
