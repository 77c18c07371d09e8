"""Second-click confirmation for the actions that can move real money.

A :class:`ConfirmBox` stays hidden until asked; it then shows a question with a danger "Yes" and a
"Cancel" button. Yes runs the action it was asked with, once; Cancel, or a later ``dismiss`` (the
engine's state moved on, the form was edited), drops it. An engine whose mode is not yet known is
treated as live: nothing that could trade real money goes out unconfirmed.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as w


def live_or_unknown(snapshot: Any) -> bool:
    """True unless the snapshot says the engine trades on paper."""
    return snapshot is None or getattr(snapshot, "mode", None) != "paper"


def account_label(snapshot: Any) -> str:
    """The broker account of a snapshot, masked, as HTML."""
    account = getattr(getattr(snapshot, "broker", None), "account", "") or ""
    if not account:
        return "an account the engine has not reported yet"
    # the snapshot holds it masked already (docs/contracts.md); masking again is idempotent and keeps a
    # raw id off the screen should an adapter forget. Imported here: only a live engine needs it.
    from miniqmt_lab.schema import mask_account

    return f"<b>{html.escape(mask_account(account))}</b>"


class ConfirmBox(w.HBox):
    """A hidden question; CSS classes ``<prefix>-confirm-box``, ``<prefix>-confirm`` (Yes), ``<prefix>-cancel``."""

    def __init__(self, yes_label: str, *, css_prefix: str, question: str = "") -> None:
        self.question = w.HTML(question)
        self.yes = w.Button(description=yes_label, button_style="danger", layout=w.Layout(width="auto"))
        self.no = w.Button(description="Cancel")
        self._action: Callable[[], object] | None = None
        self._lock = threading.Lock()  # clicks come from the UI thread, dismissals also from the poll thread
        self.yes.on_click(lambda _: self._answer(True))
        self.no.on_click(lambda _: self._answer(False))
        super().__init__(
            [self.question, self.yes, self.no],
            layout=w.Layout(display="none", flex_flow="row wrap", align_items="center"),
        )
        self.add_class(f"{css_prefix}-confirm-box")
        self.yes.add_class(f"{css_prefix}-confirm")
        self.no.add_class(f"{css_prefix}-cancel")

    @property
    def asking(self) -> bool:
        return self.layout.display != "none"

    def ask(self, on_yes: Callable[[], object], question: str | None = None) -> None:
        """Show the box (with a new ``question`` when given); Yes will run ``on_yes``."""
        with self._lock:
            self._action = on_yes
        if question is not None:
            self.question.value = question
        self.layout.display = "flex"

    def dismiss(self) -> bool:
        """Hide the box and drop its action; True when a question was open."""
        with self._lock:
            action, self._action = self._action, None
        self.layout.display = "none"
        return action is not None

    def _answer(self, yes: bool) -> None:
        with self._lock:
            action, self._action = self._action, None
        self.layout.display = "none"
        if yes and action is not None:
            action()
