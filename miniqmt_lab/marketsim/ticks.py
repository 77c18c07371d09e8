"""When the ticks of a bar are seen (rules.md, "Bars to ticks"), for the engine's replay clock and the
backtest's signal records alike.

Daily bars tick at 09:30, 10:30, 13:30 and 14:57 (close only: 14:57) and their trades are stamped with the
date at 15:00; a minute bar ending at ``t`` ticks at ``t - 45 s``, ``t - 30 s``, ``t - 15 s`` and ``t``
(close only: ``t``) and is stamped ``t``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

DAILY_TICK_TIMES = (dt.time(9, 30), dt.time(10, 30), dt.time(13, 30), dt.time(14, 57))
DAILY_STAMP = pd.Timedelta(hours=15)
MINUTE_TICK_OFFSETS = (-45, -30, -15, 0)  # seconds from the minute bar's time


def tick_offsets(daily: bool, n_ticks: int) -> np.ndarray:
    """Offsets of a bar's ticks from its time (daily: from midnight of its date), ``timedelta64[us]``."""
    if daily:
        clock = DAILY_TICK_TIMES if n_ticks == 4 else DAILY_TICK_TIMES[-1:]
        seconds = [t.hour * 3600 + t.minute * 60 + t.second for t in clock]
    else:
        seconds = list(MINUTE_TICK_OFFSETS if n_ticks == 4 else (0,))
    return (np.array(seconds, dtype=np.int64) * 1_000_000).astype("timedelta64[us]")
