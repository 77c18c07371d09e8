"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest

from miniqmt_lab import market


@pytest.fixture
def userdata(tmp_path):
    """An empty ``userdata_mini`` folder, as the QMT client has one."""
    folder = tmp_path / "userdata_mini"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def compiled_fees():
    """The xtquant double prices fees and price limits with the numba kernel: load it before any call
    runs under a timeout (a first call takes about a second)."""
    market.order_fees(1.0, "BUY")
    market.limit_prices("600000.SH", 10.0)
