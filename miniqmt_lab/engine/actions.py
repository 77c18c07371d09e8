"""Corporate actions on the engine's book: the day's ex-dates applied before its first tick.

The feed says which actions fall on a day (``feed.actions_on(day)``: rows of ``schema.ACTION_COLUMNS``;
a replay of bars takes them from its market simulation, a live feed from its data source). Each one on a
stock held goes through the kernel's ``apply_action_nb`` (bonus shares, dividend cash, cost, base cost and
high adjusted), is written to the database with the holding and cash it leads to before the book shows
it, and is recorded as an event (``Engine.events()``), exactly as the backtest applies it. A paper venue
that keeps its own ledger is told too (``broker.corporate_action``); a real broker credits the shares
and cash itself. An event already stored (a restart on the same day) is not applied again.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from miniqmt_lab.engine.store import EventRow
from miniqmt_lab.market import SHANGHAI, action_message
from miniqmt_lab.rules import apply_action_nb

if TYPE_CHECKING:
    from miniqmt_lab.engine.context import RunContext

log = logging.getLogger(__name__)

EX_RIGHTS = "ex_rights"


class ActionDeferred(Exception):
    """A fill was kept for the database while the day's actions were applied: the rest wait a round."""


def apply_day_actions(ctx: RunContext, day: dt.date) -> int | None:
    """Apply the feed's corporate actions of ``day`` to the holdings; returns how many were applied, or
    None when the feed could not say (a live data source away): the monitor asks again next round."""
    source = getattr(ctx.feed, "actions_on", None)
    if not callable(source):
        return 0
    try:
        rows = ctx.feed_calls.call("feed.actions_on", source, day)
    except Exception as exc:  # the feed's own worker and timeout: a hung data source never holds the monitor
        ctx.issue("corporate_actions", "", f"the corporate actions of {day} could not be read ({exc});"
                                           " asked again with the next round")
        return None
    applied = 0
    try:
        if ctx.fills:
            raise ActionDeferred("")
        for code, cash_dividend, bonus_ratio in rows:
            if _apply(ctx, day, str(code), float(cash_dividend), float(bonus_ratio)):
                applied += 1
    except ActionDeferred:
        # the book shows fills the database has not: an event saved now would store their cash with it
        ctx.issue("corporate_actions", "", f"the corporate actions of {day} wait until the kept fills are"
                                           " written; asked again with the next round")
        return None
    return applied


def _apply(ctx: RunContext, day: dt.date, code: str, cash_dividend: float, bonus_ratio: float) -> bool:
    book = ctx.book
    time = dt.datetime.combine(day, dt.time(0), tzinfo=SHANGHAI)
    with book.lock:
        pos = book.positions.get(code)
        if pos is None or pos.state.volume <= 0 or ctx.store.event_known(code, EX_RIGHTS, time):
            return False
        if ctx.fills:  # a fill was kept since the check above: this action waits for the next round
            raise ActionDeferred(code)
        state, cash, bonus = apply_action_nb(pos.state, book.cash, cash_dividend, bonus_ratio)
        position = replace(pos, state=state)
        received = cash - book.cash
        event = EventRow(time, code, EX_RIGHTS, pos.state.volume, state.volume, received,
                         action_message(cash_dividend, bonus_ratio, pos.state.volume, state.volume, received))
        if not ctx.store.save_event(event, position, cash, book.day):
            return False
        book.positions[code] = position
        book.cash = cash
        book.activity += 1
    venue = getattr(ctx.broker, "corporate_action", None)
    if callable(venue):
        venue(code, bonus, received)
    log.info("%s ex-rights on %s: %s", code, day, event.message)
    ctx.on_change()
    return True
