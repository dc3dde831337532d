"""Check nic's default quality on 768x512 photos against JPEG at the same PSNR.

    python benchmarks/default_quality.py [--images ../shared/data/valid] [--quality 75]

For each photo, a 768x512 centre crop is coded by `nic encode` defaults; JPEG
(Pillow, optimize=True) is given the smallest quality that reaches at least the
same PSNR, and the two sizes are compared.
"""

from __future__ import annotations

import click
import numpy as np
import torch
from PIL import Image

import neurocodec
from neurocodec.bench import psnr, reference_decode, reference_encode
from neurocodec.settings import DEFAULT_QUALITY
from neurocodec.training.data import list_images, load_rgb


def centre_crop(a: np.ndarray, w: int = 768, h: int = 512) -> np.ndarray:
    if a.shape[0] > a.shape[1]:
        w, h = h, w
    y, x = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    return np.ascontiguousarray(a[y : y + h, x : x + w])


def jpeg_bytes_for(a: np.ndarray, target: float) -> tuple[int, float]:
    """Smallest JPEG (quality 1..100) whose PSNR is at least `target`."""
    im = Image.fromarray(a)
    lo, hi = 1, 100
    best = None
    while lo <= hi:
        q = (lo + hi) // 2
        data = reference_encode("jpeg", im, q)
        p = psnr(np.asarray(reference_decode(data)), a)
        if p >= target:
            best, hi = (len(data), p), q - 1
        else:
            lo = q + 1
    return best if best else (len(reference_encode("jpeg", im, 100)), float("nan"))


@click.command()
@click.option("--images", default="../shared/data/valid", show_default=True)
@click.option("--quality", default=DEFAULT_QUALITY, show_default=True)
@click.option("--threads", default=2, show_default=True)
def main(images: str, quality: float, threads: int) -> None:
    torch.set_num_threads(threads)
    rows = []
    for path in list_images(images):
        a = centre_crop(load_rgb(path))
        data = neurocodec.encode(a, quality=quality)
        p = psnr(np.asarray(neurocodec.decode(data)), a)
        jb, jp = jpeg_bytes_for(a, p)
        rows.append((len(data), p, jb, jp))
        print(f"{path.name}: nic {len(data)} B {p:.2f} dB | jpeg {jb} B {jp:.2f} dB | ratio {len(data) / jb:.3f}")
    r = np.array(rows)
    print(
        f"\nquality {quality:g} on {len(rows)} crops of 768x512: nic mean {r[:, 1].mean():.2f} dB "
        f"(min {r[:, 1].min():.2f}), {8 * r[:, 0].mean() / (768 * 512):.3f} bpp; JPEG at >= the same PSNR "
        f"{8 * r[:, 2].mean() / (768 * 512):.3f} bpp; nic smaller on {(r[:, 0] < r[:, 2]).sum()}/{len(rows)}; "
        f"below 30 dB: {(r[:, 1] < 30).sum()}"
    )


if __name__ == "__main__":
    main()
