"""Indicator kernels against pandas, with numba on and off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from miniqmt_lab import indicators
from miniqmt_lab.indicators import (
    ema_2d_nb,
    ema_nb,
    golden_cross_2d_nb,
    golden_cross_nb,
    macd,
    macd_2d_nb,
    macd_entries,
    macd_nb,
    sma_2d_nb,
    sma_nb,
)

REPO = Path(__file__).resolve().parents[1]


def plain(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """The kernel as plain Python (it already is one when the suite runs with NUMBA_DISABLE_JIT=1)."""
    return getattr(kernel, "py_func", kernel)


def random_closes(seed: int, n: int = 300, leading_nans: int = 7, gaps: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 20.0 + np.cumsum(rng.normal(0.0, 0.4, n))
    x[:leading_nans] = np.nan
    if gaps:
        x[rng.random(n) < 0.1] = np.nan
    return x


def pandas_macd(x: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, ...]:
    s = pd.Series(x)
    dif = s.ewm(span=fast, adjust=False).mean() - s.ewm(span=slow, adjust=False).mean()
    dea = dif.ewm(span=signal, adjust=False).mean()
    return dif.to_numpy(), dea.to_numpy(), (dif - dea).to_numpy()


@pytest.mark.parametrize("span", [1, 2, 3, 5, 9, 12, 26, 60])
@pytest.mark.parametrize("gaps", [False, True])
def test_ema_is_pandas_ewm_adjust_false(span: int, gaps: bool) -> None:
    for seed in range(5):
        x = random_closes(seed, leading_nans=seed, gaps=gaps)
        expected = pd.Series(x).ewm(span=span, adjust=False).mean().to_numpy()
        np.testing.assert_array_equal(ema_nb(x, span), expected)
        np.testing.assert_array_equal(plain(ema_nb)(x, span), expected)


def test_ema_is_seeded_with_first_finite_value() -> None:
    x = np.array([np.nan, np.nan, 10.0, 12.0])
    out = ema_nb(x, 3)
    assert np.isnan(out[:2]).all()
    assert out[2] == 10.0
    assert out[3] == pytest.approx(10.0 + 0.5 * 2.0)


def test_ema_all_nan_and_empty() -> None:
    assert np.isnan(ema_nb(np.full(4, np.nan), 12)).all()
    assert ema_nb(np.empty(0), 12).shape == (0,)


def test_bad_span_and_window_raise() -> None:
    with pytest.raises(ValueError, match="span"):
        ema_nb(np.ones(3), 0)
    with pytest.raises(ValueError, match="window"):
        sma_nb(np.ones(3), 0)


@pytest.mark.parametrize("window", [1, 5, 20])
def test_sma_is_pandas_rolling_mean(window: int) -> None:
    x = random_closes(3, gaps=True)
    expected = pd.Series(x).rolling(window).mean().to_numpy()
    np.testing.assert_allclose(sma_nb(x, window), expected, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(plain(sma_nb)(x, window), expected, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5)])
def test_macd_matches_pandas(fast: int, slow: int, signal: int) -> None:
    x = random_closes(11, leading_nans=30)
    for got, want in zip(macd_nb(x, fast, slow, signal), pandas_macd(x, fast, slow, signal), strict=True):
        np.testing.assert_array_equal(got, want)


def test_golden_cross_on_crafted_series() -> None:
    dif = np.array([-1.0, -0.5, 0.5, 1.0, 0.0, -1.0, 1.0, 1.0])
    dea = np.zeros(8)
    # up through dea on days 2 and 6; the way down on days 4-5 is no golden cross
    expected = np.array([False, False, True, False, False, False, True, False])
    np.testing.assert_array_equal(golden_cross_nb(dif, dea), expected)
    np.testing.assert_array_equal(plain(golden_cross_nb)(dif, dea), expected)


def test_golden_cross_from_equality_counts_and_first_day_never() -> None:
    # dif[t-1] <= dea[t-1] includes equality; day 0 has no yesterday
    dif = np.array([5.0, 1.0, 2.0])
    dea = np.array([0.0, 1.0, 1.0])
    np.testing.assert_array_equal(golden_cross_nb(dif, dea), [False, False, True])


def test_golden_cross_ignores_nan_neighbours() -> None:
    dif = np.array([np.nan, 1.0, -1.0, np.nan, 1.0])
    dea = np.zeros(5)
    np.testing.assert_array_equal(golden_cross_nb(dif, dea), [False, False, False, False, False])


def test_2d_kernels_work_column_by_column() -> None:
    close = np.column_stack([random_closes(s, leading_nans=s * 3) for s in range(4)])
    for col in range(4):
        np.testing.assert_array_equal(ema_2d_nb(close, 12)[:, col], ema_nb(close[:, col], 12))
        np.testing.assert_array_equal(sma_2d_nb(close, 5)[:, col], sma_nb(close[:, col], 5))
    dif, dea, hist = macd_2d_nb(close, 12, 26, 9)
    for col in range(4):
        want_dif, want_dea, want_hist = pandas_macd(close[:, col])
        np.testing.assert_array_equal(dif[:, col], want_dif)
        np.testing.assert_array_equal(dea[:, col], want_dea)
        np.testing.assert_array_equal(hist[:, col], want_hist)
    crosses = golden_cross_2d_nb(dif, dea)
    for col in range(4):
        np.testing.assert_array_equal(crosses[:, col], golden_cross_nb(dif[:, col], dea[:, col]))


def test_macd_entries_keeps_labels_and_shapes() -> None:
    index = pd.bdate_range("2024-01-01", periods=300)
    frame = pd.DataFrame(
        {code: random_closes(i, leading_nans=0) for i, code in enumerate(["000001.SZ", "600000.SH"])},
        index=index,
    )
    entries = macd_entries(frame)
    assert isinstance(entries, pd.DataFrame)
    assert entries.index.equals(index) and list(entries.columns) == list(frame.columns)
    assert entries.dtypes.eq(bool).all()
    assert entries.to_numpy().sum() > 0
    for code in frame.columns:
        dif, dea, _ = pandas_macd(frame[code].to_numpy())
        want = (dif[:-1] <= dea[:-1]) & (dif[1:] > dea[1:])
        np.testing.assert_array_equal(entries[code].to_numpy(), np.r_[False, want])

    series_entries = macd_entries(frame["600000.SH"])
    assert isinstance(series_entries, pd.Series)
    np.testing.assert_array_equal(series_entries.to_numpy(), entries["600000.SH"].to_numpy())
    assert macd_entries(frame.to_numpy()).shape == frame.shape
    assert macd_entries(frame["600000.SH"].to_numpy()).shape == (len(frame),)


def test_macd_wrapper_returns_frames() -> None:
    frame = pd.DataFrame({"a": random_closes(1, leading_nans=0)})
    dif, dea, hist = macd(frame)
    want_dif, want_dea, want_hist = pandas_macd(frame["a"].to_numpy())
    np.testing.assert_array_equal(dif["a"].to_numpy(), want_dif)
    np.testing.assert_array_equal(dea["a"].to_numpy(), want_dea)
    np.testing.assert_array_equal(hist["a"].to_numpy(), want_hist)


def test_3d_input_is_refused() -> None:
    with pytest.raises(ValueError, match="2-D"):
        macd_entries(np.ones((3, 3, 3)))


def test_module_does_not_import_vectorbt() -> None:
    code = "import sys, miniqmt_lab.indicators; print('vectorbt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert indicators.__name__ == "miniqmt_lab.indicators"


def test_plain_python_with_jit_disabled() -> None:
    script = textwrap.dedent(
        """
        import numpy as np, pandas as pd
        from miniqmt_lab import indicators as ind
        assert not hasattr(ind.ema_nb, "py_func"), "numba was not disabled"
        rng = np.random.default_rng(5)
        close = 10 + np.cumsum(rng.normal(0, 0.3, (200, 3)), axis=0)
        close[:4, 1] = np.nan
        frame = pd.DataFrame(close)
        s = frame.ewm(span=12, adjust=False).mean() - frame.ewm(span=26, adjust=False).mean()
        dea = s.ewm(span=9, adjust=False).mean()
        want = (s.shift() <= dea.shift()) & (s > dea)
        got = ind.macd_entries(frame)
        assert got.equals(want), (got.sum(), want.sum())
        np.testing.assert_allclose(ind.sma_2d_nb(close, 5), frame.rolling(5).mean().to_numpy())
        print("ok", int(got.to_numpy().sum()))
        """
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")
