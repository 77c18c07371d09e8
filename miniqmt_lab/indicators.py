"""Technical indicators: numba kernels over 1-D and 2-D (time x stocks) arrays, plus a thin pandas layer.

The kernels (``*_nb``) take only float arrays and ints, so the live engine and the backtest compute
the entry signal with the very same code. With ``NUMBA_DISABLE_JIT=1`` they run as plain Python.
This module must stay light: it is imported by the live engine, so it never imports vectorbt.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd
from numba import njit

ArrayOrFrame = TypeVar("ArrayOrFrame", np.ndarray, pd.DataFrame, pd.Series)


@njit(cache=True)
def ema_update_nb(weighted: float, old_weight: float, x: float, span: int) -> tuple[float, float]:
    """One step of :func:`ema_nb`: the average and the weight of its old part after observing ``x``.

    Start from ``(nan, 1.0)``. The market simulation steps each stock's MACD with this very function, so
    a stock's averages step by step equal ``ema_nb`` over its whole series.
    """
    # pandas derives alpha from the centre of mass; doing the same keeps results bit-identical.
    com = (span - 1.0) / 2.0
    alpha = 1.0 / (1.0 + com)
    if np.isnan(weighted):
        return (weighted if np.isnan(x) else x), old_weight
    old_weight *= 1.0 - alpha
    if np.isnan(x):
        return weighted, old_weight
    # pandas special-cases com == 1 (span 3) this way; only a gap makes it differ from alpha
    new_weight = 1.0 - old_weight if com == 1.0 else alpha
    # pandas skips the update when equal, so a constant series stays exactly constant
    if weighted != x:
        weighted = (old_weight * weighted + new_weight * x) / (old_weight + new_weight)
    return weighted, 1.0


@njit(cache=True)
def ema_nb(x: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average, identical to pandas ``ewm(span=span, adjust=False).mean()``.

    Leading NaNs stay NaN and the average is seeded with the first observation. An interior NaN
    repeats the previous value, and the observation after it gets the weight pandas gives it
    (``ignore_na=False``): the old average decays once more per missing step. So a NaN gap inside a
    wide frame weighs differently from the same closes without the gap; entry signals therefore run
    over each stock's own series of traded closes (:mod:`miniqmt_lab.marketsim`), never over a grid.
    """
    if span < 1:
        raise ValueError("span must be >= 1")
    out = np.empty(x.shape[0], dtype=np.float64)
    weighted = np.nan
    old_weight = 1.0
    for i in range(x.shape[0]):
        weighted, old_weight = ema_update_nb(weighted, old_weight, x[i], span)
        out[i] = weighted
    return out


@njit(cache=True)
def sma_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average, as pandas ``rolling(window).mean()``: NaN until a full NaN-free window."""
    if window < 1:
        raise ValueError("window must be >= 1")
    n = x.shape[0]
    out = np.full(n, np.nan, dtype=np.float64)
    for i in range(window - 1, n):
        total = 0.0
        complete = True
        for j in range(i - window + 1, i + 1):
            if np.isnan(x[j]):
                complete = False
                break
            total += x[j]
        if complete:
            out[i] = total / window
    return out


@njit(cache=True)
def macd_nb(
    close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(DIF, DEA, histogram): DIF = EMA(fast) - EMA(slow), DEA = EMA(signal) of DIF, hist = DIF - DEA.

    The histogram follows the TA-Lib convention; Chinese terminals plot twice this value.
    """
    dif = ema_nb(close, fast) - ema_nb(close, slow)
    dea = ema_nb(dif, signal)
    return dif, dea, dif - dea


@njit(cache=True)
def golden_cross_nb(dif: np.ndarray, dea: np.ndarray) -> np.ndarray:
    """True on t when dif[t-1] <= dea[t-1] and dif[t] > dea[t]; never on t = 0 nor next to a NaN."""
    n = dif.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    for t in range(1, n):
        out[t] = dif[t - 1] <= dea[t - 1] and dif[t] > dea[t]
    return out


@njit(cache=True)
def ema_2d_nb(x: np.ndarray, span: int) -> np.ndarray:
    """:func:`ema_nb` on every column of a (time x stocks) array."""
    out = np.empty(x.shape, dtype=np.float64)
    for col in range(x.shape[1]):
        out[:, col] = ema_nb(x[:, col], span)
    return out


@njit(cache=True)
def sma_2d_nb(x: np.ndarray, window: int) -> np.ndarray:
    """:func:`sma_nb` on every column of a (time x stocks) array."""
    out = np.empty(x.shape, dtype=np.float64)
    for col in range(x.shape[1]):
        out[:, col] = sma_nb(x[:, col], window)
    return out


@njit(cache=True)
def macd_2d_nb(
    close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`macd_nb` on every column of a (time x stocks) array."""
    dif = np.empty(close.shape, dtype=np.float64)
    dea = np.empty(close.shape, dtype=np.float64)
    for col in range(close.shape[1]):
        d, e, _ = macd_nb(close[:, col], fast, slow, signal)
        dif[:, col] = d
        dea[:, col] = e
    return dif, dea, dif - dea


@njit(cache=True)
def golden_cross_2d_nb(dif: np.ndarray, dea: np.ndarray) -> np.ndarray:
    """:func:`golden_cross_nb` on every column of two (time x stocks) arrays."""
    out = np.zeros(dif.shape, dtype=np.bool_)
    for col in range(dif.shape[1]):
        out[:, col] = golden_cross_nb(dif[:, col], dea[:, col])
    return out


def _as_2d_float(values: np.ndarray | pd.DataFrame | pd.Series) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        return arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D (time x stocks) input, got {arr.ndim} dimensions")
    return arr


def _like(template: ArrayOrFrame, values: np.ndarray) -> ArrayOrFrame:
    """Wrap a 2-D kernel result back into the shape and labels of the input."""
    if isinstance(template, pd.DataFrame):
        return pd.DataFrame(values, index=template.index, columns=template.columns)
    if isinstance(template, pd.Series):
        return pd.Series(values[:, 0], index=template.index, name=template.name)
    return values[:, 0] if np.ndim(template) == 1 else values


def macd(
    close: ArrayOrFrame, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[ArrayOrFrame, ArrayOrFrame, ArrayOrFrame]:
    """(DIF, DEA, hist) of closes given as a Series, a (time x stocks) DataFrame or an array."""
    dif, dea, hist = macd_2d_nb(_as_2d_float(close), fast, slow, signal)
    return _like(close, dif), _like(close, dea), _like(close, hist)


def macd_entries(close: ArrayOrFrame, fast: int = 12, slow: int = 26, signal: int = 9) -> ArrayOrFrame:
    """Boolean MACD golden crosses, the default entry signal, shaped and labelled like ``close``."""
    dif, dea, _ = macd_2d_nb(_as_2d_float(close), fast, slow, signal)
    return _like(close, golden_cross_2d_nb(dif, dea))
