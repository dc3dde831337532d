"""Rate-distortion measurement: nic and the Pillow reference codecs, BD-rate.

Protocol (../shared/design.md): bits per pixel from the real encoded bytes
(headers included), RGB PSNR averaged over images, Bjontegaard delta rate
over the overlapping PSNR range.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

# name -> (settings text, sweep values, function(image, value) -> bytes)
REFERENCE_SETTINGS = {
    "jpeg": "Pillow JPEG (libjpeg-turbo), optimize=True, quality sweep",
    "jpeg2000": "Pillow JPEG 2000 (OpenJPEG), irreversible=True, mct=1, quality_mode='rates', rate sweep",
    "webp": "Pillow WebP (libwebp), method=6, quality sweep",
    "avif": "Pillow AVIF (libavif), speed=4, quality sweep",
}
SWEEPS = {
    "jpeg": [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "jpeg2000": [300, 200, 150, 100, 70, 50, 35, 25, 16, 12, 8],
    "webp": [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "avif": [5, 15, 25, 35, 45, 55, 65, 75, 85, 92],
}


def _save(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, **kwargs)
    return buf.getvalue()


def reference_encode(codec: str, image: Image.Image, value: float) -> bytes:
    if codec == "jpeg":
        return _save(image, format="JPEG", quality=int(value), optimize=True)
    if codec == "jpeg2000":
        return _save(
            image, format="JPEG2000", irreversible=True, mct=1, quality_mode="rates", quality_layers=[float(value)]
        )
    if codec == "webp":
        return _save(image, format="WEBP", quality=int(value), method=6)
    if codec == "avif":
        return _save(image, format="AVIF", quality=int(value), speed=4)
    raise ValueError(f"unknown reference codec {codec!r}")


def reference_decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@dataclass
class Point:
    """One setting of one codec, averaged over images."""

    setting: float
    bpp: float
    psnr: float
    encode_ms: float
    decode_ms: float
    per_image: list[tuple[float, float]] = field(default_factory=list)


def measure(
    images: list[np.ndarray],
    setting: float,
    enc: Callable[[Image.Image, float], bytes],
    dec: Callable[[bytes], Image.Image],
) -> Point:
    per_image, enc_ms, dec_ms = [], [], []
    for a in images:
        im = Image.fromarray(a)
        t0 = time.perf_counter()
        data = enc(im, setting)
        t1 = time.perf_counter()
        out = np.asarray(dec(data))
        t2 = time.perf_counter()
        per_image.append((8 * len(data) / (a.shape[0] * a.shape[1]), psnr(out, a)))
        enc_ms.append(1000 * (t1 - t0))
        dec_ms.append(1000 * (t2 - t1))
    arr = np.array(per_image)
    return Point(
        setting,
        float(arr[:, 0].mean()),
        float(arr[:, 1].mean()),
        float(np.median(enc_ms)),
        float(np.median(dec_ms)),
        per_image,
    )


def bd_rate(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> float:
    """Bjontegaard delta rate (%) of `test` vs `anchor`; points are (bpp, psnr).

    Fits log-rate as a cubic in PSNR for each curve and compares the integrals
    over the overlapping PSNR range. Negative: `test` needs fewer bits.
    """
    a = np.array(sorted(anchor, key=lambda p: p[1]))
    t = np.array(sorted(test, key=lambda p: p[1]))
    lo, hi = max(a[:, 1].min(), t[:, 1].min()), min(a[:, 1].max(), t[:, 1].max())
    if hi <= lo or len(a) < 4 or len(t) < 4:
        return float("nan")
    pa = np.polyfit(a[:, 1], np.log(a[:, 0]), 3)
    pt = np.polyfit(t[:, 1], np.log(t[:, 0]), 3)
    ia = np.polyval(np.polyint(pa), hi) - np.polyval(np.polyint(pa), lo)
    it = np.polyval(np.polyint(pt), hi) - np.polyval(np.polyint(pt), lo)
    return float((np.exp((it - ia) / (hi - lo)) - 1) * 100)


def rate_at_psnr(curve: list[tuple[float, float]], target: float) -> float:
    """bpp a codec needs for `target` dB, interpolated in log-rate (nan outside the curve)."""
    c = np.array(sorted(curve, key=lambda p: p[1]))
    if not c[0, 1] <= target <= c[-1, 1]:
        return float("nan")
    return float(np.exp(np.interp(target, c[:, 1], np.log(c[:, 0]))))
