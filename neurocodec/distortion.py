"""The distortions the autoencoder is trained and refined for, per image: MSE, or 1 - MS-SSIM (`--tune ssim`).

MS-SSIM here is the benchmarks' (`metrics.ms_ssim`: Gaussian window 11 / 1.5,
5 scales with fewer on small images, 2x2 averages, channels averaged) written
in torch so that it has a gradient; a test holds the two equal. The one
difference: negative contrast terms are clamped to a tiny positive number
instead of 0, since a fractional power has no gradient at 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .metrics import DATA_RANGE, K1, K2, MSSSIM_WEIGHTS, SIGMA, WINDOW, msssim_scales
from .settings import TUNES

KINDS = tuple(TUNES.values())  # the distortion each tuning's weights are trained for
_FLOOR = 1e-6  # where a contrast term below 0 is clamped (metrics clips to 0)


def _window(c: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(WINDOW, dtype=like.dtype, device=like.device) - (WINDOW - 1) / 2
    g = torch.exp(-(r**2) / (2 * SIGMA**2))
    g = g / g.sum()
    return g.view(1, 1, WINDOW, 1).expand(c, 1, WINDOW, 1), g.view(1, 1, 1, WINDOW).expand(c, 1, 1, WINDOW)


def _blur(x: torch.Tensor, gh: torch.Tensor, gw: torch.Tensor) -> torch.Tensor:
    """'Valid' separable Gaussian filtering of each channel."""
    return F.conv2d(F.conv2d(x, gh, groups=x.shape[1]), gw, groups=x.shape[1])


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image of (N, C, H, W) images in 0..255 (the conventions of `metrics.ms_ssim`).

    Always in float32 or wider, autocast or not: in bfloat16 the variances (E[x^2] - E[x]^2 near 65025, in steps
    of 256) drown the constant c2 = 58.5, and the gradient points anywhere.
    """
    with torch.autocast(x.device.type, enabled=False):
        dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
        return _ms_ssim(x.to(dtype), y.to(dtype))


def _ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    scales = msssim_scales(x.shape[2], x.shape[3])
    if scales == 0:
        raise ValueError(f"MS-SSIM needs at least {WINDOW}x{WINDOW} pixels, not {x.shape[3]}x{x.shape[2]}")
    weights = torch.tensor(MSSSIM_WEIGHTS[:scales], dtype=torch.float64)
    if scales < len(MSSSIM_WEIGHTS):
        weights = weights / weights.sum()
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    n, c = x.shape[:2]
    gh, gw = _window(c, x)
    result = torch.ones(n, c, dtype=x.dtype, device=x.device)
    for i in range(scales):
        mx, my, xx, yy, xy = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), gh.repeat(5, 1, 1, 1),
                                   gw.repeat(5, 1, 1, 1)).split(c, dim=1)  # fmt: skip
        cs = (2 * (xy - mx * my) + c2) / (xx - mx * mx + yy - my * my + c2)
        if i == scales - 1:
            cs = cs * (2 * mx * my + c1) / (mx * mx + my * my + c1)
        result = result * cs.mean(dim=(2, 3)).clamp(min=_FLOOR) ** float(weights[i])
        if i < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return result.mean(dim=1)


def per_image(kind: str, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The distortion `kind` of each image: MSE (0..255) or 1 - MS-SSIM."""
    if kind == "mse":
        return (x_hat - x).square().mean(dim=(1, 2, 3))
    if kind == "msssim":
        return 1 - ms_ssim(x_hat, x)
    raise ValueError(f"distortion must be one of {', '.join(KINDS)}, not {kind!r}")
