"""Gain units (Cui et al. 2021): one network, every quality.

A learned per-channel gain vector per quality level scales y before rounding
and its inverse after. Quality 0..100 spans the trained ladder linearly;
between two levels the stored integer gains are interpolated in integer
arithmetic (so every machine agrees), and the rate-distortion trade-off lambda
in log space (for refinement, which optimises the loss the level was trained for).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..settings import Q100_MAX as _STEPS  # quality x 100 spans the ladder in this many steps

GAIN_FRAC_BITS = 16  # stored gains are Q16 integers


def _position(levels: int, q100: int) -> tuple[int, int]:
    """The ladder level at or below quality q100, and the fraction (of _STEPS) towards the next one."""
    return divmod(q100 * (levels - 1), _STEPS)


def gains_for(gains: torch.Tensor, q100: int) -> torch.Tensor:
    """Integer Q16 gain per latent channel at quality q100 (gains: (levels, m) Q16), interpolated exactly."""
    levels = gains.shape[0]
    i, frac = _position(levels, q100)
    if i >= levels - 1:
        return gains[levels - 1].clone()
    return (gains[i] * (_STEPS - frac) + gains[i + 1] * frac + _STEPS // 2) // _STEPS


def lambda_for(lambdas: Sequence[float], q100: int) -> float:
    """The rate-distortion trade-off at quality q100: log-lambda interpolated like the gains."""
    levels = len(lambdas)
    i, frac = _position(levels, q100)
    if i >= levels - 1:
        return float(lambdas[-1])
    t = frac / _STEPS
    return math.exp((1 - t) * math.log(lambdas[i]) + t * math.log(lambdas[i + 1]))
