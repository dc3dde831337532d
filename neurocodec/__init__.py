"""neurocodec: a learned image codec (`nic`).

import neurocodec
data = neurocodec.encode("photo.png", quality=75)   # bytes of a .nic file
image = neurocodec.decode(data)                     # PIL.Image

Importing it also registers .nic with Pillow: Image.open("x.nic"), image.save("x.nic").
Importing it does not import torch: the codec is loaded on the first encode or decode.
The package's map is in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from . import pil_plugin as _pil_plugin  # noqa: F401 -- registers .nic with Pillow
from .errors import NicError, NicWarning
from .settings import DEFAULT_EFFORT, DEFAULT_QUALITY, MAX_EFFORT

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_EFFORT",
    "DEFAULT_QUALITY",
    "MAX_EFFORT",
    "NicError",
    "NicWarning",
    "__version__",
    "decode",
    "encode",
]


def encode(image, quality: float = DEFAULT_QUALITY, device: str = "auto", **kwargs) -> bytes:
    """Compress an image (path, PIL image or uint8 array) to .nic bytes; see `api.encode`."""
    from .api import encode as _encode

    return _encode(image, quality=quality, device=device, **kwargs)


def decode(data: bytes, device: str = "auto", **kwargs):
    """Decompress .nic bytes to a PIL image; see `api.decode`."""
    from .api import decode as _decode

    return _decode(data, device=device, **kwargs)
