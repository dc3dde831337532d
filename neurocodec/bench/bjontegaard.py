"""Bjontegaard deltas: how much rate (or quality) one rate-distortion curve saves over another."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def _fit_delta(anchor: np.ndarray, test: np.ndarray) -> float:
    """Mean of (test - anchor) of cubic fits y(x) over the overlapping x range; nan if ill-posed."""
    curves = []
    for c in (anchor, test):
        c = c[np.all(np.isfinite(c), axis=1)]
        if len(np.unique(c[:, 0])) < 4:
            return math.nan
        curves.append(c)
    lo = max(c[:, 0].min() for c in curves)
    hi = min(c[:, 0].max() for c in curves)
    if not hi > lo:
        return math.nan
    integrals = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # poorly conditioned fits (RankWarning): still usable
        for c in curves:
            antider = np.polyint(np.polyfit(c[:, 0], c[:, 1], 3))
            integrals.append(np.polyval(antider, hi) - np.polyval(antider, lo))
    return float((integrals[1] - integrals[0]) / (hi - lo))


def bd_rate(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]) -> float:
    """Bjontegaard delta rate (%) of `test` vs `anchor`; points are (bpp, quality in dB).

    Fits log-rate as a cubic in quality for each curve and compares the mean
    log-rates over the overlapping quality range. Negative: `test` needs fewer bits.
    nan when the curves do not overlap or have fewer than 4 points.
    """
    a = np.array([(q, math.log(r)) for r, q in anchor if r > 0], dtype=np.float64).reshape(-1, 2)
    t = np.array([(q, math.log(r)) for r, q in test if r > 0], dtype=np.float64).reshape(-1, 2)
    d = _fit_delta(a, t)
    return float((math.exp(d) - 1) * 100) if math.isfinite(d) else math.nan


def bd_psnr(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]) -> float:
    """Bjontegaard delta quality (dB) of `test` vs `anchor` at equal rate; points are (bpp, dB).

    Fits quality as a cubic in log-rate and averages the difference over the
    overlapping rate range. Positive: `test` is better.
    """
    a = np.array([(math.log(r), q) for r, q in anchor if r > 0], dtype=np.float64).reshape(-1, 2)
    t = np.array([(math.log(r), q) for r, q in test if r > 0], dtype=np.float64).reshape(-1, 2)
    return _fit_delta(a, t)


def rate_at_psnr(curve: Sequence[tuple[float, float]], target: float) -> float:
    """bpp a codec needs for `target` dB, interpolated in log-rate (nan outside the curve)."""
    c = np.array(sorted(curve, key=lambda p: p[1]))
    if not c[0, 1] <= target <= c[-1, 1]:
        return float("nan")
    return float(np.exp(np.interp(target, c[:, 1], np.log(c[:, 0]))))
