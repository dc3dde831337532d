"""Compress and restore a photo with the Python API, and report what it cost.

python examples/api_example.py examples/fig.png
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

import neurocodec


def main(path: str, quality: float = 75.0) -> None:
    original = Image.open(path).convert("RGB")
    data = neurocodec.encode(original, quality=quality)
    restored = neurocodec.decode(data)
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(restored, dtype=np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    bpp = 8 * len(data) / (original.width * original.height)
    print(f"{path}: {len(data)} bytes, {bpp:.3f} bits/pixel, PSNR {psnr:.2f} dB at quality {quality:g}")
    out = Path(path).with_suffix(".decoded.png").name
    restored.save(out)
    print(f"decoded image written to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("fig.png")))
