"""Rate-distortion of nic's quality ladder against JPEG, JPEG 2000, WebP and AVIF.

    python benchmarks/rd_valid.py                       # ../shared/data/valid, all references
    python benchmarks/rd_valid.py --images examples --refs jpeg
    python benchmarks/rd_valid.py --log weights/TRAINING.md --note "session 2"

The measurement is neurocodec.bench (the code behind `nic bench`). Reference
curves are cached in benchmarks/results/ (keyed by the image set), since they do
not change when the model does. Prints a table and BD-rates and writes
everything to --out as JSON. --msssim adds MS-SSIM (slower; reference curves
cached without it are then measured again once).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import click
import torch

from neurocodec.autoencoder.modelfiles import DEFAULT_WEIGHTS
from neurocodec.autoencoder.weights import load_weights
from neurocodec.bench import Point, cache_key, find_images, json_clean, rate_at_psnr, read_image, run_bench

RESULTS = Path(__file__).resolve().parent / "results"


def cache_path(files: list[str]) -> Path:
    return RESULTS / f"refs-{Path(files[0]).parent.name}-{cache_key(files)}.json"


def print_point(codec: str, p: Point) -> None:
    ms = f" MS-SSIM {p.msssim:.4f}" if math.isfinite(p.msssim) else ""
    if codec == "nic":
        print(
            f"  nic q{p.setting:g}: {p.bpp:.3f} bpp {p.psnr:.2f} dB{ms} "
            f"(enc {p.encode_ms:.0f} ms, dec {p.decode_ms:.0f} ms)",
            flush=True,
        )
    else:
        print(f"  {codec} {p.setting:g}: {p.bpp:.3f} bpp {p.psnr:.2f} dB{ms}", flush=True)


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
@click.option("--msssim/--no-msssim", default=False, show_default=True, help="Also measure MS-SSIM and its BD-rate.")
@click.option(
    "--save-result",
    default=None,
    help="Also save the full result (e.g. benchmarks/results/readme-valid.json for readme_figures.py --reuse).",
)
def main(
    images: str,
    refs: str,
    weights: str,
    threads: int,
    out: str | None,
    limit: int,
    log: str | None,
    note: str,
    msssim: bool,
    save_result: str | None,
) -> None:
    torch.set_num_threads(threads)
    files = [str(f) for f in find_images([images])][: limit or None]
    arrays = [read_image(f) for f in files]
    ref_names = [r for r in refs.split(",") if r]
    print(f"{len(files)} images from {images}")
    t0 = time.time()
    result = run_bench(
        arrays,
        [*ref_names, "nic"],
        weights=weights,
        msssim=msssim,
        names=files,
        on_point=print_point,
        cache=cache_path(files),
    )
    w = load_weights(Path(weights))
    curves = result.curves
    plain = result.to_dict()  # nan -> None
    nic_pts = plain["curves"]["nic"]
    print(
        f"\nnic: {w.progress.get('step')} steps, {w.progress.get('pixels', 0):.3e} training pixels, "
        f"{time.time() - t0:.0f} s"
    )
    header = f"{'quality':>8} {'bpp':>7} {'PSNR':>7} " + " ".join(f"{r + ' bpp':>13}" for r in ref_names)
    print(header)
    for p in curves["nic"]:
        others = " ".join(f"{rate_at_psnr([(c.bpp, c.psnr) for c in curves[r]], p.psnr):13.3f}" for r in ref_names)
        print(f"{p.setting:8.1f} {p.bpp:7.3f} {p.psnr:7.2f} {others}")
    bd = {r: result.comparisons[r]["bd_rate_psnr"] for r in ref_names}
    for r in ref_names:
        c = result.comparisons[r]
        extra = f", MS-SSIM {c['bd_rate_msssim']:+.1f} %" if msssim else ""
        print(f"BD-rate vs {r:9s}: {bd[r]:+.1f} %{extra}, BD-PSNR {c['bd_psnr']:+.2f} dB   ({result.settings[r]})")
    if log:
        append_log(Path(log), w.progress, nic_pts, bd, note)
    if save_result:
        root = Path(__file__).resolve().parent.parent
        result.images = [os.path.relpath(f, root) for f in result.images]
        if "path" in result.weights:
            result.weights["path"] = os.path.relpath(result.weights["path"], root)
        Path(save_result).write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    if out:
        data = {
            "images": images,
            "n_images": len(files),
            "progress": w.progress,
            "nic": nic_pts,
            "bd_rate": bd,
            "refs": {r: plain["curves"][r] for r in ref_names},
            "comparisons": plain["comparisons"],
            "settings": result.settings,
        }
        Path(out).write_text(json.dumps(json_clean(data), indent=1))


if __name__ == "__main__":
    main()
