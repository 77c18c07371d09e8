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
    """The xtquant double prices fees with the numba kernel: compile it before any call runs under a timeout."""
    market.order_fees(1.0, "BUY")
