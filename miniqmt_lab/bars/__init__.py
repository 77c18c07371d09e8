"""Bar data: the DuckDB bar store and a seeded synthetic sample for running without a data feed."""

from miniqmt_lab.bars.sample import SYNTHETIC_NOTICE, default_store, sample_bars, sample_codes, trading_days
from miniqmt_lab.bars.store import BarStore, InvalidBarData, bar_columns, validate_bars

__all__ = [
    "SYNTHETIC_NOTICE",
    "BarStore",
    "InvalidBarData",
    "bar_columns",
    "default_store",
    "sample_bars",
    "sample_codes",
    "trading_days",
    "validate_bars",
]
