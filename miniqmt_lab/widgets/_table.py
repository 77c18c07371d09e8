"""A table that stays one size: rows filtered by words, shown a page at a time in a scrolling box.

The rows and the rendering come from outside (:meth:`PagedTable.show`); what the reader chose (the
filter words, the page) lives in a :class:`TableView` state object the widgets are linked to, so a
refresh of the rows twice a second keeps the reader's filter and page. Filtering and paging run in
the kernel: nothing is sent to the browser but the page on show, and no JavaScript library is needed
offline.
"""

from __future__ import annotations

import html
import math
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as w
import pandas as pd
import traitlets

from miniqmt_lab.widgets._binding import Guard


def row_text(frame: pd.DataFrame) -> pd.Series:
    """Each row's values as one lower-case string, the haystack the filter words are looked up in."""
    if frame.empty or len(frame.columns) == 0:
        return pd.Series("", index=frame.index, dtype=object)
    columns = [
        # rounded as shown: 10.290000000000001 must not match "000001"
        (frame[c].round(4) if pd.api.types.is_float_dtype(frame[c]) else frame[c]).astype(str)
        for c in frame.columns
    ]
    joined = columns[0]
    for column in columns[1:]:
        joined = joined + "\t" + column
    return joined.str.lower()


def filter_rows(frame: pd.DataFrame, query: str, text: pd.Series | None = None) -> pd.DataFrame:
    """The rows that contain every word of ``query`` (case-insensitive) in some column."""
    words = query.lower().split()
    if not words or frame.empty:
        return frame
    haystack = row_text(frame) if text is None else text
    mask = pd.Series(True, index=frame.index)
    for word in words:
        mask &= haystack.str.contains(word, regex=False)
    return frame[mask.to_numpy()]


class TableView(traitlets.HasTraits):
    """What the reader chose: filter words and the page (0 is the first)."""

    query = traitlets.Unicode("")
    page = traitlets.Int(0)
    page_size = traitlets.Int(50)

    @traitlets.validate("page")
    def _page_not_negative(self, proposal: dict[str, Any]) -> int:
        return max(0, int(proposal["value"]))

    @traitlets.validate("page_size")
    def _page_size_positive(self, proposal: dict[str, Any]) -> int:
        size = int(proposal["value"])
        if size < 1:
            raise traitlets.TraitError(f"page_size must be >= 1, got {size}")
        return size


class PagedTable(w.VBox):
    """Filter box, page buttons, "rows a-b of n", and the page's rows in a box at most ``height`` px high.

    ``render(rows, height)`` turns the page's rows into HTML (``render_table``); ``noun`` names a row
    in the counts ("trade": "1 trade", "3 trades").
    """

    def __init__(
        self,
        render: Callable[[pd.DataFrame | None, int], str],
        *,
        noun: str,
        css_class: str,
        page_size: int = 50,
        height: int = 320,
        placeholder: str = "filter: words all rows shown must contain",
    ) -> None:
        self.view = TableView(page_size=page_size)
        self._render = render
        self._noun = noun
        self._height = height
        self._frame: pd.DataFrame | None = None
        self._text: pd.Series | None = None  # row_text of _frame, computed once per frame
        self._lock = threading.RLock()  # the poll thread brings rows, the UI thread filter and page
        self._guard = Guard()
        self.filter = w.Text(placeholder=placeholder, continuous_update=True,
                             layout=w.Layout(width="24em"))
        self.prev_button = w.Button(icon="chevron-left", tooltip="newer / previous page",
                                    layout=w.Layout(width="36px"))
        self.next_button = w.Button(icon="chevron-right", tooltip="next page", layout=w.Layout(width="36px"))
        self.info = w.HTML("")
        self.html = w.HTML(render(None, height))
        for widget, css in ((self.filter, "mq-filter"), (self.prev_button, "mq-prev-page"),
                            (self.next_button, "mq-next-page"), (self.info, "mq-rows-info")):
            widget.add_class(css)
        self._link = w.link((self.view, "query"), (self.filter, "value"))
        self.prev_button.on_click(lambda _: self.turn(-1))
        self.next_button.on_click(lambda _: self.turn(+1))
        self.view.observe(self._query_changed, names="query")
        self.view.observe(self._page_changed, names=["page", "page_size"])
        super().__init__([
            w.HBox([self.filter, self.prev_button, self.next_button, self.info],
                   layout=w.Layout(align_items="center", flex_flow="row wrap")),
            self.html,
        ])
        self.add_class(css_class)
        self._redraw()

    # -- model -> view ------------------------------------------------------------------------------

    def show(self, frame: pd.DataFrame | None) -> None:
        """Show new rows (already in display order), keeping the reader's filter and page."""
        with self._lock:
            self._frame, self._text = frame, None
            self._redraw()

    @property
    def rows(self) -> pd.DataFrame | None:
        """Every row the filter keeps, on any page."""
        with self._lock:
            return self._filtered()

    @property
    def pages(self) -> int:
        with self._lock:
            rows = self._filtered()
            return max(1, math.ceil((0 if rows is None else len(rows)) / self.view.page_size))

    def _filtered(self) -> pd.DataFrame | None:
        frame = self._frame
        if frame is None or not self.view.query.strip():
            return frame
        if self._text is None:
            self._text = row_text(frame)
        return filter_rows(frame, self.view.query, self._text)

    def _redraw(self) -> None:
        with self._lock:
            rows = self._filtered()
            total = 0 if rows is None else len(rows)
            size = self.view.page_size
            pages = max(1, math.ceil(total / size))
            page = min(self.view.page, pages - 1)
            if page != self.view.page:
                with self._guard:
                    self.view.page = page
            chunk = None if rows is None else rows.iloc[page * size:(page + 1) * size]
            self.html.value = self._render(chunk, self._height)
            self.prev_button.disabled = page == 0
            self.next_button.disabled = page >= pages - 1
            self.info.value = self._info(page, total, pages)

    def _info(self, page: int, total: int, pages: int) -> str:
        size = self.view.page_size
        everything = 0 if self._frame is None else len(self._frame)
        if total == 0:
            text = f"no {self._noun}s match" if everything else ""
        else:
            first, last = page * size + 1, min(total, (page + 1) * size)
            shown = f"{first:,d}–{last:,d} of " if pages > 1 else ""
            text = f"{shown}{total:,d} {self._noun}{'' if total == 1 else 's'}"
            if pages > 1:
                text += f" · page {page + 1} of {pages}"
        if total != everything:
            text += f" (filtered from {everything:,d})"
        return f'<span style="font-size: 12px; color: #555">{html.escape(text)}</span>'

    # -- view -> model ------------------------------------------------------------------------------

    def turn(self, pages: int) -> None:
        """Move by ``pages`` (negative: back), within the pages there are."""
        with self._lock:
            self.view.page = min(max(0, self.view.page + pages), self.pages - 1)

    def _query_changed(self, change: dict[str, Any]) -> None:
        with self._lock:
            if self.view.page != 0:
                with self._guard:  # a new filter starts at its first page: one redraw, below
                    self.view.page = 0
            self._redraw()

    def _page_changed(self, change: dict[str, Any]) -> None:
        if not self._guard:
            self._redraw()

    def close(self) -> None:
        if self.comm is not None:  # ipywidgets calls close() again on garbage collection
            self._link.unlink()
        super().close()
