"""The reference codecs, run through Pillow exactly as the benchmark protocol says.

JPEG (libjpeg-turbo, optimize=True), JPEG 2000 (OpenJPEG, irreversible 9/7 with
the colour transform), WebP (method 6) and AVIF (libavif, speed 4); everything
else is Pillow's default.
"""

from __future__ import annotations

import io

from PIL import Image, features

from ..errors import NicError

REFERENCES = ("jpeg", "jpeg2000", "webp", "avif")
LABELS = {"nic": "nic", "jpeg": "JPEG", "jpeg2000": "JPEG 2000", "webp": "WebP", "avif": "AVIF"}
# How each reference is called: V is the swept value. Everything else is Pillow's default
# (e.g. 4:2:0 chroma subsampling for JPEG, WebP and AVIF).
REFERENCE_SETTINGS = {
    "jpeg": 'JPEG (libjpeg-turbo): im.save(f, "JPEG", quality=V, optimize=True)',
    "jpeg2000": (
        'JPEG 2000 (OpenJPEG): im.save(f, "JPEG2000", irreversible=True, mct=1, quality_mode="rates", '
        "quality_layers=[V]) (V = compression ratio: 24/V bpp before headers)"
    ),
    "webp": 'WebP (libwebp): im.save(f, "WEBP", quality=V, method=6)',
    "avif": 'AVIF (libavif): im.save(f, "AVIF", quality=V, speed=4)',
}
SWEEPS = {
    "jpeg": [2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "jpeg2000": [300, 200, 150, 100, 70, 50, 35, 25, 16, 12, 8],
    "webp": [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "avif": [5, 15, 25, 35, 45, 55, 65, 75, 85, 92],
}
_PIL_FEATURE = {"jpeg": "jpg", "jpeg2000": "jpg_2000", "webp": "webp", "avif": "avif"}
_LIBRARY = {"jpeg": "libjpeg-turbo", "jpeg2000": "OpenJPEG", "webp": "libwebp", "avif": "libavif"}


def _save(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, **kwargs)
    return buf.getvalue()


def reference_encode(codec: str, image: Image.Image, value: float) -> bytes:
    """Encode with a reference codec exactly as REFERENCE_SETTINGS says."""
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


def library_versions() -> dict[str, str]:
    """Pillow's version and, per reference codec, the library Pillow uses for it."""
    import PIL

    out = {"pillow": PIL.__version__}
    for codec, feat in _PIL_FEATURE.items():
        if not features.check(feat):
            out[codec] = f"{_LIBRARY[codec]} (missing)"
        elif codec == "jpeg" and features.check_feature("libjpeg_turbo"):
            out[codec] = f"libjpeg-turbo {features.version_feature('libjpeg_turbo')}"
        elif codec == "avif":
            out[codec] = f"libavif {features.version(feat)}, {_avif_codecs()}"
        else:
            lib = "libjpeg" if codec == "jpeg" else _LIBRARY[codec]
            out[codec] = f"{lib} {features.version(feat)}"
    return out


def _avif_codecs() -> str:
    try:
        from PIL import _avif

        return _avif.codec_versions()
    except (ImportError, AttributeError):
        return "AV1 codec unknown"


def parse_codecs(text: str) -> list[str]:
    """'jpeg,webp' or 'all' -> reference codec names (in canonical order); NicError if unknown."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names:
        raise NicError("--vs needs at least one codec (jpeg, jpeg2000, webp, avif or all)")
    out: list[str] = []
    for n in names:
        if n not in (*REFERENCES, "all"):
            raise NicError(f"unknown codec {n!r} (choose from {', '.join(REFERENCES)} or all)")
        out += list(REFERENCES) if n == "all" else [n]
    for c in out:
        if not features.check(_PIL_FEATURE[c]):
            raise NicError(f"this Pillow was built without {LABELS[c]} support ({_LIBRARY[c]})")
    return [c for c in REFERENCES if c in out]
