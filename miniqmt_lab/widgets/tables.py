"""Live tables of one engine (positions, trades, signals) and the manual order form.

The views render whatever :class:`EngineWatch` holds; they keep no rows of their own, only what the
reader chose (filter words, page). Each table keeps one size: a filter box, pages of rows, and a box
of fixed height that scrolls, so thousands of trades never stretch the panel. The order form sends
through ``engine.buy`` / ``engine.sell`` on the command worker, after a confirmation click unless the
engine is known to trade on paper, and shows the engine's typed errors as one line under the form.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import ipywidgets as w
import pandas as pd

from miniqmt_lab.protocols import EngineFace
from miniqmt_lab.widgets._confirm import ConfirmBox, account_label, live_or_unknown
from miniqmt_lab.widgets._html import (
    MUTED,
    Column,
    fmt_bool,
    fmt_int,
    fmt_number,
    fmt_ratio,
    fmt_time,
    gain_colour,
    is_missing,
    message_html,
    render_table,
    side_colour,
)
from miniqmt_lab.widgets._poll import EngineWatch
from miniqmt_lab.widgets._runner import CommandRunner
from miniqmt_lab.widgets._table import PagedTable

LABEL_WIDTH = "70px"  # of the order form's field labels
TABLE_HEIGHT = 320  # pixels: the trades and signals tabs keep this height whatever their length

STALE_AFTER = dt.timedelta(seconds=60)
"""A price older than this (engine clock) is shown with the time it was seen: after a restart the last
known prices come back from the database, and a quiet stock may not have ticked for a while."""


def price_cell(now: dt.datetime | None) -> Callable[[pd.Series], str]:
    """The price column: the price, marked with when it was seen when it is not fresh."""

    def cell(row: pd.Series) -> str:
        price = fmt_number(row.get("price"))
        seen = row.get("price_time")
        if is_missing(seen):
            return (f'<span class="mq-stale" title="no price seen yet: valued at cost">{html.escape(price)}'
                    f'<small style="display: block">(cost)</small></span>')
        stamp = pd.Timestamp(seen)
        current = None if now is None else pd.Timestamp(now)
        if current is not None and stamp.tzinfo is not None and current.tzinfo is None:
            current = current.tz_localize(stamp.tzinfo)
        if current is not None and (stamp.tzinfo is None) != (current.tzinfo is None):
            current = None  # cannot compare: treat as old rather than hide its age
        if current is not None and current - stamp <= STALE_AFTER:
            return html.escape(price)
        same_day = current is not None and current.date() == stamp.date()
        when = stamp.strftime("%H:%M:%S" if same_day else "%m-%d %H:%M")
        # the time goes under the price, so a marked row is taller, not wider
        return (f'<span class="mq-stale" title="last price seen {fmt_time(stamp)}">{html.escape(price)}'
                f'<small style="display: block">@{html.escape(when)}</small></span>')

    return cell


def position_columns(now: dt.datetime | None = None) -> tuple[Column, ...]:
    return (
        Column("stock_code", "code", left=True),
        Column("stock_name", "name", left=True),
        Column("volume", "volume", fmt_int),
        Column("available", "avail.", fmt_int),
        Column("cost", "cost", lambda v: fmt_number(v, 3)),
        Column("price", "price", cell=price_cell(now)),
        Column("market_value", "market value", lambda v: fmt_number(v, 0)),
        Column("profit_ratio", "profit", fmt_ratio, gain_colour),
        Column("tp_done", "TP done", fmt_bool),
        Column("high", "high", fmt_number),
        Column("stop_loss_price", "stop loss", fmt_number),
        Column("dynamic_exit_level", "dynamic exit", fmt_number),
        Column("next_grid_price", "next grid", fmt_number),
        Column("grid_k", "grid buys", fmt_int),
    )


TRADE_COLUMNS = (
    Column("time", "time", fmt_time, left=True),
    Column("stock_code", "code", left=True),
    Column("side", "side", str, side_colour, left=True),
    Column("price", "price", fmt_number),
    Column("volume", "volume", fmt_int),
    Column("amount", "amount", fmt_number),
    Column("commission", "fees", fmt_number),
    Column("rule", "rule", left=True),
)

SIGNAL_COLUMNS = (
    Column("time", "time", fmt_time, left=True),
    Column("stock_code", "code", left=True),
    Column("rule", "rule", left=True),
    Column("side", "side", str, side_colour, left=True),
    Column("price", "price", fmt_number),
    Column("volume", "volume", fmt_int),
    Column("outcome", "outcome", left=True),
    Column("message", "why", left=True, wrap=True),
)


def _signal_row_style(row: pd.Series) -> str:
    outcome = str(row.get("outcome", ""))
    if outcome in {"executed", "partially_executed"}:
        return "background: #fdf0f0"
    if outcome in {"pending", "submitted", "unknown"}:  # still on its way
        return ""
    return f"color: {MUTED}"  # not executed: auto trading off, stale, duplicate, rejected, timeout...


def positions_html(frame: pd.DataFrame | None, height: int | None = None, now: dt.datetime | None = None) -> str:
    return render_table(frame, position_columns(now), empty="no positions", css_class="mq-positions-table",
                        height=height)


def trades_html(frame: pd.DataFrame | None, height: int | None = None) -> str:
    return render_table(frame, TRADE_COLUMNS, empty="no trades yet", css_class="mq-trades-table", height=height)


def signals_html(frame: pd.DataFrame | None, height: int | None = None) -> str:
    return render_table(frame, SIGNAL_COLUMNS, empty="no signals yet", css_class="mq-signals-table",
                        row_style=_signal_row_style, height=height)


def latest_first(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    return None if frame is None else frame.iloc[::-1]


class _TableView(PagedTable):
    """A paged table of one trait of the watch, shown again whenever that trait changes."""

    def __init__(
        self,
        watch: EngineWatch,
        trait_name: str,
        render: Callable[[pd.DataFrame | None, int], str],
        *,
        noun: str,
        css_class: str,
        order: Callable[[pd.DataFrame | None], pd.DataFrame | None] = lambda frame: frame,
        page_size: int = 50,
        height: int = TABLE_HEIGHT,
    ) -> None:
        self.watch = watch
        self._trait_name = trait_name
        self._order = order
        super().__init__(render, noun=noun, css_class=css_class, page_size=page_size, height=height)
        self.show(order(getattr(watch, trait_name)))
        watch.observe(self._changed, names=trait_name)

    def _changed(self, change: dict[str, Any]) -> None:
        self.show(self._order(change["new"]))

    def close(self) -> None:
        if self.comm is not None:  # ipywidgets calls close() again on garbage collection
            self.watch.unobserve(self._changed, names=self._trait_name)
        super().close()


class PositionsView(_TableView):
    """Holdings with their rule levels; a price not seen lately carries the time it was seen."""

    def __init__(self, watch: EngineWatch, *, page_size: int = 50, height: int = TABLE_HEIGHT) -> None:
        super().__init__(
            watch, "positions", self._render_positions, noun="position", css_class="mq-positions",
            page_size=page_size, height=height,
        )

    def _render_positions(self, frame: pd.DataFrame | None, height: int) -> str:
        snapshot = self.watch.snapshot
        return positions_html(frame, height, None if snapshot is None else snapshot.time)


class TradesView(_TableView):
    """Every trade, latest first."""

    def __init__(self, watch: EngineWatch, *, page_size: int = 50, height: int = TABLE_HEIGHT) -> None:
        super().__init__(watch, "trades", trades_html, noun="trade", css_class="mq-trades", order=latest_first,
                         page_size=page_size, height=height)


class SignalsView(_TableView):
    """Every detected signal, latest first, with what became of it (executed, or why not)."""

    def __init__(self, watch: EngineWatch, *, page_size: int = 50, height: int = TABLE_HEIGHT) -> None:
        super().__init__(watch, "signals", signals_html, noun="signal", css_class="mq-signals",
                         order=latest_first, page_size=page_size, height=height)


class OrderForm(w.VBox):
    """Manual buy/sell through ``engine.buy`` / ``engine.sell`` (recorded with rule ``manual``).

    Volume 0 on a buy means "size by amount"; price 0 means the latest price. Unless ``watch`` shows
    a paper engine, an order is only sent after "Yes, send to the LIVE account" in the confirmation
    box (which states what is sent and where); editing the form withdraws an order awaiting it.
    """

    def __init__(self, engine: EngineFace, runner: CommandRunner, watch: EngineWatch | None = None) -> None:
        self.engine = engine
        self.runner = runner
        self.watch = watch
        label = {"description_width": LABEL_WIDTH}  # one label width: the fields line up in columns
        field = w.Layout(width="240px")
        # ToggleButtons puts its description above the buttons: the side gets a label like the others'
        self.side_label = w.HTML('<div style="text-align: right">side</div>',
                                 layout=w.Layout(width=LABEL_WIDTH, margin="0 4px 0 2px"))
        self.side = w.ToggleButtons(options=["BUY", "SELL"], value="BUY", style={"button_width": "80px"})
        self.code = w.Text(description="code", placeholder="600000.SH", style=label, layout=field)
        self.volume = w.IntText(value=0, description="volume", style=label, layout=field)
        self.amount = w.FloatText(value=0.0, description="amount ¥", style=label, layout=field)
        self.price = w.FloatText(value=0.0, description="price", tooltip="0: latest price", style=label,
                                 layout=field)
        self.submit = w.Button(description="Place order", button_style="warning", icon="paper-plane")
        self.confirm = ConfirmBox("Yes, send to the LIVE account", css_prefix="mq-order")
        self.message = w.HTML("")
        self.submit.add_class("mq-order-submit")
        self.message.add_class("mq-order-message")
        self.submit.on_click(lambda _: self.place())
        self.confirm.no.on_click(lambda _: self._show("info", "order cancelled: nothing sent"))
        self.side.observe(self._side_changed, names="value")
        for field in (self.code, self.side, self.volume, self.amount, self.price):
            field.observe(self._edited, names="value")
        super().__init__(
            [
                w.HBox([self.side_label, self.side], layout=w.Layout(align_items="center")),
                w.HBox([self.code, self.volume], layout=w.Layout(flex_flow="row wrap")),
                w.HBox([self.amount, self.price], layout=w.Layout(flex_flow="row wrap")),
                self.submit,
                self.confirm,
                self.message,
            ]
        )
        self.add_class("mq-order-form")

    def _side_changed(self, change: dict[str, Any]) -> None:
        # a sell is always by volume; an amount is only meaningful for a buy
        self.amount.disabled = change["new"] == "SELL"

    def _edited(self, change: dict[str, Any]) -> None:
        # what the box states is what Yes sends: once the form differs, the question is void
        if self.confirm.dismiss():
            self._show("info", "order changed before it was confirmed: nothing sent")

    def _show(self, level: str, text: str) -> None:
        self.message.value = message_html(level, text)

    def place(self) -> Future[Any] | None:
        """Send the form's order on the command worker.

        None when the form is incomplete (said why) or when the order awaits its LIVE confirmation.
        """
        code = self.code.value.strip()
        if not code:
            self._show("error", "enter a stock code, e.g. 600000.SH")
            return None
        volume = int(self.volume.value or 0)
        price = float(self.price.value) if self.price.value else None
        side = self.side.value
        if side == "BUY":
            amount = float(self.amount.value) if self.amount.value else None
            if volume <= 0 and amount is None:
                self._show("error", "a buy needs a volume or an amount")
                return None
            size = f"{volume:,d} shares" if volume > 0 else f"for ¥{amount:,.2f} (shares sized by the engine)"
            label = f"BUY {code} " + (f"{volume} shares" if volume > 0 else f"for ¥{amount:,.0f}")

            def send() -> str:
                return self.engine.buy(code, volume if volume > 0 else None, amount=amount, price=price)

        else:
            if volume <= 0:
                self._show("error", "a sell needs a volume")
                return None
            size = f"{volume:,d} shares"
            label = f"SELL {code} {volume} shares"

            def send() -> str:
                return self.engine.sell(code, volume, price=price)

        def dispatch() -> Future[Any]:
            return self.runner.submit(label, send, self._show, done=lambda order_id: f"{label}: order {order_id} sent")

        snapshot = self.watch.snapshot if self.watch is not None else None
        if not live_or_unknown(snapshot):
            return dispatch()
        at = f"at ¥{price:,.2f}" if price is not None else "at the latest price"
        unknown = "" if snapshot is not None else "The engine's mode is not known yet: treated as LIVE. "
        self.confirm.ask(
            dispatch,
            f'<span style="color: #c00">{unknown}<b>Real order</b>: {side} <b>{html.escape(code)}</b> '
            f"{size} {at} to the LIVE account {account_label(snapshot)}?</span>",
        )
        self._show("info", f"confirm the LIVE order: {label}")
        return None
