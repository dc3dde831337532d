"""User images in, user images out: what the codec stores besides the RGB pixels.

The network codes 8-bit RGB. Everything else a photo file carries is handled
here: greyscale (coded as RGB, returned as grey), alpha (stored losslessly as
a PNG chunk), metadata (the ICC profile, EXIF and XMP, kept by default like
avifenc does; EXIF orientation is applied to the pixels first and then reset),
palette, 16-bit and other modes (converted, with a warning where precision or
colour is lost). Whatever a file carries that is not kept (extra frames, DPI,
text comments, metadata left out with `metadata=`) is dropped with a warning.
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
from .format import ALPHA, EXIF, GREY8, GREYA8, HAS_ALPHA, ICC, RGB8, RGBA8, XMP

ImageLike = str | os.PathLike | bytes | Image.Image | np.ndarray
MAX_ICC_BYTES = 16 << 20  # the most an ICC profile or an XMP packet may inflate to
METADATA = ("icc", "exif", "xmp")  # what `metadata=` can keep
EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION = 0x0112
X_RESOLUTION = 0x011A


def metadata_kinds(spec: str | tuple | list | set | frozenset = "all") -> frozenset[str]:
    """'all', 'none' or a comma-separated subset of icc, exif, xmp (or a collection of them)."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("all", ""):
            return frozenset(METADATA)
        if text == "none":
            return frozenset()
        spec = [t.strip() for t in text.split(",") if t.strip()]
    kinds = frozenset(str(k).lower() for k in spec)
    if not kinds <= set(METADATA):
        bad = ", ".join(sorted(kinds - set(METADATA)))
        raise NicError(f"unknown metadata {bad!r}: use all, none or a list of {', '.join(METADATA)}")
    return kinds


@dataclass
class Prepared:
    """An image split into what the network codes and what is stored beside it."""

    rgb: np.ndarray  # (H, W, 3) uint8
    layout: int
    alpha: np.ndarray | None = None  # (H, W) uint8
    icc: bytes | None = None
    exif: bytes | None = None  # "Exif\0\0" + TIFF structure, orientation already applied
    xmp: bytes | None = None

    def chunks(self) -> dict[bytes, bytes]:
        out = {}
        if self.alpha is not None:
            buf = io.BytesIO()
            Image.fromarray(self.alpha, "L").save(buf, format="PNG", optimize=True)
            out[ALPHA] = buf.getvalue()
        if self.icc:
            out[ICC] = zlib.compress(self.icc, 9)
        if self.exif:
            out[EXIF] = self.exif
        if self.xmp:
            out[XMP] = zlib.compress(self.xmp, 9)
        return out


class PreparedSource:
    """What rate control asks of a codable (`ratecontrol.Codable`) that keeps its `Prepared` image as `img`."""

    img: Prepared

    @property
    def pixels(self) -> int:
        return self.img.rgb.shape[0] * self.img.rgb.shape[1]

    @property
    def source(self) -> np.ndarray:
        """The RGB pixels being coded."""
        return self.img.rgb


def _warn(message: str) -> None:
    warnings.warn(message, NicWarning, stacklevel=4)


def _dropped(im: Image.Image) -> list[str]:
    """What the file holds that a .nic file will not: extra frames, text chunks, comments."""
    notes = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"only the first of its {frames} frames is coded (.nic holds one still image)")
    texts = [k for k in (getattr(im, "text", None) or {}) if k != "XML:com.adobe.xmp"]
    if texts:
        notes.append(f"its text chunks are dropped ({', '.join(texts)})")
    if im.info.get("comment"):
        notes.append("its comment is dropped")
    return notes


def _open(source: Path | io.BytesIO, name: str) -> Image.Image:
    try:
        with Image.open(source) as im:
            # Pillow reads 16-bit RGB as 8-bit RGB; only the undecoded tiles tell.
            deep = any(";16" in str(t.args) for t in im.tile)
            notes = _dropped(im)
            im.load()
            out = _upright(im)
            out.info["nic_16bit"] = deep
            out.info["nic_dropped"] = notes
            return out
    except Image.DecompressionBombError as e:
        raise NicError(f"{name} is too large for Pillow's decompression-bomb limit ({e})") from e
    except Exception as e:
        raise NicError(f"cannot read {name} as an image ({type(e).__name__})") from e


def _upright(im: Image.Image) -> Image.Image:
    """The image as a viewer shows it: EXIF orientation applied, and removed from its EXIF and XMP."""
    return ImageOps.exif_transpose(im) or im.copy()


def _from_16bit(a: np.ndarray) -> np.ndarray:
    return ((a.astype(np.float64) / 257.0).round().clip(0, 255)).astype(np.uint8)


def _metadata(im: Image.Image, keep: frozenset[str]) -> dict:
    """The ICC profile, EXIF and XMP to store, of those `keep` names; a warning for a DPI that is lost."""
    tags = im.getexif()
    exif = im.info.get("exif") or None
    if exif and not exif.startswith(EXIF_HEADER):  # WebP and PNG carry the bare TIFF structure
        exif = EXIF_HEADER + exif
    if exif and tags.get(ORIENTATION, 1) != 1:  # applied to the pixels already: reset it
        tags[ORIENTATION] = 1
        exif = tags.tobytes()
    xmp = im.info.get("xmp") or None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    dpi = im.info.get("dpi")
    real_dpi = dpi and tuple(round(float(v)) for v in dpi) != (1, 1)  # (1, 1): an aspect ratio, no resolution
    if im.info.get("jfif_unit") == 0 and X_RESOLUTION not in tags:
        real_dpi = False  # a JPEG without a resolution, where Pillow guesses 72 dpi
    if real_dpi and not ("exif" in keep and exif and X_RESOLUTION in tags):
        _warn(f"its resolution ({round(float(dpi[0]))} dpi) is not stored")
    return {
        "icc": (im.info.get("icc_profile") or None) if "icc" in keep else None,
        "exif": exif if "exif" in keep else None,
        "xmp": xmp if "xmp" in keep else None,
    }


def _from_pil(im: Image.Image, keep: frozenset[str]) -> Prepared:
    for note in im.info.get("nic_dropped", []):
        _warn(note)
    meta = _metadata(im, keep)
    icc = meta["icc"]
    mode = im.mode

    def done(rgb: np.ndarray, layout: int, alpha: np.ndarray | None = None) -> Prepared:
        return Prepared(rgb, layout, alpha, icc, meta["exif"], meta["xmp"])

    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        _warn(f"{mode} image with more than 8 bits per sample converted to 8 bits")
        return done(np.repeat(_from_16bit(np.asarray(im))[:, :, None], 3, axis=2), GREY8)
    if mode == "F":
        _warn("floating-point image clipped to 0..255 and rounded to 8 bits")
        a = np.asarray(im, dtype=np.float64).round().clip(0, 255).astype(np.uint8)
        return done(np.repeat(a[:, :, None], 3, axis=2), GREY8)
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
        else:
            _warn(f"{mode} image converted to RGB (without its colour profile, colours may shift)")
        im = im.convert("RGB")
    a = np.asarray(im)
    if im.mode == "L":
        return done(np.repeat(a[:, :, None], 3, axis=2), GREY8)
    if im.mode == "LA":
        return done(np.repeat(a[:, :, :1], 3, axis=2), GREYA8, np.ascontiguousarray(a[:, :, 1]))
    if im.mode == "RGBA":
        return done(np.ascontiguousarray(a[:, :, :3]), RGBA8, np.ascontiguousarray(a[:, :, 3]))
    return done(np.ascontiguousarray(a), RGB8)


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


def prepare(image: ImageLike, metadata: str | tuple | list | set | frozenset = "all") -> Prepared:
    """A path, the bytes of an image file, a PIL image or a uint8 array, ready to code.

    metadata: which of the ICC profile, EXIF and XMP to keep ('all', 'none' or a list; see `metadata_kinds`).
    """
    keep = metadata_kinds(metadata)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise NicError(f"no such file: {path}")
        if path.is_dir():
            raise NicError(f"{path} is a directory, not an image")
        return _from_pil(_open(path, str(path)), keep)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _from_pil(_open(io.BytesIO(image), "the input"), keep)
    if isinstance(image, Image.Image):
        upright = _upright(image)
        upright.info["nic_dropped"] = _dropped(image)
        return _from_pil(upright, keep)
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


def inflate(data: bytes, what: str = "colour profile") -> bytes:
    """A zlib chunk (the ICC profile, XMP), refusing one that is damaged or inflates past MAX_ICC_BYTES."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_ICC_BYTES)
    except zlib.error as e:
        raise NicError(f"corrupted .nic file (unreadable {what})") from e
    if d.unconsumed_tail or not d.eof:
        raise NicError(f"corrupted .nic file ({what} truncated or too large)")
    return out


def metadata_info(chunks: dict[bytes, bytes]) -> dict:
    """The metadata a file's chunks hold, as Pillow names them in `Image.info`."""
    info = {}
    if ICC in chunks:
        info["icc_profile"] = inflate(chunks[ICC])
    if EXIF in chunks:
        info["exif"] = chunks[EXIF]
    if XMP in chunks:
        info["xmp"] = inflate(chunks[XMP], "XMP metadata")
    return info


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
    image.info.update(metadata_info(chunks))
    return image
