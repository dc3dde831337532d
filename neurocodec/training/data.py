"""Training data: photos decoded once into a uint8 cache, then random crops.

Decoding JPEGs at every step would spend the two cores on libjpeg instead of
on the network, so every training photo is decoded once into one flat
memory-mapped file (about 2 GB for ../shared/data/train) and crops are cut
from it with plain slicing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder`, sorted so every run sees the same order."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 array."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class ImageCache:
    """All images of a folder, decoded, in one memory-mapped uint8 file."""

    def __init__(self, folder: str | Path, cache_dir: str | Path = ".cache") -> None:
        files = list_images(folder)
        if not files:
            raise ValueError(f"no images found in {folder}")
        key = hashlib.sha256("\n".join(f"{p.name}:{p.stat().st_size}" for p in files).encode()).hexdigest()[:16]
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        data_path = cache_dir / f"images-{key}.u8"
        index_path = cache_dir / f"images-{key}.npy"
        if not index_path.exists():
            self._build(files, data_path, index_path)
        self.index = np.load(index_path)  # rows: offset, height, width
        self.data = np.memmap(data_path, dtype=np.uint8, mode="r")

    @staticmethod
    def _build(files: list[Path], data_path: Path, index_path: Path) -> None:
        index = []
        offset = 0
        tmp = data_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for p in files:
                a = load_rgb(p)
                f.write(a.tobytes())
                index.append((offset, a.shape[0], a.shape[1]))
                offset += a.size
        os.replace(tmp, data_path)
        np.save(index_path, np.array(index, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.index)

    def image(self, i: int) -> np.ndarray:
        off, h, w = (int(v) for v in self.index[i])
        return self.data[off : off + h * w * 3].reshape(h, w, 3)

    def crops(self, batch: int, size: int, rng: np.random.Generator) -> torch.Tensor:
        """`batch` random crops with random horizontal flips, float (B, 3, size, size) in [0, 255].

        Images are drawn in proportion to the square root of their area: big
        photos give more distinct crops, but should not drown the small ones.
        """
        areas = self.index[:, 1] * self.index[:, 2]
        weights = np.sqrt(areas / areas.max())
        picks = rng.choice(len(self), size=batch, p=weights / weights.sum())
        out = np.empty((batch, size, size, 3), dtype=np.uint8)
        for j, i in enumerate(picks):
            img = self.image(int(i))
            h, w = img.shape[:2]
            y = rng.integers(0, h - size + 1)
            x = rng.integers(0, w - size + 1)
            c = img[y : y + size, x : x + size]
            out[j] = c[:, ::-1] if rng.random() < 0.5 else c
        return torch.from_numpy(out).permute(0, 3, 1, 2).float()
