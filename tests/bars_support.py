"""Helpers of the bar-store tests: small real-shaped frames and files written the way vendors write them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def small_bars() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stock_code": ["600000.SH", "000001.SZ", "600000.SH", "000001.SZ"],
            "stock_name": ["甲", "乙", "甲", "乙"],
            "date": ["2024-01-02", "2024-01-02", "2024-01-03", "2024-01-03"],
            "open": [10.0, 20.0, 10.5, 19.8],
            "high": [10.8, 20.5, 10.9, 20.0],
            "low": [9.9, 19.5, 10.2, 19.0],
            "close": [10.5, 19.8, 10.3, 19.2],
            "volume": [1000.0, 2000.0, 1500.0, 2500.0],
            "amount": [10_400.0, 39_600.0, 15_600.0, 48_500.0],
        }
    )


def plain(bars: pd.DataFrame) -> pd.DataFrame:
    """``bars`` as the frame that was written: categorical codes and names back to text, no attrs."""
    out = bars.astype({"stock_code": object, "stock_name": object})
    out["stock_name"] = out["stock_name"].where(out["stock_name"].notna(), None)
    out.attrs = {}
    return out


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """A file as a vendor writes it: the given lines, no index column, no trailing spaces."""
    path.write_text("\n".join(line.strip() for line in text.strip().splitlines()) + "\n", encoding=encoding)
    return path
