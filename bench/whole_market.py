"""Bars of the whole-market shape for the benchmarks: 5,000 stocks x 1,000 days of seeded synthetic bars.

``miniqmt_lab.bars.sample_bars`` names at most 3,997 stocks, so the market is two samples of 2,500
with different seeds, the second moved to neighbouring code ranges of the same boards (600 -> 601,
000 -> 001, 300 -> 301, 688 -> 689, 830 -> 831): same limits, same lot rules, codes all distinct.
"""

from __future__ import annotations

import pandas as pd

from miniqmt_lab.bars import sample_bars

N_STOCKS, N_DAYS, SEED = 5000, 1000, 7
_NEIGHBOUR_RANGE = {"600": "601", "000": "001", "300": "301", "688": "689", "830": "831"}


def whole_market_bars(n_stocks: int = N_STOCKS, n_days: int = N_DAYS, seed: int = SEED) -> pd.DataFrame:
    """A long bar frame (the bar store's format) of ``n_stocks`` x ``n_days``, deterministic per seed."""
    half = n_stocks // 2
    first = sample_bars(half, n_days, seed=seed)
    second = sample_bars(n_stocks - half, n_days, seed=seed + 1)
    codes = second["stock_code"].astype(str)
    moved = codes.str[:3].map(_NEIGHBOUR_RANGE) + codes.str[3:]
    frame = pd.concat([first, second.assign(stock_code=moved)], ignore_index=True)
    if frame["stock_code"].nunique() != n_stocks:
        raise RuntimeError(f"expected {n_stocks} distinct codes, got {frame['stock_code'].nunique()}")
    return frame
