"""Small helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour field with some edges: cheap stand-in for a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width, 3))
    for c in range(3):
        for _ in range(4):
            fy, fx, ph = rng.uniform(0.01, 0.15, 2).tolist() + [rng.uniform(0, 6.3)]
            img[:, :, c] += np.sin(fy * yy + fx * xx + ph)
    img = (img - img.min()) / (np.ptp(img) + 1e-9) * 200 + 28
    img[: height // 2, : width // 3] *= 0.6  # an edge
    return img.clip(0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


@contextmanager
def torch_settings(threads: int, onednn: bool = True) -> Iterator[None]:
    """Run a block with this many torch threads and oneDNN on or off, then restore both: the settings an
    exact path must not depend on."""
    old_threads, old_onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    try:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.mkldnn.enabled = old_onednn
