"""The control panel's status texts as HTML: mode banner, engine status line, trading state, threads."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from miniqmt_lab.widgets._html import (
    BAD,
    MUTED,
    OK,
    WARN,
    Column,
    fmt_clock,
    fmt_int,
    fmt_number,
    fmt_time,
    render_table,
)

THREAD_COLUMNS = (
    Column("name", "thread", left=True),
    Column("state", "state", left=True),
    Column("alive", "alive", lambda v: "✓" if v else "✖", lambda v: f"color: {OK if v else BAD}"),
    Column("last_heartbeat", "last heartbeat", fmt_clock),
    Column("restarts", "restarts", fmt_int, lambda v: f"color: {BAD}; font-weight: 600" if v else ""),
)

TRADING_STATES = ("active", "reducing", "halted")
"""From the most to the least permissive: ``active`` trades, ``reducing`` only sells, ``halted`` nothing."""

_STATE_LOOK = {
    "active": (OK, "orders allowed"),
    "reducing": (WARN, "sells only: no buy goes out"),
    "halted": (BAD, "no order goes out"),
}

_BANNER_STYLE = "padding: 6px 12px; border-radius: 4px; font-weight: 700; letter-spacing: 0.05em;"


_RANK = {state: i for i, state in enumerate(reversed(TRADING_STATES))}  # halted 0, reducing 1, active 2


def strictest(*states: str | None) -> str:
    """The least permissive of ``states``; an unknown state (None) counts as halted."""
    return min((state or "halted" for state in states), key=lambda state: _RANK.get(state, 0))


def loosens(current: str | None, wanted: str) -> bool:
    """True when ``wanted`` lets more orders out than ``current`` (an unknown state counts as halted)."""
    return _RANK[wanted] > _RANK.get(strictest(current), 0)


def banner_html(snapshot: Any) -> str:
    if snapshot is None:
        return f'<div style="{_BANNER_STYLE} background: #eee; color: #555">waiting for the engine…</div>'
    account = getattr(snapshot.broker, "account", "")
    if snapshot.mode == "live":
        detail = f" on account {html.escape(account)}" if account else ""
        return (
            f'<div class="mq-live" style="{_BANNER_STYLE} background: #c00; color: white; font-size: 1.3em">'
            f"LIVE — real orders{detail}</div>"
        )
    return (
        f'<div class="mq-paper" style="{_BANNER_STYLE} background: #e3ecf7; color: #1f4e79">'
        f"PAPER — simulated broker, no real orders</div>"
    )


def broker_html(broker: Any) -> str:
    """``QmtBroker connected (session 7)``: the broker's own message says the link word only once."""
    word, colour = ("connected", OK) if broker.connected else ("disconnected", BAD)
    weight = "" if broker.connected else "; font-weight: 600"
    message = str(broker.message or "").strip()
    said_word = message.lower().startswith(word)  # "connected (session 7)" already says it
    rest = message[len(word):] if said_word else f" ({message})" if message else ""
    text = f'{html.escape(broker.name)} <span style="color: {colour}{weight}">{word}</span>{html.escape(rest)}'
    if broker.outages:
        text += f", {broker.outages} outage{'' if broker.outages == 1 else 's'}"
    return text


def status_html(snapshot: Any) -> str:
    if snapshot is None:
        return ""
    running = (
        f'<b style="color: {OK}">RUNNING</b>' if snapshot.running else '<b style="color: #555">STOPPED</b>'
    )
    auto = "on" if snapshot.auto_trading else "off"
    parts = [
        running,
        f"broker: {broker_html(snapshot.broker)}",
        f"auto trading: <b>{auto}</b>",
        f"cash ¥{fmt_number(snapshot.cash)}",
        f"total asset ¥{fmt_number(snapshot.total_asset)}",
        f"data version {snapshot.version}",
        f"as of {fmt_time(snapshot.time)}",
    ]
    text = " · ".join(parts)
    if snapshot.last_error:
        text += f'<br><span style="color: {BAD}">last error: {html.escape(str(snapshot.last_error))}</span>'
    return f'<div style="font-size: 13px; line-height: 1.5">{text}</div>'


def trading_state_html(snapshot: Any) -> str:
    """The kill switch's state in capitals, what it means, and why it is so."""
    if snapshot is None:
        return ""
    state = str(getattr(snapshot, "trading_state", "active") or "active")
    colour, meaning = _STATE_LOOK.get(state, (BAD, "unknown state"))
    reason = str(getattr(snapshot, "state_reason", "") or "")
    why = f": {html.escape(reason)}" if reason else ""
    return (
        f'<div style="font-size: 13px; line-height: 1.5">trading <b style="color: {colour}">'
        f"{html.escape(state.upper())}</b> — {meaning}{why}</div>"
    )


def database_html(snapshot: Any) -> str:
    path = str(getattr(snapshot, "database", "") or "")
    if not path:
        return ""
    return (
        f'<div style="font-size: 12px; color: {MUTED}; line-height: 1.5; word-break: break-all">database: '
        f'<code title="the engine database this panel shows">{html.escape(path)}</code></div>'
    )


def threads_html(snapshot: Any) -> str:
    threads = () if snapshot is None else snapshot.threads
    frame = pd.DataFrame(
        [
            {
                "name": t.name,
                "state": str(t.state),
                "alive": t.alive,
                "last_heartbeat": t.last_heartbeat,
                "restarts": t.restarts,
            }
            for t in threads
        ]
    )
    return render_table(frame, THREAD_COLUMNS, empty="no engine threads", css_class="mq-threads-table")
