"""The Python API: `encode(image) -> bytes` and `decode(bytes) -> PIL.Image`.

Pipeline: pixels -> g_a -> y; y -> h_a -> z (rounded); z -> exact integer
h_s -> mean, scale of y; gained y rounded around its mean; z and y entropy
coded with integer tables; decode runs the same exact steps backwards and
the float synthesis g_s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .coder import SectionDecoder, encode_sections
from .errors import NicError
from .format import NicFile, parse
from .imageio import ImageLike, Prepared, assemble, prepare
from .intnet import OUT_FRAC_BITS, OUT_MAX
from .model import anchor_mask
from .tables import SCALE_FRAC_BITS
from .weights import DEFAULT_WEIGHTS, GAIN_FRAC_BITS, Weights, load_weights, weights_for

DEFAULT_QUALITY = 75.0
Y_STRIDE = 16  # image -> y
Z_STRIDE = 4  # y -> z
# Decoding refuses files that declare more pixels than this (a decompression bomb
# guard like Pillow's MAX_IMAGE_PIXELS); pass max_pixels= (or nic --max-pixels) to raise it.
MAX_PIXELS = 2 * 89_478_485
# The transforms run on tiles of TILE x TILE pixels with MARGIN pixels of context
# on each side, so memory stays bounded for any image size; the margin covers the
# transforms' receptive field, so tiles join without seams.
TILE = 1024
MARGIN = 64


def pick_device(device: str = "auto") -> torch.device:
    """'auto' takes CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise NicError("--device cuda asked for, but no CUDA device is available (use --device auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise NicError(f"unknown device {device!r} (use auto, cpu or cuda)")
    return torch.device(device)


def _tiles(size: int, tile: int) -> list[int]:
    return list(range(0, size, tile))


def analysis_tiled(model, x: torch.Tensor, tile: int = TILE, margin: int = MARGIN) -> torch.Tensor:
    """g_a over (1, 3, H, W) pixels (H, W multiples of 16) tile by tile, into y on the CPU."""
    _, _, h, w = x.shape
    if h <= tile + 2 * margin and w <= tile + 2 * margin:
        return model.analysis(x).cpu()
    y = torch.empty(1, model.cfg.m, h // Y_STRIDE, w // Y_STRIDE)
    for top in _tiles(h, tile):
        for left in _tiles(w, tile):
            t0, l0 = max(0, top - margin), max(0, left - margin)
            b1, r1 = min(h, top + tile + margin), min(w, left + tile + margin)
            yt = model.analysis(x[:, :, t0:b1, l0:r1]).cpu()
            bh, bw = min(tile, h - top) // Y_STRIDE, min(tile, w - left) // Y_STRIDE
            dt, dl = (top - t0) // Y_STRIDE, (left - l0) // Y_STRIDE
            y[:, :, top // Y_STRIDE : top // Y_STRIDE + bh, left // Y_STRIDE : left // Y_STRIDE + bw] = yt[
                :, :, dt : dt + bh, dl : dl + bw
            ]
    return y


def synthesis_tiled(
    model, y_hat: torch.Tensor, height: int, width: int, dev: torch.device, tile: int = TILE, margin: int = MARGIN
) -> np.ndarray:
    """g_s tile by tile: y_hat (1, m, hy, wy) -> (height, width, 3) uint8 pixels."""
    ty, my = tile // Y_STRIDE, margin // Y_STRIDE
    _, _, hy, wy = y_hat.shape
    out = np.empty((height, width, 3), np.uint8)
    for top in _tiles(hy, ty):
        for left in _tiles(wy, ty):
            t0, l0 = max(0, top - my), max(0, left - my)
            b1, r1 = min(hy, top + ty + my), min(wy, left + ty + my)
            x = model.synthesis(y_hat[:, :, t0:b1, l0:r1].to(dev))[0]
            py, px = top * Y_STRIDE, left * Y_STRIDE
            bh, bw = min(ty * Y_STRIDE, height - py), min(ty * Y_STRIDE, width - px)
            dy, dx = (top - t0) * Y_STRIDE, (left - l0) * Y_STRIDE
            part = x[:, dy : dy + bh, dx : dx + bw].clamp(0, 255).round().to(torch.uint8)
            out[py : py + bh, px : px + bw] = part.permute(1, 2, 0).cpu().numpy()
    return out


def quality_x100(quality: float) -> int:
    q = float(quality)
    if not 0.0 <= q <= 100.0:
        raise NicError(f"quality must be between 0 and 100, not {quality}")
    return round(q * 100)


def gains_for(gains: torch.Tensor, q100: int) -> torch.Tensor:
    """Integer Q16 gain per latent channel at quality q100, interpolated exactly.

    Quality 0..100 spans the trained ladder linearly; between two levels the
    gains are interpolated in integer arithmetic, so every machine agrees.
    """
    levels = gains.shape[0]
    num = q100 * (levels - 1)
    i, frac = divmod(num, 10000)
    if i >= levels - 1:
        return gains[levels - 1].clone()
    return (gains[i] * (10000 - frac) + gains[i + 1] * frac + 5000) // 10000


def _hyper_params(
    w: Weights, z: torch.Tensor, y_shape: tuple[int, int], reference: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Q8 mean and scale of every y latent (before gains), from z."""
    mean_q, scale_q = w.hyper(z, reference=reference)
    h, wd = y_shape
    return mean_q[:, :, :h, :wd], scale_q[:, :, :h, :wd]


def _gained(
    w: Weights, mean_q: torch.Tensor, scale_q: torch.Tensor, gain_q: torch.Tensor
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Exact table index of every y symbol, plus its gained mean and the gain (float64)."""
    g = gain_q.view(1, -1, 1, 1)
    idx = torch.searchsorted(w.thresholds, (scale_q.clamp_min(0) * g).contiguous(), right=True)
    mean_g = (mean_q * g).to(torch.float64) / 2.0**SCALE_FRAC_BITS
    gain = g.to(torch.float64) / 2.0**GAIN_FRAC_BITS
    return idx.numpy(), mean_g, gain


def _ungained_q(y_sym: torch.Tensor, mean_q: torch.Tensor, gain_q: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """Decoded y before the gain, y_sym / gain + mean, exactly, in units of 2**-frac_bits (rounded)."""
    g = gain_q.view(1, -1, 1, 1)
    num = y_sym.to(torch.int64) << (GAIN_FRAC_BITS + frac_bits)
    y_q = torch.div(2 * num + g, 2 * g, rounding_mode="floor")
    if frac_bits >= OUT_FRAC_BITS:
        return y_q + (mean_q << (frac_bits - OUT_FRAC_BITS))
    return y_q + ((mean_q + (1 << (OUT_FRAC_BITS - 1 - frac_bits))) >> (OUT_FRAC_BITS - frac_bits))


def _with_anchors(
    w: Weights,
    mean_q: torch.Tensor,
    scale_q: torch.Tensor,
    y_sym: torch.Tensor,
    gain_q: torch.Tensor,
    reference: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Q8 mean and scale of every y once the anchors of y_sym are decoded (checkerboard context).

    Only the anchors of y_sym are read; the anchors' own parameters stay the hyperprior's.
    """
    assert w.context is not None
    anchors = anchor_mask(y_sym.shape[2], y_sym.shape[3])
    decoded = torch.where(anchors, _ungained_q(y_sym, mean_q, gain_q, w.context.frac_bits), 0)
    d_mean, d_scale = w.context(decoded, reference=reference)
    mean_q = torch.where(anchors, mean_q, (mean_q + d_mean).clamp(-OUT_MAX, OUT_MAX))
    scale_q = torch.where(anchors, scale_q, (scale_q + d_scale).clamp(-OUT_MAX, OUT_MAX))
    return mean_q, scale_q


def _anchor_split(w: Weights, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Which y positions each coded y section holds: all of them, or anchors then the rest."""
    if w.context is None:
        return [np.ones(shape, dtype=bool)]
    anchors = np.broadcast_to(anchor_mask(shape[2], shape[3]).numpy(), shape)
    return [anchors, ~anchors]


def _z_index(w: Weights, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[1]).reshape(1, -1, 1, 1), shape)


def _latent_sizes(width: int, height: int) -> tuple[int, int, int, int]:
    hy, wy = -(-height // Y_STRIDE), -(-width // Y_STRIDE)
    return hy, wy, -(-hy // Z_STRIDE), -(-wy // Z_STRIDE)


@dataclass
class Analysis:
    """Everything about an image that does not depend on the quality: coding it
    at many qualities (rate control) runs the analysis transform once."""

    img: Prepared
    w: Weights
    dev: torch.device
    y: torch.Tensor  # float32 latents (CPU)
    z: torch.Tensor  # int64 hyper-latents
    mean_q: torch.Tensor
    scale_q: torch.Tensor

    @property
    def pixels(self) -> int:
        return self.img.rgb.shape[0] * self.img.rgb.shape[1]


@torch.no_grad()
def analyse(image: ImageLike, device: str = "auto", weights: str | os.PathLike = DEFAULT_WEIGHTS) -> Analysis:
    """Run the quality-independent part of the encoder: y, z and y's entropy parameters."""
    img = prepare(image)
    height, width = img.rgb.shape[:2]
    if height * width == 0:
        raise NicError("cannot encode an empty image")
    w = load_weights(Path(weights))
    dev = pick_device(device)
    model = w.model.to(dev)
    hy, wy, hz, wz = _latent_sizes(width, height)
    rgb = img.rgb if img.rgb.flags.writeable else img.rgb.copy()
    x = torch.from_numpy(rgb).to(dev).permute(2, 0, 1)[None].float()
    x = F.pad(x, (0, wy * Y_STRIDE - width, 0, hy * Y_STRIDE - height), mode="replicate")
    y = analysis_tiled(model, x)
    del x
    y_padded = F.pad(y, (0, wz * Z_STRIDE - wy, 0, hz * Z_STRIDE - hy))
    z = model.h_a(y_padded.to(dev)).round().cpu().to(torch.int64)
    mean_q, scale_q = _hyper_params(w, z, (hy, wy))
    return Analysis(img, w, dev, y, z, mean_q, scale_q)


def _symbols(a: Analysis, q100: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, torch.Tensor]:
    gain_q = gains_for(a.w.gains, q100)
    idx, mean_g, gain = _gained(a.w, a.mean_q, a.scale_q, gain_q)
    y_sym = torch.round(a.y.to(torch.float64) * gain - mean_g).to(torch.int64)
    if a.w.context is not None:
        # The anchors' symbols stand; the rest are rounded around their refined means.
        del idx, mean_g, gain  # a large photo's full-size arrays: free them before the second pass
        mean_q, scale_q = _with_anchors(a.w, a.mean_q, a.scale_q, y_sym, gain_q)
        idx, mean_g, gain = _gained(a.w, mean_q, scale_q, gain_q)
        y_sym = torch.round(a.y.to(torch.float64) * gain - mean_g).to(torch.int64)
    return y_sym, idx, mean_g, gain


def code(a: Analysis, q100: int) -> bytes:
    """The .nic file of an analysed image at quality q100 (quality x 100)."""
    y_sym, idx, _, _ = _symbols(a, q100)
    w = a.w
    y_np = y_sym.numpy()
    ans, overflow = encode_sections(
        [(a.z.numpy(), _z_index(w, tuple(a.z.shape)), w.z_tables)]
        + [(y_np[part], idx[part], w.y_tables) for part in _anchor_split(w, y_np.shape)]
    )
    height, width = a.img.rgb.shape[:2]
    return NicFile(width, height, q100, w.identity, ans, overflow, a.img.layout, a.img.chunks()).to_bytes()


@torch.no_grad()
def reconstruct(a: Analysis, q100: int) -> np.ndarray:
    """The RGB pixels a decoder will show for quality q100, without entropy coding."""
    y_sym, _, mean_g, gain = _symbols(a, q100)
    y_hat = ((y_sym.to(torch.float64) + mean_g) / gain).float()
    height, width = a.img.rgb.shape[:2]
    return synthesis_tiled(a.w.model.to(a.dev), y_hat, height, width, a.dev)


def encode(
    image: ImageLike,
    quality: float = DEFAULT_QUALITY,
    device: str = "auto",
    weights: str | os.PathLike = DEFAULT_WEIGHTS,
    *,
    target_size: int | None = None,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    effort: int = 0,
) -> bytes:
    """Compress an image (path, PIL image or uint8 array) to .nic bytes.

    quality: 0 (smallest) .. 100 (best), continuous. Grey images stay grey,
    alpha is kept losslessly, the ICC profile is kept, EXIF orientation is
    applied; conversions that lose something warn with `NicWarning`.
    target_size (bytes), target_bpp or target_psnr (dB) replace quality by a
    search over it (see `ratecontrol`): sizes are never exceeded.
    effort: 0 (one pass, the default) .. 3; higher levels spend encode time
    refining this image's latents for fewer bits at the same quality (see
    `refine`); any file decodes with the same decoder.
    """
    if effort:
        from .refine import steps_for

        steps_for(effort)  # a bad level fails before any work
    a = analyse(image, device, weights)
    if target_size is None and target_bpp is None and target_psnr is None:
        q100 = quality_x100(quality)
        if effort:
            from .refine import refine

            a = refine(a, q100, effort).analysis
        return code(a, q100)
    from .ratecontrol import search

    return search(a, target_size=target_size, target_bpp=target_bpp, target_psnr=target_psnr, effort=effort)


def _decode_latents(
    f: NicFile, w: Weights, exact_path: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entropy-decode z and y symbols, with y's gained mean and gain."""
    if exact_path not in ("float64", "int64"):
        raise NicError(f"unknown exact_path {exact_path!r} (float64 or int64)")
    hy, wy, hz, wz = _latent_sizes(f.width, f.height)
    dec = SectionDecoder(f.ans, f.overflow)
    shape_z = (1, w.z_tables.lengths.shape[0], hz, wz)
    z = torch.from_numpy(dec.decode(_z_index(w, shape_z), w.z_tables))
    gain_q = gains_for(w.gains, f.quality_x100)
    reference = exact_path == "int64"
    mean_q, scale_q = _hyper_params(w, z, (hy, wy), reference=reference)
    idx, mean_g, gain = _gained(w, mean_q, scale_q, gain_q)
    y_sym = np.zeros(idx.shape, dtype=np.int64)
    for i, part in enumerate(_anchor_split(w, idx.shape)):
        if i:  # the rest, once the anchors are known
            del idx, mean_g  # free the first pass's full-size arrays first (large photos)
            mean_q, scale_q = _with_anchors(w, mean_q, scale_q, torch.from_numpy(y_sym), gain_q, reference)
            idx, mean_g, gain = _gained(w, mean_q, scale_q, gain_q)
        y_sym[part] = dec.decode(idx[part], w.y_tables)
    dec.finish()
    return z, torch.from_numpy(y_sym), mean_g, gain


def _open(data: bytes, weights: str | os.PathLike, max_pixels: int | None) -> tuple[NicFile, Weights]:
    f = parse(bytes(data))
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if limit and f.width * f.height > limit:
        raise NicError(
            f"image of {f.width}x{f.height} exceeds the {limit}-pixel safety limit "
            "(raise it with --max-pixels / max_pixels= if you trust the file)"
        )
    return f, weights_for(f.model_id, weights)


@torch.no_grad()
def decode(
    data: bytes,
    device: str = "auto",
    weights: str | os.PathLike = DEFAULT_WEIGHTS,
    exact_path: str = "float64",
    max_pixels: int | None = None,
) -> Image.Image:
    """Decompress .nic bytes to a PIL image (RGB, L, RGBA or LA as encoded).

    exact_path: how the integer hyper-synthesis is evaluated, "float64"
    (fast) or "int64" (reference); both give identical symbols.
    max_pixels: refuse larger images (default MAX_PIXELS; 0 for no limit).
    """
    f, w = _open(data, weights, max_pixels)
    _, y_sym, mean_g, gain = _decode_latents(f, w, exact_path)
    dev = pick_device(device)
    y_hat = ((y_sym.to(torch.float64) + mean_g) / gain).float()
    del y_sym, mean_g
    rgb = synthesis_tiled(w.model.to(dev), y_hat, f.height, f.width, dev)
    return assemble(rgb, f.layout, f.chunks)


@torch.no_grad()
def decode_symbols(
    data: bytes, weights: str | os.PathLike = DEFAULT_WEIGHTS, exact_path: str = "float64"
) -> tuple[np.ndarray, np.ndarray]:
    """The entropy-decoded z and y symbols of a file (for exactness checks)."""
    f, w = _open(data, weights, 0)
    z, y_sym, _, _ = _decode_latents(f, w, exact_path)
    return z.numpy(), y_sym.numpy()
