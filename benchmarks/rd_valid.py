"""Rate-distortion of nic's quality ladder against JPEG, JPEG 2000, WebP and AVIF.

    python benchmarks/rd_valid.py                       # ../shared/data/valid, all references
    python benchmarks/rd_valid.py --images examples --refs jpeg

Reference curves are cached in benchmarks/results/ (keyed by the image set),
since they do not change when the model does. Prints a table and BD-rates and
writes everything to --out as JSON.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np
import torch

import neurocodec
from neurocodec.bench import (
    REFERENCE_SETTINGS,
    SWEEPS,
    bd_rate,
    measure,
    rate_at_psnr,
    reference_decode,
    reference_encode,
)
from neurocodec.data import list_images, load_rgb
from neurocodec.weights import DEFAULT_WEIGHTS, load_weights

RESULTS = Path(__file__).resolve().parent / "results"


def _key(files: list[Path]) -> str:
    return hashlib.sha256("\n".join(f"{p.name}:{p.stat().st_size}" for p in files).encode()).hexdigest()[:12]


def reference_curves(files: list[Path], images: list[np.ndarray], refs: list[str]) -> dict:
    cache = RESULTS / f"refs-{Path(files[0]).parent.name}-{_key(files)}.json"
    curves = json.loads(cache.read_text()) if cache.exists() else {}
    for codec in refs:
        if codec in curves:
            continue
        pts = []
        for v in SWEEPS[codec]:
            p = measure(images, v, lambda im, s, c=codec: reference_encode(c, im, s), reference_decode)
            pts.append(asdict(p))
            print(f"  {codec} {v}: {p.bpp:.3f} bpp {p.psnr:.2f} dB", flush=True)
        curves[codec] = pts
        RESULTS.mkdir(exist_ok=True)
        cache.write_text(json.dumps(curves))
    return curves


def append_log(path: Path, progress: dict, nic_pts: list[dict], bd: dict, note: str) -> None:
    """One line per training run: progress, RD per level, BD-rates."""
    if not path.exists():
        path.write_text(
            "# Training log\n\nOne line per training run; validation = ../shared/data/valid (28 photos), "
            "real file sizes, RGB PSNR; BD-rate over the overlapping PSNR range (negative: nic needs fewer bits).\n\n"
            "| date | steps | pixels seen | run | bpp / PSNR per quality level | BD JPEG | BD JPEG 2000 | BD WebP | BD AVIF |\n"
            "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |\n"
        )
    rd = ", ".join(f"{p['bpp']:.3f}/{p['psnr']:.2f}" for p in nic_pts)
    cells = " | ".join(f"{bd[r]:+.1f}%" if r in bd else "-" for r in ("jpeg", "jpeg2000", "webp", "avif"))
    line = (
        f"| {time.strftime('%Y-%m-%d')} | {progress.get('step', 0)} | {progress.get('pixels', 0):.3e} | {note} "
        f"| {rd} | {cells} |\n"
    )
    with path.open("a") as f:
        f.write(line)


@click.command()
@click.option("--images", default="../shared/data/valid", show_default=True)
@click.option("--refs", default="jpeg,jpeg2000,webp,avif", show_default=True)
@click.option("--weights", default=str(DEFAULT_WEIGHTS), show_default=True)
@click.option("--threads", default=2, show_default=True)
@click.option("--out", default=None, help="JSON file for the results.")
@click.option("--limit", default=0, help="Use only the first N images (0: all).")
@click.option("--log", default=None, help="Append a line to this training log (weights/TRAINING.md).")
@click.option("--note", default="", help="Learning rate / remarks for the log line.")
def main(
    images: str, refs: str, weights: str, threads: int, out: str | None, limit: int, log: str | None, note: str
) -> None:
    torch.set_num_threads(threads)
    files = list_images(images)[: limit or None]
    arrays = [load_rgb(p) for p in files]
    ref_names = [r for r in refs.split(",") if r]
    print(f"{len(files)} images from {images}")
    curves = reference_curves(files, arrays, ref_names)
    w = load_weights(Path(weights))
    levels = w.gains.shape[0]
    nic_pts = []
    t0 = time.time()
    for i in range(levels):
        q = 100.0 * i / (levels - 1)
        p = measure(
            arrays,
            q,
            lambda im, s: neurocodec.encode(im, quality=s, weights=weights),
            lambda d: neurocodec.decode(d, weights=weights),
        )
        nic_pts.append(asdict(p))
        print(
            f"  nic q{q:g}: {p.bpp:.3f} bpp {p.psnr:.2f} dB (enc {p.encode_ms:.0f} ms, dec {p.decode_ms:.0f} ms)",
            flush=True,
        )
    nic_curve = [(p["bpp"], p["psnr"]) for p in nic_pts]
    print(
        f"\nnic: {w.progress.get('step')} steps, {w.progress.get('pixels', 0):.3e} training pixels, "
        f"{time.time() - t0:.0f} s"
    )
    header = f"{'quality':>8} {'bpp':>7} {'PSNR':>7} " + " ".join(f"{r + ' bpp':>13}" for r in ref_names)
    print(header)
    for p in nic_pts:
        others = " ".join(
            f"{rate_at_psnr([(c['bpp'], c['psnr']) for c in curves[r]], p['psnr']):13.3f}" for r in ref_names
        )
        print(f"{p['setting']:8.1f} {p['bpp']:7.3f} {p['psnr']:7.2f} {others}")
    bd = {}
    for r in ref_names:
        bd[r] = bd_rate([(c["bpp"], c["psnr"]) for c in curves[r]], nic_curve)
        print(f"BD-rate vs {r:9s}: {bd[r]:+.1f} %   ({REFERENCE_SETTINGS[r]})")
    if log:
        append_log(Path(log), w.progress, nic_pts, bd, note)
    if out:
        Path(out).write_text(
            json.dumps(
                {
                    "images": images,
                    "n_images": len(files),
                    "progress": w.progress,
                    "nic": nic_pts,
                    "bd_rate": bd,
                    "refs": {r: curves[r] for r in ref_names},
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
