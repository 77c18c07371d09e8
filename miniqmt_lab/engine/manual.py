"""Manual orders (``Engine.buy`` / ``Engine.sell``), on the caller's thread.

The same path as a rule signal's order (:meth:`miniqmt_lab.engine.execution.Execution.place`): the
pre-trade check, reservation in the book, the record with rule ``manual``, the broker. Bad input
raises the typed errors of :mod:`miniqmt_lab.errors` before anything is reserved; a refused manual
order stays in the signals table with the reason.
"""

from __future__ import annotations

import math
import uuid

from miniqmt_lab import market
from miniqmt_lab.engine.book import PendingOrder
from miniqmt_lab.engine.context import RunContext
from miniqmt_lab.engine.execution import Execution
from miniqmt_lab.engine.store import SignalRow
from miniqmt_lab.errors import (
    EngineNotRunning,
    InsufficientPosition,
    InvalidPrice,
    InvalidVolume,
    PriceLimitBreached,
)
from miniqmt_lab.rules import RULE_MANUAL
from miniqmt_lab.schema import Outcome, Side


def manual_order(
    ctx: RunContext, execution: Execution, side: Side, code: object, volume: object, amount: object, price: object
) -> str:
    """Place a manual order; returns the broker's order id."""
    if not ctx.accepting:
        raise EngineNotRunning("the engine is not running: start it before placing orders")
    norm = market.normalize_code(code)
    with ctx.book.lock:
        quote = ctx.book.quotes.get(norm)
        state = ctx.book.state(norm)
        free = ctx.book.free_available(norm)
    if price is not None:
        px = market.check_price(price)
    elif quote is not None:
        px = quote.price
    else:
        raise InvalidPrice(f"no price of {norm} is known yet (the feed has not sent one): pass price=")
    if side is Side.BUY:
        shares = _buy_volume(norm, volume, amount, px)
    else:
        if state.volume <= 0:
            raise InsufficientPosition(f"no holding of {norm} to sell")
        if isinstance(volume, int | float) and not isinstance(volume, bool) and volume > state.available:
            raise InsufficientPosition(
                f"sell {volume} {norm}: you hold {state.volume} ({max(free, 0)} available now)"
            )
        shares = market.check_sell_volume(volume, state.volume, state.available, norm)
    now = ctx.clock.now()
    if quote is not None:
        up, down = ctx.limits(norm, quote.prev_close, quote.name)
        if side is Side.BUY and px >= up - 1e-9:
            raise PriceLimitBreached(f"buy {norm} at {px:.2f}: at or above the up-limit {up:.2f}")
        if side is Side.SELL and px <= down + 1e-9:
            raise PriceLimitBreached(f"sell {norm} at {px:.2f}: at or below the down-limit {down:.2f}")
    client_id = f"manual-{uuid.uuid4().hex[:12]}"
    ctx.store.insert_signal(
        SignalRow(client_id, now, now, norm, "manual", side.value, px, shares, Outcome.PENDING.value,
                  "manual order", f"{norm}|manual|{client_id}")
    )
    ctx.on_change()
    order = PendingOrder(client_id, norm, side, shares, px, RULE_MANUAL)
    order_id = execution.place(order, now)
    order.done.wait(ctx.settings.engine.call_timeout)
    return order_id


def _buy_volume(code: str, volume: object, amount: object, price: float) -> int:
    if volume is None:
        if amount is None:
            raise InvalidVolume(f"buy {code}: give a volume (shares) or an amount (yuan)")
        money = market.check_price(amount, what="amount")
        step = market.lot_rule(code).step  # whole lots; 1-share steps on STAR and BJ
        volume = int(math.floor(money / price / step)) * step
        if volume <= 0:
            raise InvalidVolume(f"buy {code}: {money:,.2f} yuan does not buy one lot at {price:.2f}")
    return market.check_buy_volume(code, volume)
