"""Validation rate-distortion against training pixels seen, from training logs.

    python benchmarks/training_curve.py runs/train-*.log

The training loop validates every --valid-every minutes on centre crops of the
first validation photos (estimated bits, real PSNR). This script pairs each of
those lines with the pixel count logged just before it and turns the curve of
that moment into one number, the BD-rate against JPEG (Pillow, optimize=True,
real bytes) on the same crops, so that runs with different quality ladders
compare. Prints a markdown table.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from neurocodec.bench import SWEEPS, bd_rate, measure, reference_decode, reference_encode
from neurocodec.training.data import list_images, load_rgb
from neurocodec.training.loop import centre_crop

STEP = re.compile(r"^step (\d+) .* pixels ([0-9.e+]+)")
LEVEL = re.compile(r"q\d+ ([0-9.]+)bpp ([0-9.]+)dB")


def parse(paths: list[Path]) -> list[tuple[int, float, list[tuple[float, float]]]]:
    """(step, pixels, [(bpp, psnr) per level]) for every validation line."""
    out, step, pixels = [], 0, 0.0
    for path in paths:
        for line in path.read_text().splitlines():
            if m := STEP.match(line):
                step, pixels = int(m.group(1)), float(m.group(2))
            elif line.startswith("valid:"):
                pts = [(float(b), float(p)) for b, p in LEVEL.findall(line)]
                out.append((step, pixels, pts))
    return out


@click.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--valid", default="../shared/data/valid", show_default=True)
@click.option("--valid-images", default=6, show_default=True, help="As in the training run.")
def main(logs: tuple[Path, ...], valid: str, valid_images: int) -> None:
    crops = [centre_crop(load_rgb(p)) for p in list_images(valid)[:valid_images]]
    jpeg = [measure(crops, q, lambda im, s: reference_encode("jpeg", im, s), reference_decode) for q in SWEEPS["jpeg"]]
    anchor = [(p.bpp, p.psnr) for p in jpeg]
    print("| step | pixels seen | levels | lowest level bpp/PSNR | highest level bpp/PSNR | BD-rate vs JPEG |")
    print("| ---: | ---: | ---: | --- | --- | ---: |")
    for step, pixels, pts in parse(list(logs)):
        bd = bd_rate(anchor, pts)
        lo, hi = pts[0], pts[-1]
        print(
            f"| {step} | {pixels:.3e} | {len(pts)} | {lo[0]:.3f}/{lo[1]:.2f} | {hi[0]:.3f}/{hi[1]:.2f} | {bd:+.1f}% |"
        )


if __name__ == "__main__":
    main()
