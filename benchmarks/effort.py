"""Encode effort: BD-rate and encode time of each `--effort` level against effort 0.

    python benchmarks/effort.py                          # all of ../shared/data/valid
    python benchmarks/effort.py --limit 4 --levels 0,2   # a quick look
    python benchmarks/effort.py --qualities 0,25,50,75,100 --threads 2

Every photo is cut to its centre 768x512 (512x768 when upright) and encoded by
`neurocodec.encode(..., effort=N)` at each quality; bpp comes from the real
file bytes, PSNR from the ordinary decoder, time is the whole encode call
(analysis, refinement, entropy coding) on `--threads` CPU threads. Prints a
markdown table: BD-rate of each level against effort 0 on the curve of mean
bpp and mean PSNR over the photos (and the median of the per-photo BD-rates),
and the median encode seconds per photo. Timings are only meaningful while
nothing else runs: the load average is printed with them.

Results are kept per (photo, level, quality) in benchmarks/results/effort-*.json,
keyed by the weights and the step schedule, so an interrupted run resumes and a
later run with more photos or levels only measures what is new.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import click
import numpy as np
import torch

import neurocodec
from neurocodec.autoencoder.weights import load_weights
from neurocodec.bench import bd_rate
from neurocodec.metrics import psnr
from neurocodec.settings import MAX_EFFORT, REFINE_STEPS
from neurocodec.training.data import list_images, load_rgb

RESULTS = Path(__file__).resolve().parent / "results"


def centre_crop(a: np.ndarray, w: int = 768, h: int = 512) -> np.ndarray:
    if a.shape[0] > a.shape[1]:
        w, h = h, w
    y, x = max(0, (a.shape[0] - h) // 2), max(0, (a.shape[1] - w) // 2)
    return np.ascontiguousarray(a[y : y + h, x : x + w])


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, results: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
    os.replace(tmp, path)


def measure(a: np.ndarray, quality: float, effort: int, device: str) -> dict:
    t0 = time.perf_counter()
    data = neurocodec.encode(a, quality=quality, effort=effort, device=device)
    seconds = time.perf_counter() - t0
    out = np.asarray(neurocodec.decode(data, device=device))
    return {"bpp": 8 * len(data) / (a.shape[0] * a.shape[1]), "psnr": psnr(out, a), "seconds": seconds}


def _fmt(v: float, spec: str) -> str:
    return format(v, spec) if math.isfinite(v) else "n/a"


@click.command()
@click.option("--images", default="../shared/data/valid", show_default=True)
@click.option("--limit", type=int, default=0, help="Only the first N photos (0: all).")
@click.option("--levels", default=",".join(map(str, range(MAX_EFFORT + 1))), show_default=True)
@click.option("--qualities", default="0,25,50,75,100", show_default=True)
@click.option("--threads", default=2, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--fresh", is_flag=True, help="Ignore stored results and measure everything again.")
@click.option("--results", "results_path", default=None, help="Where results are kept [default: benchmarks/results/].")
def main(
    images: str,
    limit: int,
    levels: str,
    qualities: str,
    threads: int,
    device: str,
    fresh: bool,
    results_path: str | None,
) -> None:
    torch.set_num_threads(threads)
    level_list, q_list = sorted(set(_ints(levels)) | {0}), _floats(qualities)
    if min(level_list) < 0 or max(level_list) > MAX_EFFORT:
        raise click.BadParameter(f"levels run from 0 to {MAX_EFFORT}", param_hint="--levels")
    paths = list_images(images)[: limit or None]
    if not paths:
        raise click.ClickException(f"no images in {images}")
    w = load_weights()
    name = f"effort-{w.identity.hex()}-{'-'.join(map(str, REFINE_STEPS))}-{device}{threads}.json"
    store = Path(results_path) if results_path else RESULTS / name
    store.parent.mkdir(parents=True, exist_ok=True)
    results = {} if fresh else _load(store)
    print(f"{len(paths)} photos, levels {level_list} (steps {REFINE_STEPS}), qualities {q_list}, {threads} threads")
    print(f"results: {store}; load average before: {os.getloadavg()[0]:.2f}", flush=True)

    neurocodec.encode(np.zeros((64, 64, 3), np.uint8), device=device)  # load the weights, warm up
    for path in paths:
        a = None
        for effort in level_list:
            for q in q_list:
                key = f"{path.name}|{effort}|{q:g}"
                if key in results:
                    continue
                if a is None:
                    a = centre_crop(load_rgb(path))
                results[key] = measure(a, q, effort, device)
                r = results[key]
                print(
                    f"  {path.name} effort {effort} q{q:g}: {r['bpp']:.3f} bpp {r['psnr']:.2f} dB {r['seconds']:.1f} s",
                    flush=True,
                )
                _save(store, results)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")

    def rec(name: str, effort: int, q: float) -> dict:
        return results[f"{name}|{effort}|{q:g}"]

    names = [p.name for p in paths]
    curves = {
        e: [
            (
                float(np.mean([rec(n, e, q)["bpp"] for n in names])),
                float(np.mean([rec(n, e, q)["psnr"] for n in names])),
            )
            for q in q_list
        ]
        for e in level_list
    }
    print("| effort | steps | BD-rate vs effort 0 | median per-photo BD-rate | median encode s per photo |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for e in level_list:
        per_photo = [
            bd_rate(
                [(rec(n, 0, q)["bpp"], rec(n, 0, q)["psnr"]) for q in q_list],
                [(rec(n, e, q)["bpp"], rec(n, e, q)["psnr"]) for q in q_list],
            )
            for n in names
        ]
        seconds = float(np.median([rec(n, e, q)["seconds"] for n in names for q in q_list]))
        bd = bd_rate(curves[0], curves[e]) if e else 0.0
        med = float(np.nanmedian(per_photo)) if e and not all(map(math.isnan, per_photo)) else 0.0
        print(f"| {e} | {REFINE_STEPS[e]} | {_fmt(bd, '+.1f')} % | {_fmt(med, '+.1f')} % | {seconds:.2f} |")
    print("\nMean bpp / PSNR (dB) per quality:\n")
    print("| quality | " + " | ".join(f"effort {e}" for e in level_list) + " |")
    print("| ---: | " + " | ".join("---:" for _ in level_list) + " |")
    for i, q in enumerate(q_list):
        cells = " | ".join(f"{curves[e][i][0]:.3f} / {curves[e][i][1]:.2f}" for e in level_list)
        print(f"| {q:g} | {cells} |")


if __name__ == "__main__":
    main()
