"""HTML rendering of the panels' tables and status lines (plain strings for ``widgets.HTML``).

Colours follow the A-share convention: gains red, losses green.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from miniqmt_lab.market import SHANGHAI

GAIN = "#d62728"
LOSS = "#2ca02c"
MUTED = "#888"
OK = "#1a7f37"  # health and success colours, distinct from the gain/loss pair
BAD = "#b00020"

TABLE_CSS = """<style>
.mq-table {border-collapse: collapse; font-size: 12px; font-family: var(--jp-code-font-family, monospace);}
.mq-table th {background: #f0f0f0; padding: 2px 8px; text-align: right; border-bottom: 1px solid #ccc;
  white-space: nowrap;}
.mq-table td {padding: 2px 8px; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap;}
.mq-table th.mq-left, .mq-table td.mq-left {text-align: left;}
.mq-empty {color: #888; font-style: italic; padding: 4px;}
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


def gain_colour(value: Any) -> str:
    if is_missing(value) or float(value) == 0:
        return ""
    return f"color: {GAIN if float(value) > 0 else LOSS}; font-weight: 600"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: Callable[[Any], str] = str
    style: Callable[[Any], str] | None = None
    left: bool = False


def render_table(
    frame: pd.DataFrame | None,
    columns: Sequence[Column],
    *,
    empty: str,
    css_class: str,
    row_style: Callable[[pd.Series], str] | None = None,
) -> str:
    """A styled ``<table>`` of the given columns; missing columns render as blanks, not errors."""
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
            text = html.escape(c.fmt(value)) if c.key in row.index else ""
            style = c.style(value) if (c.style is not None and c.key in row.index) else ""
            cls = ' class="mq-left"' if c.left else ""
            attr = f' style="{style}"' if style else ""
            cells.append(f"<td{cls}{attr}>{text}</td>")
        tr_style = row_style(row) if row_style is not None else ""
        tr_attr = f' style="{tr_style}"' if tr_style else ""
        rows.append(f"<tr{tr_attr}>{''.join(cells)}</tr>")
    return (
        f'{TABLE_CSS}<table class="mq-table {css_class}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_mapping(items: Sequence[tuple[str, str]], *, css_class: str) -> str:
    """Two-column key/value table (stats, the position at the replay cursor)."""
    body = "".join(
        f'<tr><td class="mq-left">{html.escape(k)}</td><td>{html.escape(v)}</td></tr>' for k, v in items
    )
    return f'{TABLE_CSS}<table class="mq-table {css_class}"><tbody>{body}</tbody></table>'


def message_html(level: str, text: str) -> str:
    colour = {"error": BAD, "ok": OK}.get(level, "#555")
    icon = {"error": "✖", "ok": "✔", "info": "…"}.get(level, "")
    return f'<span style="color: {colour}">{icon} {html.escape(text)}</span>' if text else ""
