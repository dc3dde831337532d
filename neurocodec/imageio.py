"""User images in, user images out: what the codec stores besides the RGB pixels.

The network codes 8-bit RGB. Everything else a photo file carries is handled
here: greyscale (coded as RGB, returned as grey), alpha (stored losslessly as
a PNG chunk), the ICC profile (kept), EXIF orientation (applied before coding),
palette, 16-bit and other modes (converted, with a warning where precision or
colour is lost).
"""

from __future__ import annotations

import io
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import NicError, NicWarning
from .format import ALPHA, GREY8, GREYA8, HAS_ALPHA, ICC, RGB8, RGBA8

ImageLike = str | os.PathLike | bytes | Image.Image | np.ndarray
MAX_ICC_BYTES = 16 << 20


@dataclass
class Prepared:
    """An image split into what the network codes and what is stored beside it."""

    rgb: np.ndarray  # (H, W, 3) uint8
    layout: int
    alpha: np.ndarray | None = None  # (H, W) uint8
    icc: bytes | None = None

    def chunks(self) -> dict[bytes, bytes]:
        out = {}
        if self.alpha is not None:
            buf = io.BytesIO()
            Image.fromarray(self.alpha, "L").save(buf, format="PNG", optimize=True)
            out[ALPHA] = buf.getvalue()
        if self.icc:
            out[ICC] = zlib.compress(self.icc, 9)
        return out


def _warn(message: str) -> None:
    warnings.warn(message, NicWarning, stacklevel=3)


def _open(source: Path | io.BytesIO, name: str) -> Image.Image:
    try:
        with Image.open(source) as im:
            # Pillow reads 16-bit RGB as 8-bit RGB; only the undecoded tiles tell.
            deep = any(";16" in str(t.args) for t in im.tile)
            im.load()
            out = ImageOps.exif_transpose(im) or im.copy()
            out.info["nic_16bit"] = deep
            return out
    except Image.DecompressionBombError as e:
        raise NicError(f"{name} is too large for Pillow's decompression-bomb limit ({e})") from e
    except Exception as e:
        raise NicError(f"cannot read {name} as an image ({type(e).__name__})") from e


def _from_16bit(a: np.ndarray) -> np.ndarray:
    return ((a.astype(np.float64) / 257.0).round().clip(0, 255)).astype(np.uint8)


def _from_pil(im: Image.Image) -> Prepared:
    icc = im.info.get("icc_profile") or None
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        _warn(f"{mode} image with more than 8 bits per sample converted to 8 bits")
        return Prepared(np.repeat(_from_16bit(np.asarray(im))[:, :, None], 3, axis=2), GREY8, icc=icc)
    if mode == "F":
        _warn("floating-point image clipped to 0..255 and rounded to 8 bits")
        a = np.asarray(im, dtype=np.float64).round().clip(0, 255).astype(np.uint8)
        return Prepared(np.repeat(a[:, :, None], 3, axis=2), GREY8, icc=icc)
    if im.info.get("nic_16bit"):
        _warn("16-bit image converted to 8 bits per sample")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode == "La":
        im = im.convert("LA")
    elif mode in ("RGBa", "RGBX"):
        im = im.convert("RGBA" if mode == "RGBa" else "RGB")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        if icc:
            _warn(f"{mode} image converted to RGB; its {mode} colour profile is dropped")
            icc = None
        im = im.convert("RGB")
    a = np.asarray(im)
    if im.mode == "L":
        return Prepared(np.repeat(a[:, :, None], 3, axis=2), GREY8, icc=icc)
    if im.mode == "LA":
        return Prepared(np.repeat(a[:, :, :1], 3, axis=2), GREYA8, np.ascontiguousarray(a[:, :, 1]), icc)
    if im.mode == "RGBA":
        return Prepared(np.ascontiguousarray(a[:, :, :3]), RGBA8, np.ascontiguousarray(a[:, :, 3]), icc)
    return Prepared(np.ascontiguousarray(a), RGB8, icc=icc)


def _from_array(a: np.ndarray) -> Prepared:
    if a.dtype != np.uint8:
        raise NicError(f"numpy images must be uint8, not {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return Prepared(np.repeat(a[:, :, None], 3, axis=2), GREY8)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise NicError(f"numpy images must be HxW, HxWx1, HxWx3 or HxWx4, not shape {a.shape}")
    if a.shape[2] == 4:
        return Prepared(np.ascontiguousarray(a[:, :, :3]), RGBA8, np.ascontiguousarray(a[:, :, 3]))
    return Prepared(np.ascontiguousarray(a), RGB8)


def prepare(image: ImageLike) -> Prepared:
    """A path, the bytes of an image file, a PIL image or a uint8 array, ready to code."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise NicError(f"no such file: {path}")
        if path.is_dir():
            raise NicError(f"{path} is a directory, not an image")
        return _from_pil(_open(path, str(path)))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _from_pil(_open(io.BytesIO(image), "the input"))
    if isinstance(image, Image.Image):
        return _from_pil(ImageOps.exif_transpose(image) or image)
    if isinstance(image, np.ndarray):
        return _from_array(image)
    raise NicError(f"cannot encode an object of type {type(image).__name__}")


def _alpha_plane(data: bytes, width: int, height: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
            if im.mode != "L" or im.size != (width, height):
                raise ValueError
            return np.asarray(im)
    except Exception as e:
        raise NicError("corrupted .nic file (unreadable alpha plane)") from e


def icc_profile(data: bytes) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_ICC_BYTES)
    except zlib.error as e:
        raise NicError("corrupted .nic file (unreadable colour profile)") from e
    if d.unconsumed_tail or not d.eof:
        raise NicError("corrupted .nic file (colour profile truncated or too large)")
    return out


def assemble(rgb: np.ndarray, layout: int, chunks: dict[bytes, bytes]) -> Image.Image:
    """Decoded RGB pixels plus the file's chunks -> the PIL image the user gave us."""
    h, w = rgb.shape[:2]
    if layout in (GREY8, GREYA8):
        grey = ((rgb.astype(np.uint16).sum(axis=2) + 1) // 3).astype(np.uint8)
        image = Image.fromarray(grey, "L")
    else:
        image = Image.fromarray(rgb, "RGB")
    if layout in HAS_ALPHA:
        alpha = Image.fromarray(_alpha_plane(chunks[ALPHA], w, h), "L")
        image = Image.merge("LA" if layout == GREYA8 else "RGBA", [*image.split(), alpha])
    if ICC in chunks:
        image.info["icc_profile"] = icc_profile(chunks[ICC])
    return image
