"""The Python API: `encode(image) -> bytes` and `decode(bytes) -> PIL.Image`.

This is where the strategies meet the codec: encode analyses the image once
(`autoencoder.codec.analyse`), then codes it at the quality asked for, after
refining its latents for that quality (encode effort, `autoencoder.refine`),
or searches the quality that meets a size, bit rate or PSNR (`ratecontrol`),
refining for the quality found and searching again. Decode reads the
container, finds the model the file names and runs its decoder.

A second codec family plugs in here: its encoder behind an effort level, its
decoder chosen by the file's model identifier.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from PIL import Image

from . import ratecontrol
from .autoencoder import codec, refine
from .autoencoder.modelfiles import DEFAULT_WEIGHTS
from .errors import NicError, NicWarning
from .format import parse
from .imageio import ImageLike, assemble
from .settings import DEFAULT_EFFORT, DEFAULT_QUALITY, MAX_PIXELS, check_effort, quality_x100


def encode(
    image: ImageLike,
    quality: float = DEFAULT_QUALITY,
    device: str = "auto",
    weights: str | os.PathLike = DEFAULT_WEIGHTS,
    *,
    target_size: int | None = None,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    effort: int = DEFAULT_EFFORT,
) -> bytes:
    """Compress an image (path, PIL image or uint8 array) to .nic bytes.

    quality: 0 (smallest) .. 100 (best), continuous. Grey images stay grey,
    alpha is kept losslessly, the ICC profile is kept, EXIF orientation is
    applied; conversions that lose something warn with `NicWarning`.
    target_size (bytes), target_bpp or target_psnr (dB) replace quality by a
    search over it (see `ratecontrol`): sizes are never exceeded.
    effort: 0 (one pass, the default) .. MAX_EFFORT; higher levels spend encode
    time refining this image's latents for fewer bits at the same quality (see
    `autoencoder.refine`); any file decodes with the same decoder.
    """
    check_effort(effort)
    targets = (target_size, target_bpp, target_psnr)
    target = None if all(t is None for t in targets) else ratecontrol.Target(*targets)
    q100 = quality_x100(quality) if target is None else None
    a = codec.analyse(image, device, weights)
    if target is None:
        if effort:
            a = refine.refine(a, q100, effort).analysis
        return a.code(q100)
    q_plain, plain = ratecontrol.search(a, target)
    if not effort:
        return plain
    # Refinement moves size and PSNR: search again on the refined latents, keep the better file.
    refined = refine.refine(a, q_plain, effort).analysis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NicWarning)  # said once already, by the first search
        q_ref, data = ratecontrol.search(refined, target)
    return ratecontrol.better((a, q_plain, plain), (refined, q_ref, data), target)


def _open(data: bytes, weights: str | os.PathLike, max_pixels: int | None):
    f = parse(bytes(data))
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if limit and f.width * f.height > limit:
        raise NicError(
            f"image of {f.width}x{f.height} exceeds the {limit}-pixel safety limit "
            "(raise it with --max-pixels / max_pixels= if you trust the file)"
        )
    return f, codec.open_file(f, weights)


@torch.no_grad()
def decode(
    data: bytes,
    device: str = "auto",
    weights: str | os.PathLike = DEFAULT_WEIGHTS,
    exact_path: str = "float64",
    max_pixels: int | None = None,
) -> Image.Image:
    """Decompress .nic bytes to a PIL image (RGB, L, RGBA or LA as encoded).

    exact_path: how the integer networks are evaluated, "float64" (fast) or
    "int64" (reference); both give identical symbols.
    max_pixels: refuse larger images (default MAX_PIXELS; 0 for no limit).
    """
    f, w = _open(data, weights, max_pixels)
    return assemble(codec.decode_pixels(f, w, device, exact_path), f.layout, f.chunks)


@torch.no_grad()
def decode_symbols(
    data: bytes, weights: str | os.PathLike = DEFAULT_WEIGHTS, exact_path: str = "float64"
) -> tuple[np.ndarray, np.ndarray]:
    """The entropy-decoded z and y symbols of a file (for exactness checks)."""
    f, w = _open(data, weights, 0)
    z, v, _ = codec.decode_latents(f, w, exact_path)
    return z.numpy(), v.numpy()


__all__ = ["decode", "decode_symbols", "encode"]
