"""Integer probability tables for the entropy coder, built once at export.

The coder never evaluates a transcendental function at run time: every
distribution it uses is an integer table stored with the weights, so encoder
and decoder agree on any machine.

* y: 64 zero-mean discretised Gaussians with log-spaced standard deviations;
  each latent picks one by comparing its (gained) predicted scale, an exact
  integer, with integer thresholds.
* z: one table per channel from the learned factorized density.

Every table has an escape entry as its last symbol: a value outside the
table's range is coded as the escape and sent in the overflow stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .densities import SCALE_MIN, FactorizedDensity

COUNT_BITS = 20  # each table's counts sum to 2**COUNT_BITS
SCALE_LEVELS = 64
SCALE_MAX = 256.0  # the tables' scales span SCALE_MIN (the training models' floor) to this
SCALE_FRAC_BITS = 24  # thresholds compare with Q8 scale x Q16 gain = Q24
GAUSS_RANGE = 8.0  # table covers +-8 standard deviations (plus escape)
Z_TAIL = 1e-6  # z tables drop at most this much mass on each side (to the escape)


@dataclass
class TableSet:
    """Many integer PMFs packed into one array.

    counts[offsets[i] : offsets[i] + lengths[i]] is table i; its first entry is
    the symbol `lows[i]`, its last entry the escape.
    """

    counts: np.ndarray  # int32
    offsets: np.ndarray  # int64
    lengths: np.ndarray  # int64
    lows: np.ndarray  # int64

    def table(self, i: int) -> np.ndarray:
        o = int(self.offsets[i])
        return self.counts[o : o + int(self.lengths[i])]

    def to_dict(self) -> dict:
        return {
            k: torch.from_numpy(np.ascontiguousarray(getattr(self, k)))
            for k in ("counts", "offsets", "lengths", "lows")
        }

    @classmethod
    def from_dict(cls, d: dict) -> TableSet:
        return cls(
            d["counts"].numpy().astype(np.int32),
            d["offsets"].numpy().astype(np.int64),
            d["lengths"].numpy().astype(np.int64),
            d["lows"].numpy().astype(np.int64),
        )

    @classmethod
    def pack(cls, pmfs: list[np.ndarray], lows: list[int]) -> TableSet:
        counts = [to_counts(p) for p in pmfs]
        lengths = np.array([len(c) for c in counts], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls(np.concatenate(counts).astype(np.int32), offsets, lengths, np.array(lows, dtype=np.int64))


def to_counts(pmf: np.ndarray) -> np.ndarray:
    """Probabilities (escape last) -> integer counts >= 1 summing to 2**COUNT_BITS."""
    total = 1 << COUNT_BITS
    pmf = np.maximum(np.asarray(pmf, dtype=np.float64), 0)
    counts = np.maximum(1, np.floor(pmf / pmf.sum() * (total - len(pmf)))).astype(np.int64)
    counts[int(np.argmax(counts))] += total - counts.sum()
    return counts


def scale_table() -> np.ndarray:
    """Standard deviations of the y tables, log-spaced."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


def scale_thresholds() -> np.ndarray:
    """Integer Q24 boundaries between neighbouring y tables (geometric midpoints)."""
    s = scale_table()
    mids = np.sqrt(s[1:] * s[:-1])
    return np.round(mids * 2.0**SCALE_FRAC_BITS).astype(np.int64)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in np.ravel(x)]).reshape(np.shape(x))


def gaussian_tables() -> TableSet:
    pmfs, lows = [], []
    for s in scale_table():
        r = max(1, math.ceil(GAUSS_RANGE * s))
        n = np.arange(-r, r + 1, dtype=np.float64)
        pmf = _normal_cdf((n + 0.5) / s) - _normal_cdf((n - 0.5) / s)
        escape = 2 * _normal_cdf(np.array([-(r + 0.5) / s]))[0]
        pmfs.append(np.append(pmf, escape))
        lows.append(-r)
    return TableSet.pack(pmfs, lows)


@torch.no_grad()
def z_tables(density: FactorizedDensity, search: int = 512) -> TableSet:
    grid = torch.arange(-search, search + 1, dtype=torch.float64)
    c = density.channels
    lo_cdf = density.cdf(grid.expand(c, -1) - 0.5).numpy()
    hi_cdf = density.cdf(grid.expand(c, -1) + 0.5).numpy()
    pmfs, lows = [], []
    for ch in range(c):
        keep = np.nonzero((hi_cdf[ch] > Z_TAIL) & (lo_cdf[ch] < 1 - Z_TAIL))[0]
        a, b = (int(keep[0]), int(keep[-1])) if len(keep) else (search, search)
        pmf = hi_cdf[ch, a : b + 1] - lo_cdf[ch, a : b + 1]
        escape = lo_cdf[ch, a] + (1 - hi_cdf[ch, b])
        pmfs.append(np.append(pmf, escape))
        lows.append(int(grid[a]))
    return TableSet.pack(pmfs, lows)
