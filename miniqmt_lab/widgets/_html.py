"""HTML rendering of the panels' tables and status lines (plain strings for ``widgets.HTML``).

Colours follow the A-share convention everywhere: up, gains and buys red; down, losses and sells green.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from miniqmt_lab.market import SHANGHAI

GAIN = "#d62728"  # up, gains, buys
LOSS = "#2ca02c"  # down, losses, sells
MUTED = "#888"
OK = "#1a7f37"  # health and success colours, distinct from the gain/loss pair
BAD = "#b00020"
WARN = "#b26a00"

GAIN_SCALE = [[0.0, "#1a9850"], [0.5, "#ffffbf"], [1.0, "#d73027"]]
"""Low values green, high values red: the heatmap colour scale of the A-share convention."""

RULE_COLOURS = {
    "entry": GAIN,
    "grid_buy": "#ff7f0e",
    "take_profit_initial": "#c51b7d",
    "take_profit_dynamic": "#8c1a11",
    "stop_loss": LOSS,
    "manual": "#7f7f7f",
}
"""Colour of each rule's trades in the panels' charts (a buy's marker points up, a sell's down): warm for
buys and profit-taking, green for the loss-taking stop loss."""

TABLE_CSS = """<style>
.mq-table {border-collapse: collapse; font-size: 12px; line-height: 1.35;
  font-family: var(--jp-code-font-family, monospace);}
.mq-table th {background: #f0f0f0; padding: 3px 5px; text-align: right; border-bottom: 1px solid #ccc;
  position: sticky; top: 0; z-index: 1; vertical-align: bottom;}
.mq-table td {padding: 2px 5px; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap;}
.mq-table th.mq-left, .mq-table td.mq-left {text-align: left;}
.mq-table td.mq-wrap {white-space: normal; min-width: 12em; max-width: 32em;}
.mq-scroll {overflow-y: auto; overflow-x: auto; border-bottom: 1px solid #eee;}
.mq-stale {color: #888; font-style: italic;}
.mq-stale small {font-size: 10px;}
.mq-empty {color: #888; font-style: italic; padding: 4px; line-height: 1.35;}
</style>"""


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt_number(value: Any, digits: int = 2) -> str:
    if is_missing(value):
        return "—"
    return f"{float(value):,.{digits}f}"


def fmt_int(value: Any) -> str:
    return "—" if is_missing(value) else f"{int(value):,d}"


def fmt_ratio(value: Any) -> str:
    return "—" if is_missing(value) else f"{float(value) * 100:+.2f}%"


def fmt_time(value: Any) -> str:
    if is_missing(value):
        return "—"
    stamp = pd.Timestamp(value)
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def fmt_clock(value: Any) -> str:
    """Time of day (Shanghai) for heartbeats, given as epoch seconds or a datetime."""
    if is_missing(value):
        return "—"
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(float(value), SHANGHAI)
    return pd.Timestamp(value).strftime("%H:%M:%S")


def fmt_bool(value: Any) -> str:
    return "✓" if (not is_missing(value) and bool(value)) else ""


def plural(n: int, noun: str) -> str:
    """``1 trade``, ``2 trades``, ``0 trades``."""
    return f"{n:,d} {noun}{'' if n == 1 else 's'}"


def gain_colour(value: Any) -> str:
    if is_missing(value) or float(value) == 0:
        return ""
    return f"color: {GAIN if float(value) > 0 else LOSS}; font-weight: 600"


def side_colour(value: Any) -> str:
    side = str(value).upper()
    return f"color: {GAIN}" if side == "BUY" else f"color: {LOSS}" if side == "SELL" else ""


@dataclass(frozen=True)
class Column:
    """One column of a table: ``fmt`` turns the value into text, ``style`` gives its CSS; ``cell`` instead
    renders the whole row's cell as HTML (escaped by it). ``wrap``: long text wraps instead of widening."""

    key: str
    header: str
    fmt: Callable[[Any], str] = str
    style: Callable[[Any], str] | None = None
    left: bool = False
    wrap: bool = False
    cell: Callable[[pd.Series], str] | None = None


def render_table(
    frame: pd.DataFrame | None,
    columns: Sequence[Column],
    *,
    empty: str,
    css_class: str,
    row_style: Callable[[pd.Series], str] | None = None,
    height: int | None = None,
) -> str:
    """A styled ``<table>`` of the given columns; missing columns render as blanks, not errors.

    With ``height`` (pixels) the table scrolls inside a box of at most that height, its header fixed.
    """
    if frame is None or frame.empty:
        return f'{TABLE_CSS}<div class="mq-empty {css_class}">{html.escape(empty)}</div>'
    head = "".join(
        f'<th class="mq-left">{html.escape(c.header)}</th>' if c.left else f"<th>{html.escape(c.header)}</th>"
        for c in columns
    )
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            value = row.get(c.key)
            present = c.key in row.index
            if c.cell is not None:
                text = c.cell(row) if present else ""
            else:
                text = html.escape(c.fmt(value)) if present else ""
            style = c.style(value) if (c.style is not None and present) else ""
            classes = " ".join(name for name, on in (("mq-left", c.left), ("mq-wrap", c.wrap)) if on)
            cls = f' class="{classes}"' if classes else ""
            attr = f' style="{style}"' if style else ""
            cells.append(f"<td{cls}{attr}>{text}</td>")
        tr_style = row_style(row) if row_style is not None else ""
        tr_attr = f' style="{tr_style}"' if tr_style else ""
        rows.append(f"<tr{tr_attr}>{''.join(cells)}</tr>")
    table = (
        f'<table class="mq-table {css_class}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    if height is not None:
        table = f'<div class="mq-scroll" style="max-height: {int(height)}px">{table}</div>'
    return f"{TABLE_CSS}{table}"


def render_mapping(
    items: Sequence[tuple[str, str]], *, css_class: str, styles: dict[str, str] | None = None
) -> str:
    """Two-column key/value table (stats, the position at the replay cursor); ``styles``: CSS by key."""
    styles = styles or {}

    def value_cell(key: str, value: str) -> str:
        style = styles.get(key, "")
        return f'<td style="{style}">{html.escape(value)}</td>' if style else f"<td>{html.escape(value)}</td>"

    body = "".join(f'<tr><td class="mq-left">{html.escape(k)}</td>{value_cell(k, v)}</tr>' for k, v in items)
    return f'{TABLE_CSS}<table class="mq-table {css_class}"><tbody>{body}</tbody></table>'


def message_html(level: str, text: str) -> str:
    colour = {"error": BAD, "ok": OK}.get(level, "#555")
    icon = {"error": "✖", "ok": "✔", "info": "…"}.get(level, "")
    return f'<span style="color: {colour}">{icon} {html.escape(text)}</span>' if text else ""
