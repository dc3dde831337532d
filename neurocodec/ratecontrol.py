"""Rate control: the quality that meets a file size, a bit rate or a PSNR, for any codec.

Quality is continuous (steps of 0.01), and file size and PSNR grow with it, so
a bisection over quality x 100 finds the target in about 14 steps. The codec
is anything that codes one prepared image at a quality (`Codable`): for the
autoencoder the analysis transform runs once, and each step only re-quantizes
and entropy-codes (size) or also runs the synthesis (PSNR). A size is a limit:
the result is the largest file that fits, never one byte more.

Encode effort is the API's business (`neurocodec.api`): it searches, refines
for the quality found and searches again; `better` says which of two results
meets the target better.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import NicError, NicWarning
from .metrics import psnr
from .settings import Q100_MAX as Q_MAX

_UNITS = {"": 1, "b": 1, "kb": 1000, "k": 1000, "kib": 1024, "mb": 1000**2, "m": 1000**2, "mib": 1024**2}


class Codable(Protocol):
    """One image, ready to be coded at any quality (quality x 100)."""

    @property
    def pixels(self) -> int: ...

    @property
    def source(self) -> np.ndarray: ...

    def code(self, q100: int) -> bytes: ...

    def reconstruct(self, q100: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Target:
    """Exactly one of: a size limit in bytes, a bit rate limit, a PSNR floor in dB."""

    size: int | None = None
    bpp: float | None = None
    psnr: float | None = None

    def __post_init__(self) -> None:
        given = [t for t in (self.size, self.bpp, self.psnr) if t is not None]
        if len(given) != 1:
            raise NicError("give only one target: a size, a bit rate or a PSNR")
        if self.bpp is not None and self.bpp <= 0:
            raise NicError(f"bits per pixel must be positive, not {self.bpp:g}")
        if self.size is not None and self.size <= 0:
            raise NicError(f"target size must be positive, not {self.size}")

    def limit(self, pixels: int) -> int | None:
        """The size limit in bytes for an image of `pixels` pixels (None: a PSNR target)."""
        if self.bpp is not None:
            limit = int(self.bpp * pixels / 8)
            if limit <= 0:
                raise NicError(f"target size must be positive, not {limit}")
            return limit
        return self.size


def parse_size(text: str) -> int:
    """'50KB' -> 50000 bytes; B, KB, KiB, MB, MiB (or k, m); a plain number is bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise NicError(f"cannot read size {text!r}: write it like 50000, 50KB, 48KiB or 1.5MB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _largest_fitting(c: Codable, limit: int) -> tuple[int, bytes]:
    """(quality x 100, file) of the largest file within `limit` bytes."""
    smallest = c.code(0)
    if len(smallest) > limit:
        raise NicError(f"cannot fit in {limit} bytes: the smallest file (quality 0) takes {len(smallest)} bytes")
    best = c.code(Q_MAX)
    if len(best) <= limit:
        warnings.warn(f"quality 100 already fits: {len(best)} of {limit} bytes", NicWarning, stacklevel=4)
        return Q_MAX, best
    lo, hi, best = 0, Q_MAX, smallest  # size(lo) <= limit < size(hi)
    while hi - lo > 1 and len(best) < 0.995 * limit:
        mid = (lo + hi) // 2
        data = c.code(mid)
        if len(data) <= limit:
            lo, best = mid, data
        else:
            hi = mid
    return lo, best


def _lowest_reaching(c: Codable, target: float) -> tuple[int, bytes]:
    """(quality x 100, file) of the smallest file with at least `target` dB."""
    top = psnr(c.reconstruct(Q_MAX), c.source)
    if top < target:
        warnings.warn(f"{target:g} dB is out of reach; quality 100 gives {top:.2f} dB", NicWarning, stacklevel=4)
        return Q_MAX, c.code(Q_MAX)
    lo, hi = 0, Q_MAX  # psnr(hi) >= target; psnr(lo) below unless lo == 0 reaches it
    if psnr(c.reconstruct(0), c.source) >= target:
        return 0, c.code(0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        p = psnr(c.reconstruct(mid), c.source)
        if p >= target:
            hi = mid
            if p < target + 0.05:
                break
        else:
            lo = mid
    return hi, c.code(hi)


def search(c: Codable, target: Target) -> tuple[int, bytes]:
    """(quality x 100, file) meeting the target: the largest within a size or bit rate, the smallest reaching a PSNR."""
    limit = target.limit(c.pixels)
    if limit is not None:
        return _largest_fitting(c, limit)
    return _lowest_reaching(c, float(target.psnr))


Result = tuple[Codable, int, bytes]  # what was coded, at which quality x 100, and the file


def better(first: Result, second: Result, target: Target) -> Result:
    """The result that meets the target better, of two (codable, quality x 100, file).

    For a size or bit rate (both fit): the higher PSNR, then the smaller file.
    For a PSNR: the one that reaches it, the smaller if both do, the closer if neither does.
    Ties keep the first.
    """
    (c1, q1, d1), (c2, q2, d2) = first, second
    p1, p2 = psnr(c1.reconstruct(q1), c1.source), psnr(c2.reconstruct(q2), c2.source)
    if target.psnr is None:
        wins = (p2, -len(d2)) > (p1, -len(d1))
    elif (p2 >= target.psnr) != (p1 >= target.psnr):
        wins = p2 >= target.psnr
    elif p2 >= target.psnr:
        wins = len(d2) < len(d1)
    else:
        wins = p2 > p1
    return second if wins else first
