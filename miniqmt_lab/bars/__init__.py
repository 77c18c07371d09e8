"""Bar data: the DuckDB bar store with its corporate actions and instruments, vendor-file import,
adjusted prices for research, and a seeded synthetic sample for running without a data feed."""

from miniqmt_lab.bars.importing import ImportReport
from miniqmt_lab.bars.sample import SYNTHETIC_NOTICE, default_store, sample_bars, sample_codes, trading_days
from miniqmt_lab.bars.store import BarStore
from miniqmt_lab.bars.tables import AttachedTable
from miniqmt_lab.bars.validate import (
    AmbiguousDates,
    InvalidActionData,
    InvalidBarData,
    SkippedRows,
    bar_columns,
    suspended_mask,
    validate_bars,
)

__all__ = [
    "SYNTHETIC_NOTICE",
    "AmbiguousDates",
    "AttachedTable",
    "BarStore",
    "ImportReport",
    "InvalidActionData",
    "InvalidBarData",
    "SkippedRows",
    "bar_columns",
    "default_store",
    "sample_bars",
    "sample_codes",
    "suspended_mask",
    "trading_days",
    "validate_bars",
]
