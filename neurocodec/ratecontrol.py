"""Rate control: the quality that meets a file size, a bit rate or a PSNR.

Quality is continuous (steps of 0.01), and file size and PSNR grow with it, so
a bisection over quality x 100 finds the target in about 14 steps. The
analysis transform runs once; each step only re-quantizes and entropy-codes
(size) or also runs the synthesis (PSNR). A size is a limit: the result is the
largest file that fits, never one byte more.

With an encode effort, the search runs twice: once on the plain latents to
find the quality, then, after refining the latents for that quality (see
`refine`), again on the refined ones, since refinement moves size and PSNR.
The better of the two results is kept (for a size or bit rate: the higher
PSNR; for a PSNR: the smaller file), so effort never makes rate control worse
and a size limit still holds.
"""

from __future__ import annotations

import re
import warnings

from .codec import Analysis, code, reconstruct
from .errors import NicError, NicWarning
from .metrics import psnr

Q_MAX = 10000
_UNITS = {"": 1, "b": 1, "kb": 1000, "k": 1000, "kib": 1024, "mb": 1000**2, "m": 1000**2, "mib": 1024**2}


def parse_size(text: str) -> int:
    """'50KB' -> 50000 bytes; B, KB, KiB, MB, MiB (or k, m); a plain number is bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise NicError(f"cannot read size {text!r}: write it like 50000, 50KB, 48KiB or 1.5MB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _largest_fitting(a: Analysis, limit: int) -> tuple[int, bytes]:
    """(quality x 100, file) of the largest file within `limit` bytes."""
    smallest = code(a, 0)
    if len(smallest) > limit:
        raise NicError(f"cannot fit in {limit} bytes: the smallest file (quality 0) takes {len(smallest)} bytes")
    best = code(a, Q_MAX)
    if len(best) <= limit:
        warnings.warn(f"quality 100 already fits: {len(best)} of {limit} bytes", NicWarning, stacklevel=3)
        return Q_MAX, best
    lo, hi, best = 0, Q_MAX, smallest  # size(lo) <= limit < size(hi)
    while hi - lo > 1 and len(best) < 0.995 * limit:
        mid = (lo + hi) // 2
        data = code(a, mid)
        if len(data) <= limit:
            lo, best = mid, data
        else:
            hi = mid
    return lo, best


def _lowest_reaching(a: Analysis, target: float) -> tuple[int, bytes]:
    """(quality x 100, file) of the smallest file with at least `target` dB."""
    top = psnr(reconstruct(a, Q_MAX), a.img.rgb)
    if top < target:
        warnings.warn(f"{target:g} dB is out of reach; quality 100 gives {top:.2f} dB", NicWarning, stacklevel=3)
        return Q_MAX, code(a, Q_MAX)
    lo, hi = 0, Q_MAX  # psnr(hi) >= target; psnr(lo) below unless lo == 0 reaches it
    if psnr(reconstruct(a, 0), a.img.rgb) >= target:
        return 0, code(a, 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        p = psnr(reconstruct(a, mid), a.img.rgb)
        if p >= target:
            hi = mid
            if p < target + 0.05:
                break
        else:
            lo = mid
    return hi, code(a, hi)


def _with_effort(a: Analysis, find, effort: int, target_psnr: float | None) -> bytes:
    """Search, refine the latents for the quality found, search again; keep the better file."""
    from .refine import refine

    q_plain, plain = find(a)
    refined = refine(a, q_plain, effort).analysis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NicWarning)  # said once already, by the first search
        q_ref, data = find(refined)
    p_plain = psnr(reconstruct(a, q_plain), a.img.rgb)
    p_ref = psnr(reconstruct(refined, q_ref), a.img.rgb)
    if target_psnr is None:  # a size: both fit, the better picture wins
        better = (p_ref, -len(data)) > (p_plain, -len(plain))
    elif (p_ref >= target_psnr) != (p_plain >= target_psnr):  # only one reaches the target
        better = p_ref >= target_psnr
    elif p_ref >= target_psnr:  # both do: the smaller file wins
        better = len(data) < len(plain)
    else:  # out of reach for both: the closer one
        better = p_ref > p_plain
    return data if better else plain


def search(
    a: Analysis,
    target_size: int | None = None,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    effort: int = 0,
) -> bytes:
    """The .nic file for exactly one of: a size limit in bytes, a bit rate limit, a PSNR floor.

    effort > 0 refines the latents too (see the module notes)."""
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
        limit = target_size
        if effort:
            return _with_effort(a, lambda b: _largest_fitting(b, limit), effort, None)
        return _largest_fitting(a, limit)[1]
    target = float(target_psnr)
    if effort:
        return _with_effort(a, lambda b: _lowest_reaching(b, target), effort, target)
    return _lowest_reaching(a, target)[1]
