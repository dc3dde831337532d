"""Image quality metrics for the benchmarks: RGB PSNR and MS-SSIM (numpy only).

MS-SSIM follows Wang, Simoncelli and Bovik (2003), as most codec papers report it:
an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 255,
5 scales with the weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333, downsampling by
2x2 averages between scales. Each RGB channel is scored on its own and the three
scores are averaged. Negative contrast terms are clipped to 0 before the powers.

Conventions where implementations differ, chosen here and documented:
- Odd sizes: the 2x2 average drops the last row/column, so each scale is
  floor(size / 2) (sizes that stay even through the scales, e.g. multiples of
  16, match pytorch-msssim to about 1e-6, the difference of its float32 window).
- Small images: the 5 scales need at least 176 pixels on the shorter side (the
  11-pixel window must fit the fifth scale). Smaller images use as many scales
  as fit, with the leading weights renormalised to sum 1 (1 scale, under 22
  pixels: plain SSIM); images under 11 pixels on a side raise ValueError.
"""

from __future__ import annotations

import numpy as np

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR in dB of two uint8 images of the same shape (peak 255)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def _gaussian() -> np.ndarray:
    r = np.arange(WINDOW, dtype=np.float64) - (WINDOW - 1) / 2
    g = np.exp(-(r**2) / (2 * SIGMA**2))
    return g / g.sum()


def _blur(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of the last two axes with the 1-D kernel g."""
    n = len(g)
    h, w = x.shape[-2:]
    rows = g[0] * x[..., 0 : h - n + 1, :]
    for k in range(1, n):
        rows += g[k] * x[..., k : h - n + 1 + k, :]
    out = g[0] * rows[..., 0 : w - n + 1]
    for k in range(1, n):
        out += g[k] * rows[..., k : w - n + 1 + k]
    return out


def _ssim_cs(x: np.ndarray, y: np.ndarray, g: np.ndarray, block: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean SSIM and mean contrast-structure term; x, y: (C, H, W) float64.

    Works through blocks of output rows so that the temporaries stay in cache.
    """
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    n = len(g)
    rows, cols = x.shape[1] - n + 1, x.shape[2] - n + 1
    ssim_sum, cs_sum = np.zeros(x.shape[0]), np.zeros(x.shape[0])
    for r0 in range(0, rows, block):
        xs, ys = x[:, r0 : min(r0 + block, rows) + n - 1], y[:, r0 : min(r0 + block, rows) + n - 1]
        mx, my, xx, yy, xy = _blur(np.stack([xs, ys, xs * xs, ys * ys, xs * ys]), g)
        cs = (2 * (xy - mx * my) + c2) / (xx - mx * mx + yy - my * my + c2)
        lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
        ssim_sum += (lum * cs).sum(axis=(1, 2))
        cs_sum += cs.sum(axis=(1, 2))
    return ssim_sum / (rows * cols), cs_sum / (rows * cols)


def _halve(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return 0.25 * (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2])


def msssim_scales(height: int, width: int) -> int:
    """How many scales (at most 5) an image of this size gets; 0 if under 11 pixels."""
    side = min(height, width)
    n = 0
    while n < len(MSSSIM_WEIGHTS) and side >= WINDOW:
        n += 1
        side //= 2
    return n


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (0..1, 1 = identical) of two uint8 images (H, W, 3) or (H, W); see the module doc."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    scales = msssim_scales(a.shape[0], a.shape[1])
    if scales == 0:
        raise ValueError(f"MS-SSIM needs at least {WINDOW}x{WINDOW} pixels, not {a.shape[1]}x{a.shape[0]}")
    x, y = (
        np.ascontiguousarray(np.asarray(v, dtype=np.float64).reshape(*v.shape[:2], -1).transpose(2, 0, 1))
        for v in (a, b)
    )
    weights = np.array(MSSSIM_WEIGHTS[:scales])
    if scales < len(MSSSIM_WEIGHTS):  # the standard 5 sum to 1.0001: keep them exactly as published
        weights /= weights.sum()
    g = _gaussian()
    result = np.ones(x.shape[0])
    for i in range(scales):
        ssim, cs = _ssim_cs(x, y, g)
        term = ssim if i == scales - 1 else cs
        result *= np.maximum(term, 0.0) ** weights[i]
        if i < scales - 1:
            x, y = _halve(x), _halve(y)
    return float(result.mean())


def msssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM), as used for BD-rates."""
    return float(-10 * np.log10(max(1.0 - value, 1e-10)))
