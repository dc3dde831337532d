"""Training data: photos decoded once into a uint8 cache, then random crops.

Decoding JPEGs at every step would spend the two cores on libjpeg instead of
on the network, so every training photo is decoded once into one flat
memory-mapped file (about 2 GB for ../shared/data/train) and crops are cut
from it with plain slicing. On a GPU, `DeviceImages` holds the same pixels in
the GPU's memory and cuts the crops there, so no pixels cross to the device
during training.
"""

from __future__ import annotations

import copy
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..atomic import replacing

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder`, sorted so every run sees the same order."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 array."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class ImageCache:
    """All images of a folder (or its first `limit`), decoded, in one memory-mapped uint8 file."""

    def __init__(self, folder: str | Path, cache_dir: str | Path = ".cache", limit: int | None = None) -> None:
        files = list_images(folder)[:limit]
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
        self.items = np.arange(len(self.index))  # the images crops come from (`subset`)

    @staticmethod
    def _build(files: list[Path], data_path: Path, index_path: Path) -> None:
        """Decode on several threads (Pillow lets go of the GIL), write in order.

        Each file is written under a temporary name of its own (`replacing`:
        mkstemp, unique across the machines of a multi-node run on a shared
        disk, where the same process id may run on two of them) and renamed
        into place, so several ranks may build the same cache at once; the
        index goes last, as it says the pixels are there.
        """
        index = []
        offset = 0
        with replacing(data_path) as f, ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            for a in pool.map(load_rgb, files):
                f.write(a.tobytes())
                index.append((offset, a.shape[0], a.shape[1]))
                offset += a.size
        with replacing(index_path) as f:
            np.save(f, np.array(index, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, items: list[int]) -> ImageCache:
        """The same cache, its crops cut from the images `items` only (a rank's shard)."""
        view = copy.copy(self)
        view.items = np.asarray(items, dtype=np.int64)
        return view

    def image(self, i: int) -> np.ndarray:
        off, h, w = (int(v) for v in self.index[i])
        return self.data[off : off + h * w * 3].reshape(h, w, 3)

    def crops(self, batch: int, size: int, rng: np.random.Generator) -> torch.Tensor:
        """`batch` random crops with random horizontal flips, float (B, 3, size, size) in [0, 255].

        Images are drawn in proportion to the square root of their area: big
        photos give more distinct crops, but should not drown the small ones.
        """
        areas = self.index[self.items, 1] * self.index[self.items, 2]
        weights = np.sqrt(areas / areas.max())
        picks = self.items[rng.choice(len(self.items), size=batch, p=weights / weights.sum())]
        out = np.empty((batch, size, size, 3), dtype=np.uint8)
        for j, i in enumerate(picks):
            img = self.image(int(i))
            h, w = img.shape[:2]
            y = rng.integers(0, h - size + 1)
            x = rng.integers(0, w - size + 1)
            c = img[y : y + size, x : x + size]
            out[j] = c[:, ::-1] if rng.random() < 0.5 else c
        return torch.from_numpy(out).permute(0, 3, 1, 2).float()


class DeviceImages:
    """An `ImageCache`'s images (its `items`) in one flat uint8 tensor on the device, crops cut there.

    Copying each batch's pixels from the host, and cutting them there one
    crop at a time, would leave a GPU waiting; here crops, flips and the
    choice of photo are a few tensor operations on the device, drawn from a
    device generator, with no host synchronisation.
    """

    def __init__(self, cache: ImageCache, device: torch.device) -> None:
        rows = cache.index[cache.items]
        sizes = rows[:, 1] * rows[:, 2] * 3
        self.flat = torch.empty(int(sizes.sum()), dtype=torch.uint8, device=device)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        for i, off, n in zip(cache.items, offsets, sizes):  # one photo at a time: no second copy of them all
            self.flat[off : off + n].copy_(torch.from_numpy(np.array(cache.image(int(i)))).flatten())
        self.offsets = torch.from_numpy(offsets).to(device)
        self.heights = torch.from_numpy(rows[:, 1].copy()).to(device)
        self.widths = torch.from_numpy(rows[:, 2].copy()).to(device)
        self.device = device
        self._cdfs: dict[int, torch.Tensor] = {}  # per crop size: where each photo's share of the draws ends

    def __len__(self) -> int:
        return len(self.offsets)

    def crops(self, batch: int, size: int, gen: torch.Generator) -> torch.Tensor:
        """Like `ImageCache.crops` (square-root-of-area draws, random flips), channels_last on the device.

        Photos smaller than `size` are never drawn.
        """
        dev = self.device
        cdf = self._cdfs.get(size)
        if cdf is None:  # once per crop size: the check reads the device
            areas = (self.heights * self.widths).double()
            weights = areas.sqrt() * ((self.heights >= size) & (self.widths >= size))
            if not bool(weights.any()):
                raise ValueError(f"no training photo is {size}x{size} pixels or larger")
            cdf = self._cdfs[size] = weights.cumsum(0) / weights.sum()
        u = torch.rand(batch, 3, generator=gen, device=dev, dtype=torch.float64)
        picks = torch.searchsorted(cdf, u[:, 0].contiguous(), right=True).clamp_max(len(self) - 1)
        h, w = self.heights[picks], self.widths[picks]
        y = (u[:, 1] * (h - size + 1)).long().clamp_max(h - size)
        x = (u[:, 2] * (w - size + 1)).long().clamp_max(w - size)
        flip = torch.rand(batch, generator=gen, device=dev) < 0.5
        i = torch.arange(size, device=dev)
        cols = x[:, None] + torch.where(flip[:, None], size - 1 - i, i)  # (B, size)
        rows = y[:, None] + i
        pixel = self.offsets[picks, None, None] + (rows[:, :, None] * w[:, None, None] + cols[:, None, :]) * 3
        out = self.flat[pixel[..., None] + torch.arange(3, device=dev)]  # (B, size, size, 3): NHWC
        return out.permute(0, 3, 1, 2).float()
