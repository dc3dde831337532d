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

import functools
import inspect
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec

import numpy as np
import torch
from PIL import Image

from . import ratecontrol
from .autoencoder import codec, refine
from .autoencoder.gains import lambda_for
from .autoencoder.modelfiles import tuned_weights
from .devices import pick_device
from .errors import NicError, NicWarning
from .fitted import codec as fitted
from .format import parse
from .imageio import ImageLike, assemble
from .metrics import psnr
from .progress import Progress
from .settings import (
    DEFAULT_EFFORT,
    DEFAULT_QUALITY,
    DEFAULT_TUNE,
    FIRST_FITTED,
    FIT_ITERATIONS,
    MAX_PIXELS,
    check_effort,
    quality_x100,
)

P = ParamSpec("P")


@dataclass
class EncodeInfo:
    """What an encode did, for the one line the CLI prints (cwebp-style) and for -v."""

    width: int
    height: int
    quality: float  # the quality coded: the one asked for, or the one rate control chose
    psnr: float | None  # RGB PSNR (dB) of the decoded pixels, when the encoder computed it (rate control, effort)
    effort: int
    model: str  # the model identifier, hex
    device: str
    seconds: dict[str, float] = field(default_factory=dict)  # analysis, refinement, search, coding


def encode_with_info(
    image: ImageLike,
    quality: float = DEFAULT_QUALITY,
    device: str = "auto",
    weights: str | os.PathLike | None = None,
    *,
    target_size: int | None = None,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    effort: int = DEFAULT_EFFORT,
    metadata: str | tuple | list | set | frozenset = "all",
    progress: Progress | None = None,
    tune: str = DEFAULT_TUNE,
) -> tuple[bytes, EncodeInfo]:
    """Compress an image (path, PIL image or uint8 array) to .nic bytes, and what the encode did (`EncodeInfo`).

    quality: 0 (smallest) .. 100 (best), continuous. Grey images stay grey,
    alpha is kept losslessly, EXIF orientation is applied; conversions that
    lose something warn with `NicWarning`.
    weights: a weights file of one's own (default: $NIC_WEIGHTS, else the shipped weights).
    target_size (bytes), target_bpp or target_psnr (dB) replace quality by a
    search over it (see `ratecontrol`): sizes are never exceeded.
    effort: 0 (one pass, the default) .. MAX_EFFORT; higher levels spend encode
    time refining this image's latents for fewer bits at the same quality (see
    `autoencoder.refine`); any file decodes with the same decoder.
    metadata: which of the ICC profile, EXIF and XMP to keep: "all" (default), "none" or e.g. "icc,exif".
    progress: called as progress(stage, done, total) during long work (tiles, refinement steps).
    tune: what the autoencoder's weights are tuned for: "psnr" (MSE, the default) or "ssim" (MS-SSIM: fewer
    bits at equal MS-SSIM, less PSNR; efforts 0-3 only, the fitted levels are tuned for PSNR).
    """
    effort = check_effort(effort) if effort else 0  # None, False and 0.0 mean no effort, as they always did
    weights = tuned_weights(tune, weights, effort)
    targets = (target_size, target_bpp, target_psnr)
    target = None if all(t is None for t in targets) else ratecontrol.Target(*targets)
    q100 = quality_x100(quality) if target is None else None
    clock = _Clock()
    a = codec.analyse(image, device, weights, metadata, progress)
    clock.lap("analysis")
    if effort >= FIRST_FITTED:
        if a.w.model.cfg.distortion != "mse":
            raise NicError(
                f"effort {effort} fits for PSNR, and these weights are tuned for {a.w.model.cfg.distortion}: use "
                f"effort {FIRST_FITTED - 1} or lower with them"
            )
        fitted.check_size(*a.source.shape[:2])  # before the autoencoder's refinement, not after
    result = _autoencoder(a, q100, target, min(effort, FIRST_FITTED - 1), progress, clock)
    if effort >= FIRST_FITTED:
        result = _fitted(a, result, target, effort, progress, clock)
    c, q, data = result
    return data, _info(c, q, effort, clock, measured=effort > 0 or target is not None)


def _autoencoder(
    a: codec.Analysis, q100: int | None, target: ratecontrol.Target | None, effort: int, progress, clock: _Clock
) -> ratecontrol.Result:
    """The autoencoder's file at an effort (0-3): (what was coded, quality x 100, file)."""
    if target is None:
        if effort:
            a = refine.refine(a, q100, effort, progress=progress).analysis
            clock.lap("refinement")
        data = a.code(q100)
        clock.lap("coding")
        return a, q100, data
    q, data = ratecontrol.search(a, target)
    clock.lap("search")
    result = (a, q, data)
    if effort:
        # Refinement moves size and PSNR: search again on the refined latents, keep the better file.
        refined = refine.refine(a, q, effort, progress=progress).analysis
        clock.lap("refinement")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NicWarning)  # said once already, by the first search
            q_ref, data_ref = ratecontrol.search(refined, target)
        result = ratecontrol.better(result, (refined, q_ref, data_ref), target)
        clock.lap("search")
    return result


def _fitted(
    a: codec.Analysis,
    base: ratecontrol.Result,
    target: ratecontrol.Target | None,
    effort: int,
    progress,
    clock: _Clock,
) -> ratecontrol.Result:
    """The fitted file at the autoencoder result's quality, if it costs less than that result or, with a target,
    meets the target better; else the autoencoder's. The cost is refinement's: bits per pixel + lambda * MSE
    (0..255), lambda the autoencoder's own trade-off at that quality, and the fit minimises the same."""
    q = base[1]
    lam = refine.local_lambda(base[0], q, lambda_for(a.w.model.cfg.lambdas, q))
    iterations = FIT_ITERATIONS[effort - FIRST_FITTED]
    try:
        f = fitted.encode(a.img, q, 1 / (255**2 * lam), iterations, a.dev, progress=progress)
        candidate = (f, q, f.code())
    except NicError as e:  # e.g. networks beyond the exact format's ranges: the autoencoder's file still stands
        warnings.warn(f"effort {effort}: the fitted file could not be made ({e}); kept effort 3's", NicWarning)
        return base
    finally:
        clock.lap("fitting")
    if target is None:
        return candidate if _cost(candidate, lam) < _cost(base, lam) else base
    limit = target.limit(f.pixels)
    if limit is not None and len(candidate[2]) > limit:
        return base  # the fit ran at the quality that fits the autoencoder's file, and this one does not fit
    return ratecontrol.better(base, candidate, target)


def _cost(result: ratecontrol.Result, lam: float) -> float:
    c, q, data = result
    err = c.reconstruct(q).astype(np.float64) - c.source.astype(np.float64)
    return 8 * len(data) / c.pixels + lam * float(np.mean(err**2))


def _file_only(fn: Callable[P, tuple[bytes, EncodeInfo]]) -> Callable[P, bytes]:
    """The same function with the same arguments (for type checkers too), returning the file alone."""

    @functools.wraps(fn)
    def file_only(*args: P.args, **kwargs: P.kwargs) -> bytes:
        return fn(*args, **kwargs)[0]

    file_only.__doc__ = "Compress an image (path, PIL image or uint8 array) to .nic bytes; see `encode_with_info`."
    file_only.__signature__ = inspect.signature(fn).replace(return_annotation=bytes)  # type: ignore[attr-defined]
    return file_only


encode = _file_only(encode_with_info)


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now


def _info(c: ratecontrol.Codable, q100: int, effort: int, clock: _Clock, measured: bool) -> EncodeInfo:
    """What was done; the PSNR only where the work already ran the synthesis (one more pass is cheap beside it)."""
    value = psnr(c.reconstruct(q100), c.source) if measured else None
    height, width = c.source.shape[:2]
    if isinstance(c, fitted.FittedImage):
        return EncodeInfo(width, height, q100 / 100, value, effort, fitted.MODEL_ID.hex(), c.device, clock.seconds)
    return EncodeInfo(width, height, q100 / 100, value, effort, c.w.identity.hex(), str(c.dev), clock.seconds)


def _open(data: bytes, weights: str | os.PathLike | None, max_pixels: int | None):
    f = parse(bytes(data))
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if limit and f.width * f.height > limit:
        raise NicError(
            f"image of {f.width}x{f.height} exceeds the {limit}-pixel safety limit "
            "(raise it with --max-pixels / max_pixels= if you trust the file)"
        )
    if f.model_id == fitted.MODEL_ID:
        return f, None  # a fitted file carries its own decoder
    return f, codec.open_file(f, weights)


@torch.no_grad()
def decode(
    data: bytes,
    device: str = "auto",
    weights: str | os.PathLike | None = None,
    exact_path: str = "float64",
    max_pixels: int | None = None,
    progress: Progress | None = None,
) -> Image.Image:
    """Decompress .nic bytes to a PIL image (RGB, L, RGBA or LA as encoded).

    exact_path: how the integer networks are evaluated, "float64" (fast) or
    "int64" (reference); both give identical symbols.
    max_pixels: refuse larger images (default MAX_PIXELS; 0 for no limit).
    The image's info holds the ICC profile, EXIF and XMP the file kept.
    """
    f, w = _open(data, weights, max_pixels)
    if w is None:
        rgb = fitted.decode_pixels(f, pick_device(device), exact_path)
    else:
        rgb = codec.decode_pixels(f, w, device, exact_path, progress)
    return assemble(rgb, f.layout, f.chunks)


@torch.no_grad()
def decode_symbols(
    data: bytes, weights: str | os.PathLike | None = None, exact_path: str = "float64"
) -> tuple[np.ndarray, np.ndarray]:
    """The entropy-decoded symbols of a file (for exactness checks): z and y (autoencoder), or the network
    integers and the latents (fitted), each flattened."""
    f, w = _open(data, weights, 0)
    if w is None:
        _, tensors, grids = fitted.decode_latents(f, exact_path)
        nets = torch.cat([t.values.reshape(-1) for t in tensors])
        return nets.numpy(), torch.cat([g.reshape(-1) for g in grids]).numpy()
    z, v, _ = codec.decode_latents(f, w, exact_path)
    return z.numpy(), v.numpy()


__all__ = ["EncodeInfo", "decode", "decode_symbols", "encode", "encode_with_info"]
