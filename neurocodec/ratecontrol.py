"""Rate control: the quality that meets a file size, a bit rate or a PSNR.

Quality is continuous (steps of 0.01), and file size and PSNR grow with it, so
a bisection over quality x 100 finds the target in about 14 steps. The
analysis transform runs once; each step only re-quantizes and entropy-codes
(size) or also runs the synthesis (PSNR). A size is a limit: the result is the
largest file that fits, never one byte more.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np

from .codec import Analysis, code, reconstruct
from .errors import NicError, NicWarning

Q_MAX = 10000
_UNITS = {"": 1, "b": 1, "kb": 1000, "k": 1000, "kib": 1024, "mb": 1000**2, "m": 1000**2, "mib": 1024**2}


def parse_size(text: str) -> int:
    """'50KB' -> 50000 bytes; B, KB, KiB, MB, MiB (or k, m); a plain number is bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise NicError(f"cannot read size {text!r}: write it like 50000, 50KB, 48KiB or 1.5MB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else math.inf


def _largest_fitting(a: Analysis, limit: int) -> bytes:
    smallest = code(a, 0)
    if len(smallest) > limit:
        raise NicError(f"cannot fit in {limit} bytes: the smallest file (quality 0) takes {len(smallest)} bytes")
    best = code(a, Q_MAX)
    if len(best) <= limit:
        warnings.warn(f"quality 100 already fits: {len(best)} of {limit} bytes", NicWarning, stacklevel=3)
        return best
    lo, hi, best = 0, Q_MAX, smallest  # size(lo) <= limit < size(hi)
    while hi - lo > 1 and len(best) < 0.995 * limit:
        mid = (lo + hi) // 2
        data = code(a, mid)
        if len(data) <= limit:
            lo, best = mid, data
        else:
            hi = mid
    return best


def _lowest_reaching(a: Analysis, target: float) -> bytes:
    top = _psnr(reconstruct(a, Q_MAX), a.img.rgb)
    if top < target:
        warnings.warn(f"{target:g} dB is out of reach; quality 100 gives {top:.2f} dB", NicWarning, stacklevel=3)
        return code(a, Q_MAX)
    lo, hi = 0, Q_MAX  # psnr(hi) >= target; psnr(lo) below unless lo == 0 reaches it
    if _psnr(reconstruct(a, 0), a.img.rgb) >= target:
        return code(a, 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        p = _psnr(reconstruct(a, mid), a.img.rgb)
        if p >= target:
            hi = mid
            if p < target + 0.05:
                break
        else:
            lo = mid
    return code(a, hi)


def search(
    a: Analysis,
    target_size: int | None = None,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
) -> bytes:
    """The .nic file for exactly one of: a size limit in bytes, a bit rate limit, a PSNR floor."""
    given = [t for t in (target_size, target_bpp, target_psnr) if t is not None]
    if len(given) != 1:
        raise NicError("give only one target: a size, a bit rate or a PSNR")
    if target_bpp is not None:
        if target_bpp <= 0:
            raise NicError(f"bits per pixel must be positive, not {target_bpp:g}")
        target_size = int(target_bpp * a.pixels / 8)
    if target_size is not None:
        if target_size <= 0:
            raise NicError(f"target size must be positive, not {target_size}")
        return _largest_fitting(a, target_size)
    return _lowest_reaching(a, float(target_psnr))
