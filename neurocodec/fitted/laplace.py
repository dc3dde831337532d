"""The fitted mode's entropy model: exact integer tables of discretised Laplace distributions.

The context model gives every latent a Q8 mean and a Q8 log-scale. The coder codes the latent's offset
from its rounded mean, `centre`, with one of `SCALES * FRACTIONS` integer tables: the scale's index and
the mean's fraction (16 steps of 1/16) pick it. Whatever feeds the coder must be identical on every
machine, and libm's exp may differ by an ulp between CPUs, so the tables come from a few constants
computed with `decimal` (correctly rounded, platform independent) and then integer arithmetic only.
`bits` is the float twin the training code differentiates.
"""

from __future__ import annotations

import decimal
import math
from functools import cache

import numpy as np
import torch
from torch import Tensor

from ..entropy.tables import COUNT_BITS, TableSet

SCALES = 64  # tables' scales b_j = exp((LN_SCALE_MIN_Q8 + LN_SCALE_STEP_Q8 * j) / 256), j < SCALES
FRACTIONS = 16  # the mean's fraction in steps of 1/16: offsets (f - 7.5) / 16 from the centre
LN_SCALE_MIN_Q8 = -1024  # ln b = -4: b = 0.018
LN_SCALE_STEP_Q8 = 32  # 0.125 in ln b: up to ln b = 3.875, b = 48.2
LN_SCALE_MIN = LN_SCALE_MIN_Q8 / 256
LN_SCALE_MAX = (LN_SCALE_MIN_Q8 + (SCALES - 1) * LN_SCALE_STEP_Q8) / 256
TAIL = 10  # table j covers offsets -R_j..R_j, R_j = max(MIN_REACH, ceil(TAIL * b_j)); the rest goes to the escape
# A table entry is at least 2**-COUNT_BITS, and the training's float twin floors its probabilities at the same
# (at 2**-16 the fit believed that outliers cost 16 bits, and left 10 % more bits in the file than it estimated);
# outliers within MIN_REACH of the centre take no escape, even where the scale is tiny.
MIN_PROB_BITS = COUNT_BITS
MIN_REACH = 8

_STEP_BITS = LN_SCALE_STEP_Q8.bit_length() - 1
_FRACTION_BITS = FRACTIONS.bit_length() - 1
assert LN_SCALE_STEP_Q8 == 1 << _STEP_BITS and FRACTIONS == 1 << _FRACTION_BITS <= 256

_Q = 62  # fixed-point bits of the exps: the probabilities, in units of 2**-(_Q + 1), fit int64
_ONE = 1 << _Q


def _scale_constants(j: int) -> tuple[int, list[int], int]:
    """(R_j, [q**m for odd m < 32], r) with q = exp(-1 / (32 b_j)) and r = q**32 = exp(-1 / b_j), in Q62.

    The offsets' bin edges d +- 1/2 - delta_f are multiples of 1/32, so every exp a table needs is a
    product of these: a handful of correctly rounded exps per scale, the rest integer multiply-shifts.
    """
    ctx = decimal.Context(prec=40)
    ln_b = ctx.divide(decimal.Decimal(LN_SCALE_MIN_Q8 + LN_SCALE_STEP_Q8 * j), 256)  # exact
    b, inv_b = ctx.exp(ln_b), ctx.exp(-ln_b)
    reach = max(MIN_REACH, int(ctx.multiply(b, TAIL).to_integral_value(rounding=decimal.ROUND_CEILING)))

    def fixed(x: decimal.Decimal) -> int:
        return int(ctx.multiply(x, _ONE).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))

    q = fixed(ctx.exp(ctx.divide(-inv_b, 32)))
    q2 = (q * q) >> _Q
    odd = [q]
    for _ in range(FRACTIONS - 1):
        odd.append((odd[-1] * q2) >> _Q)
    return reach, odd, fixed(ctx.exp(-inv_b))


def _counts(probs: np.ndarray) -> np.ndarray:
    """Rows of probabilities in units of 2**-(_Q + 1) summing to 1 -> counts >= 1 summing to 2**COUNT_BITS.

    `tables.to_counts` in integers: floor, at least 1, the remainder to the (first) largest entry. The
    floor of p * free / 2**63 is taken in two halves of p so that nothing overflows int64.
    """
    total = 1 << COUNT_BITS
    free = total - probs.shape[1]
    high, low = probs >> 31, probs & ((1 << 31) - 1)
    counts = np.maximum(1, (high * free + ((low * free) >> 31)) >> (_Q + 1 - 31))
    rows = np.arange(len(counts))
    counts[rows, np.argmax(counts, axis=1)] += total - counts.sum(axis=1)
    return counts


def _scale_tables(j: int) -> tuple[int, np.ndarray]:
    """R_j and the counts (FRACTIONS, 2 R_j + 2) of scale j's tables: offsets -R_j..R_j, then the escape."""
    reach, odd, r = _scale_constants(j)
    rpow = [_ONE]
    for _ in range(reach):
        rpow.append((rpow[-1] * r) >> _Q)
    # tails[i, k] = q**(2i + 1 + 32k) = 2 x the mass beyond a bin edge (2i + 1 + 32k) / 32 away from the mean
    tails = np.array([[(qm * p) >> _Q for p in rpow] for qm in odd], dtype=np.int64)
    # Fraction f's mean is delta = (2f - 15) / 32. Above it, edge k - 1/2 (k >= 1) lies (32k - 1 - 2f) / 32
    # away: row 15 - f; below it, edge -(k - 1/2) lies (32k - 31 + 2f) / 32 away: row f.
    up, down = tails[::-1], tails
    centre = (_ONE - up[:, :1]) + (_ONE - down[:, :1])  # the probabilities telescope: rows sum to 2**63
    probs = np.concatenate(
        [(down[:, :-1] - down[:, 1:])[:, ::-1], centre, up[:, :-1] - up[:, 1:], up[:, -1:] + down[:, -1:]], axis=1
    )
    return reach, _counts(probs)


@cache
def tables() -> TableSet:
    """The SCALES * FRACTIONS tables, table id j * FRACTIONS + f; lows are -R_j. Built once per process."""
    reach, counts = zip(*(_scale_tables(j) for j in range(SCALES)))
    lengths = np.repeat([c.shape[1] for c in counts], FRACTIONS).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    lows = -np.repeat(np.array(reach, dtype=np.int64), FRACTIONS)
    return TableSet(np.concatenate([c.ravel() for c in counts]).astype(np.int32), offsets, lengths, lows)


def _relu(v: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """max(v, 0) of int64 values by shifts (the same for arrays and tensors, and cheaper than clip on arrays)."""
    return v & ~(v >> 63)


def params(mean_q8: Tensor | np.ndarray, log_scale_q8: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    """(centre, table id), int64, of Q8 means and log-scales of any shape: the coder codes x - centre.

    Shifts and masks (floors, also of negatives), as few calls as possible: the decoder runs this on every
    one of its ~2,300 chunks, on numpy arrays (a quarter of torch's cost per call on small arrays); int64
    tensors work the same.
    """
    t = mean_q8 + 128  # centre = floor(mean + 1/2); fraction + 128 = t mod 256, 16 per table
    step = (log_scale_q8 + (LN_SCALE_STEP_Q8 // 2 - LN_SCALE_MIN_Q8)) >> _STEP_BITS
    step = SCALES - 1 - _relu(SCALES - 1 - _relu(step))  # clamp to 0..SCALES-1 with operators only
    return t >> 8, (step << _FRACTION_BITS) | ((t & 255) >> (8 - _FRACTION_BITS))


def bits(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """-log2 P(x) of integer-valued x under Laplace(mean, exp(log_scale)) integrated over [x - 1/2, x + 1/2].

    The float twin of the tables for training: the scale is clamped to the tables' range and the probability
    floored at 2**-MIN_PROB_BITS, like the tables' entries. The mass comes from the tail nearer to x (in logs outside the mean's bin),
    so it neither cancels near 1 nor underflows far out, and every branch keeps finite gradients.
    """
    b = torch.exp(log_scale.clamp(LN_SCALE_MIN, LN_SCALE_MAX))
    s = (x - mean).abs()  # the mass depends only on the distance from the mean to the bin's centre
    # mean outside the bin: (exp(-(s - 1/2) / b) - exp(-(s + 1/2) / b)) / 2
    s_out = s.clamp(min=0.5)
    log_out = -(s_out - 0.5) / b + torch.log(-torch.expm1(-1 / b)) - math.log(2)
    # mean inside: 1 - exp(-(1/2 - s) / b) / 2 - exp(-(1/2 + s) / b) / 2, both terms written as expm1
    s_in = s.clamp(max=0.5)
    log_in = torch.log(-0.5 * (torch.expm1(-(0.5 - s_in) / b) + torch.expm1(-(0.5 + s_in) / b)))
    log_p = torch.where(s >= 0.5, log_out, log_in)
    return (-log_p / math.log(2)).clamp(max=MIN_PROB_BITS)
