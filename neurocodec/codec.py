"""The Python API: `encode(image) -> bytes` and `decode(bytes) -> PIL.Image`.

Pipeline: pixels -> g_a -> y; y -> h_a -> z (rounded); z -> exact integer
h_s -> mean, scale of y; gained y rounded around its mean; z and y entropy
coded with integer tables; decode runs the same exact steps backwards and
the float synthesis g_s.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .coder import SectionDecoder, encode_sections
from .errors import NicError
from .format import NicFile, parse
from .tables import SCALE_FRAC_BITS
from .weights import DEFAULT_WEIGHTS, GAIN_FRAC_BITS, Weights, load_weights

ImageLike = str | os.PathLike | Image.Image | np.ndarray

DEFAULT_QUALITY = 75.0
Y_STRIDE = 16  # image -> y
Z_STRIDE = 4  # y -> z
MAX_PIXELS = 2 * 89_478_485  # refuse larger declared sizes, like Pillow's bomb limit x2


def pick_device(device: str = "auto") -> torch.device:
    """'auto' takes CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise NicError("--device cuda asked for, but no CUDA device is available (use --device auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise NicError(f"unknown device {device!r} (use auto, cpu or cuda)")
    return torch.device(device)


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """A path, PIL image or uint8 array as an (H, W, 3) uint8 array."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise NicError(f"no such file: {path}")
        if path.is_dir():
            raise NicError(f"{path} is a directory, not an image")
        try:
            with Image.open(path) as im:
                im.load()
                return to_rgb_array(im)
        except NicError:
            raise
        except Exception as e:
            raise NicError(f"cannot read {path} as an image ({type(e).__name__})") from e
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        a = image
        if a.dtype != np.uint8:
            raise NicError(f"numpy images must be uint8, not {a.dtype}")
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise NicError(f"numpy images must be HxW, HxWx3 or HxWx4, not shape {a.shape}")
        return np.ascontiguousarray(a[:, :, :3])
    raise NicError(f"cannot encode an object of type {type(image).__name__}")


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


def _entropy_params(
    w: Weights, z: torch.Tensor, y_shape: tuple[int, int], gain_q: torch.Tensor, reference: bool = False
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Exact table index of every y symbol, plus its gained mean and the gain (float64)."""
    mean_q, scale_q = w.hyper(z, reference=reference)
    h, wd = y_shape
    mean_q, scale_q = mean_q[:, :, :h, :wd], scale_q[:, :, :h, :wd]
    g = gain_q.view(1, -1, 1, 1)
    idx = torch.searchsorted(w.thresholds, (scale_q.clamp_min(0) * g).contiguous(), right=True)
    mean_g = (mean_q * g).to(torch.float64) / 2.0**SCALE_FRAC_BITS
    gain = g.to(torch.float64) / 2.0**GAIN_FRAC_BITS
    return idx.numpy(), mean_g, gain


def _z_index(w: Weights, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[1]).reshape(1, -1, 1, 1), shape)


def _latent_sizes(width: int, height: int) -> tuple[int, int, int, int]:
    hy, wy = -(-height // Y_STRIDE), -(-width // Y_STRIDE)
    return hy, wy, -(-hy // Z_STRIDE), -(-wy // Z_STRIDE)


@torch.no_grad()
def encode(
    image: ImageLike,
    quality: float = DEFAULT_QUALITY,
    device: str = "auto",
    weights: str | os.PathLike = DEFAULT_WEIGHTS,
) -> bytes:
    """Compress an image (path, PIL image or uint8 array) to .nic bytes.

    quality: 0 (smallest) .. 100 (best), continuous.
    """
    rgb = to_rgb_array(image)
    height, width = rgb.shape[:2]
    if height * width == 0:
        raise NicError("cannot encode an empty image")
    q100 = quality_x100(quality)
    w = load_weights(Path(weights))
    dev = pick_device(device)
    model = w.model.to(dev)
    hy, wy, hz, wz = _latent_sizes(width, height)
    x = torch.from_numpy(rgb).to(dev).permute(2, 0, 1)[None].float()
    x = F.pad(x, (0, wy * Y_STRIDE - width, 0, hy * Y_STRIDE - height), mode="replicate")
    y = model.analysis(x)
    y_padded = F.pad(y, (0, wz * Z_STRIDE - wy, 0, hz * Z_STRIDE - hy))
    z = model.h_a(y_padded).round().cpu().to(torch.int64)
    gain_q = gains_for(w.gains, q100)
    idx, mean_g, gain = _entropy_params(w, z, (hy, wy), gain_q)
    y_sym = torch.round(y.cpu().to(torch.float64) * gain - mean_g).to(torch.int64)
    ans, overflow = encode_sections(
        [
            (z.numpy(), _z_index(w, tuple(z.shape)), w.z_tables),
            (y_sym.numpy(), idx, w.y_tables),
        ]
    )
    return NicFile(width, height, q100, w.identity, ans, overflow).to_bytes()


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
    idx, mean_g, gain = _entropy_params(w, z, (hy, wy), gain_q, reference=exact_path == "int64")
    y_sym = torch.from_numpy(dec.decode(idx, w.y_tables))
    dec.finish()
    return z, y_sym, mean_g, gain


def _open(data: bytes, weights: str | os.PathLike) -> tuple[NicFile, Weights]:
    f = parse(bytes(data))
    if f.width * f.height > MAX_PIXELS:
        raise NicError(f"image of {f.width}x{f.height} exceeds the {MAX_PIXELS}-pixel safety limit")
    w = load_weights(Path(weights))
    if f.model_id != w.identity:
        raise NicError(f"file needs model {f.model_id.hex()}, but the loaded weights are {w.identity.hex()}")
    return f, w


@torch.no_grad()
def decode(
    data: bytes, device: str = "auto", weights: str | os.PathLike = DEFAULT_WEIGHTS, exact_path: str = "float64"
) -> Image.Image:
    """Decompress .nic bytes to an RGB PIL image.

    exact_path: how the integer hyper-synthesis is evaluated, "float64"
    (fast) or "int64" (reference); both give identical symbols.
    """
    f, w = _open(data, weights)
    _, y_sym, mean_g, gain = _decode_latents(f, w, exact_path)
    dev = pick_device(device)
    y_hat = ((y_sym.to(torch.float64) + mean_g) / gain).float().to(dev)
    x = w.model.to(dev).synthesis(y_hat)[0, :, : f.height, : f.width]
    rgb = x.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


@torch.no_grad()
def decode_symbols(
    data: bytes, weights: str | os.PathLike = DEFAULT_WEIGHTS, exact_path: str = "float64"
) -> tuple[np.ndarray, np.ndarray]:
    """The entropy-decoded z and y symbols of a file (for exactness checks)."""
    f, w = _open(data, weights)
    z, y_sym, _, _ = _decode_latents(f, w, exact_path)
    return z.numpy(), y_sym.numpy()
