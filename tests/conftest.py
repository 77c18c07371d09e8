"""Fixtures shared by several test files."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

from miniqmt_lab import market


@pytest.fixture(autouse=True, scope="session")
def scratch_temp_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What the product writes to the temp folder (a kept fill's fallback file, say) goes to this
    run's own scratch folder, never to the machine's /tmp."""
    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("temp"))
    yield
    tempfile.tempdir = before


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
