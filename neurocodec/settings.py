"""What a user chooses and its range, defined once and torch-free (the CLI's help reads them here).

Quality 0..100 is stored in a .nic file as quality x 100 (an integer), so every
machine derives the same gains from it. Effort levels spend encode time for fewer
bits (like cwebp -m or cjxl -e): level 0 is the single pass of the autoencoder,
levels 1-3 refine the image's latents with more gradient steps
(`autoencoder.refine`, same decoder), and levels 4 and up fit latents and a tiny
decoder to the image (`fitted`, the per-image mode), with more iterations each.
"""

from __future__ import annotations

import numbers

from .errors import NicError

DEFAULT_QUALITY = 75.0
Q100_MAX = 10000  # quality 100 as the file stores it (quality x 100)
# Gradient steps of latent refinement per effort level (0: the plain single pass).
# Gains flatten by ~60 steps; 30 give most of them (benchmarks/effort.py).
REFINE_STEPS = (0, 15, 30, 80)
# Fitting iterations of the fitted levels, from FIRST_FITTED on (benchmarks/fitted_grid.py: 3,000 need
# 10-17 % more bits than 10,000 on 256x256 crops, 1,000 some 20 % more again).
FIT_ITERATIONS = (1000, 3000, 10000)
FIRST_FITTED = len(REFINE_STEPS)
DEFAULT_EFFORT = 0
# What the autoencoder's weights are tuned for (nic --tune): the metric -> the distortion they were trained on.
TUNES = {"psnr": "mse", "ssim": "msssim"}
DEFAULT_TUNE = "psnr"
MAX_EFFORT = FIRST_FITTED + len(FIT_ITERATIONS) - 1
# Decoding refuses files that declare more pixels than this (a decompression bomb
# guard like Pillow's MAX_IMAGE_PIXELS); max_pixels= (or nic --max-pixels) raises it.
MAX_PIXELS = 2 * 89_478_485


def quality_x100(quality: float) -> int:
    """Quality 0..100 as the file stores it: an integer in hundredths."""
    q = float(quality)
    if not 0.0 <= q <= 100.0:
        raise NicError(f"quality must be between 0 and 100, not {quality}")
    return round(q * Q100_MAX / 100)


def check_tune(tune: object) -> str:
    """The tuning's name; a bad one fails before any work is done."""
    if not isinstance(tune, str) or tune not in TUNES:
        raise NicError(f"tune must be one of {', '.join(TUNES)}, not {tune!r}")
    return str(tune)


def check_effort(effort: object, levels: int = MAX_EFFORT + 1) -> int:
    """The effort level as an int; a bad one fails before any work is done."""
    if isinstance(effort, bool) or not isinstance(effort, numbers.Integral) or not 0 <= effort < levels:
        raise NicError(f"effort must be an integer from 0 to {levels - 1}, not {effort!r}")
    return int(effort)
