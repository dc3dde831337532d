"""The fitted mode over a grid of photos, rates and iteration budgets, real files, resumable.

    python benchmarks/fitted_grid.py                       # runs what is missing, then reports
    python benchmarks/fitted_grid.py --report              # only the report, from the results file
    nice -n 10 python benchmarks/fitted_grid.py > log &    # in the background, over sessions

Each fit is the codec's own (`neurocodec.fitted.codec.encode`: fit, quantise, code): its
bpp is the .nic file's size and its PSNR that of the file as `neurocodec.decode` shows it;
the encode and decode seconds are measured too. Every finished fit (photo, crop, lambda,
iterations, recipe) is one JSON line in
benchmarks/results/fitted_grid.jsonl, appended as it finishes, so a run stopped
anywhere resumes where it was (commit the file between sessions); a fit stopped
midway goes on from its last state (`RESUME`, every 250 iterations). Cheap budgets
run first over all photos and rates, then the next budget. The reference curves
(JPEG, WebP, AVIF at Pillow's settings of `nic bench`, and nic's autoencoder at
efforts 0 and 3) are measured once per crop and kept in the same file.

The report gives, per budget, the rate each fitted point needs relative to each
reference at the same RGB PSNR (the reference's curve on the same crop,
interpolated in log-rate), as a geometric mean over all points: -20 % means 20 %
fewer bits. It needs no four-point fit, so three rates suffice. Figures rest on
the photos and points the table names; the recipe is `neurocodec.fitted.fit.RECIPE`.
Rows of earlier recipes (`c3x-soft-1`, `c3x-soft-2`: the prototype's rate estimates, no
files) stay in the file; `--recipe` reports them.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

import neurocodec
from neurocodec.atomic import write_atomic
from neurocodec.autoencoder.gains import lambda_for
from neurocodec.autoencoder.weights import load_weights
from neurocodec.bench import SWEEPS, rate_at_psnr, reference_decode, reference_encode
from neurocodec.fitted import codec as fitted
from neurocodec.fitted.fit import RECIPE
from neurocodec.fitted.model import DEFAULT, Architecture
from neurocodec.format import parse
from neurocodec.imageio import prepare
from neurocodec.metrics import psnr

RESULTS = Path(__file__).parent / "results" / "fitted_grid.jsonl"
VALID = Path(__file__).parent.parent.parent / "shared" / "data" / "valid"
# Where a fit in progress keeps its state (every `fit.RESUME_EVERY` iterations): a run stopped mid-fit goes on
# from there. Not committed: a state is ~10 MB at 768x512; a new machine starts that fit again.
RESUME = Path(__file__).parent.parent / ".cache" / "fitted-grid"
REFERENCES = ("jpeg", "jpeg2000", "webp", "avif", "nic-e0", "nic-e3")


def crop_key(text: str) -> int | str:
    """'256' -> 256 (a square), '768x512' stays a string: the key results are filed under."""
    return text if "x" in text else int(text)


def centre_crop(path: str | Path, crop: int | str) -> Image.Image:
    """The centre crop of a photo, RGB: N (a square) or 'WxH' (upright for an upright photo)."""
    cw, ch = (int(v) for v in crop.split("x")) if isinstance(crop, str) else (crop, crop)
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if h > w:
            cw, ch = ch, cw
        left, top = (w - cw) // 2, (h - ch) // 2
        return im.crop((left, top, left + cw, top + ch))


def reference_curve(codec: str, image: Image.Image) -> list[tuple[float, float]]:
    """(bpp, PSNR) points of a Pillow codec (jpeg, webp, avif: `nic bench`'s settings) or of nic's autoencoder
    at an effort (nic-e0, nic-e3) on this image, real file sizes."""
    a = np.asarray(image)
    pixels = a.shape[0] * a.shape[1]
    curve = []
    if codec.startswith("nic"):
        effort = int(codec[-1])
        for q in np.linspace(0, 100, 15 if effort == 0 else 8):
            data = neurocodec.encode(a, quality=float(q), effort=effort)
            curve.append((8 * len(data) / pixels, psnr(np.asarray(neurocodec.decode(data)), a)))
    else:
        for v in SWEEPS[codec]:
            data = reference_encode(codec, image, v)
            curve.append((8 * len(data) / pixels, psnr(np.asarray(reference_decode(data)), a)))
    return curve


def quality_of(lam: float) -> int:
    """The quality x 100 whose lambda (as `neurocodec.api` maps qualities for the fitted mode) is nearest lam."""
    ladder = load_weights().model.cfg.lambdas
    return min(range(0, 10001, 25), key=lambda q: abs(math.log(1 / (255**2 * lambda_for(ladder, q))) - math.log(lam)))


def recipe_of(arch: Architecture, warmup: tuple[int, int] = (1, 0)) -> str:
    """The recipe's name in the results file: `fit.RECIPE`, then the architecture and the warm-up where they are
    not the default."""
    name = RECIPE
    if arch != DEFAULT:
        name += f" | arch {arch.levels},{arch.arm_width},{arch.arm_hidden},{arch.syn_width}" + (
            f",{arch.upsampling}" if arch.upsampling != DEFAULT.upsampling else ""
        )
    if warmup[0] > 1:
        name += f" | warm-up {warmup[0]}x{warmup[1]}"
    return name


def fit_file(
    image: Image.Image,
    lam: float,
    iterations: int,
    resume: Path | None = None,
    arch: Architecture = DEFAULT,
    warmup: tuple[int, int] = (1, 0),
) -> tuple[dict, bytes]:
    """Fit, quantise and code one crop; measure the file and its decode. Returns the measures and the file.

    resume: the fit's state file (`fit.fit`); a fit resumed from it has no time per iteration."""
    a = np.asarray(image)
    stages: set[str] = set()
    start = time.perf_counter()
    f = fitted.encode(
        prepare(a), quality_of(lam), lam, iterations, torch.device("cpu"), arch,
        progress=lambda stage, done, total: stages.add(stage), resume=resume, warmup=warmup,
    )  # fmt: skip
    resumed = "resumed" in stages
    data = f.code()
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    out = np.asarray(neurocodec.decode(data))
    decode_s = time.perf_counter() - start
    pixels = a.shape[0] * a.shape[1]
    header = 8 * (8 + len(parse(data).chunks[fitted.CHUNK]))  # the FITM chunk: tag, length, head, tensors' steps
    arm_bits = sum(t.bits() for t in f.arm)
    net_bits = arm_bits + sum(t.bits() for t in f.decoder) + header
    return {
        "bpp": 8 * len(data) / pixels,
        "net_bpp": net_bits / pixels,
        "arm_bpp": arm_bits / pixels,
        "latent_bpp": 8 * len(data) / pixels - net_bits / pixels,
        "psnr": psnr(out, a),
        "seconds": None if resumed else encode_s,
        "ms_per_iteration": None if resumed else 1000 * encode_s / (iterations + (warmup[0] - 1) * warmup[1]),
        "decode_seconds": decode_s,
    }, data


def load() -> list[dict]:
    """The results file's rows; a fit that two workers both finished counts once (the first row)."""
    if not RESULTS.exists():
        return []
    rows, seen = [], set()
    for line in RESULTS.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            key = (
                r["kind"],
                r["image"],
                r["crop"],
                r.get("codec"),
                r.get("lambda"),
                r.get("iterations"),
                r.get("recipe"),
            )
            if key not in seen:
                seen.add(key)
                rows.append(r)
    return rows


def append(row: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")


def report(rows: list[dict], crop: int | str, recipe: str = RECIPE, images: set[str] | None = None) -> str:
    """The table of one crop and recipe, over the validation photos in the file (the targets are judged there;
    the training photos that screens fitted would bias it) or over `images` (names) only."""
    images = images if images is not None else {p.stem for p in VALID.glob("*.png")}
    rows = [r for r in rows if r["image"] in images]
    refs = {(r["image"], r["codec"]): r["curve"] for r in rows if r["kind"] == "reference" and r["crop"] == crop}
    fits = [r for r in rows if r["kind"] == "fit" and r["crop"] == crop and r["recipe"] == recipe]
    lines = [
        (
            f"Recipe `{recipe}`, {crop} centre crops. Rate vs each reference at equal RGB PSNR "
            "(geometric mean over the points; negative = fewer bits than it)."
        ),
        "",
        "| iterations | photos | points | bpp range | ms/it (2 threads) | " + " | ".join(REFERENCES) + " |",
        "| ---: | ---: | ---: | --- | ---: | " + " | ".join("---:" for _ in REFERENCES) + " |",
    ]
    for its in sorted({r["iterations"] for r in fits}):
        pts = [r for r in fits if r["iterations"] == its]
        cells = []
        for codec in REFERENCES:
            logs = []
            for r in pts:
                curve = refs.get((r["image"], codec))
                ref = rate_at_psnr(curve, r["psnr"]) if curve else math.nan
                if math.isfinite(ref) and ref > 0:
                    logs.append(math.log(r["bpp"] / ref))
            cells.append(f"{100 * (math.exp(np.mean(logs)) - 1):+.1f} % ({len(logs)})" if logs else "-")
        bpps = [r["bpp"] for r in pts]
        timed = [r["ms_per_iteration"] for r in pts if r["ms_per_iteration"] is not None and r["threads"] == 2]
        ms = f"{np.median(timed):.0f}" if timed else "-"
        lines.append(
            f"| {its} | {len({r['image'] for r in pts})} | {len(pts)} | {min(bpps):.3f}-{max(bpps):.3f} | "
            f"{ms} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "| photo | lambda | iterations | bpp (latents + networks) | PSNR | vs avif |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in sorted(fits, key=lambda r: (r["image"], -r["lambda"], r["iterations"])):
        curve = refs.get((r["image"], "avif"))
        ref = rate_at_psnr(curve, r["psnr"]) if curve else math.nan
        vs = f"{100 * (r['bpp'] / ref - 1):+.1f} %" if math.isfinite(ref) and ref > 0 else "-"
        lines.append(
            f"| {r['image']} | {r['lambda']:g} | {r['iterations']} | {r['bpp']:.3f} ({r['latent_bpp']:.3f} + "
            f"{r['net_bpp']:.3f}) | {r['psnr']:.2f} | {vs} |"
        )
    return "\n".join(lines)


@click.command()
@click.argument("images", nargs=-1)
@click.option("--photos", default=4, show_default=True, help="Without IMAGES: the first N validation photos.")
@click.option("--crop", default="256", show_default=True, help="Centre crop: N (square) or WxH.")
@click.option("--references", default=",".join(REFERENCES), show_default=True, help="Reference curves to measure.")
@click.option("--lambdas", default="0.01,0.003,0.001,0.0003", show_default=True)
@click.option("--budgets", default="1000,3000,10000", show_default=True, help="Iteration budgets, cheapest first.")
@click.option("--threads", default=2, show_default=True)
@click.option(
    "--shard",
    default="0/1",
    show_default=True,
    help="I/N: this worker runs every N-th fit from the I-th (run N workers of 1 thread on N cores).",
)
@click.option("--report", "only_report", is_flag=True, help="Only print the report of what is in the results file.")
@click.option(
    "--recipe", default=None, help="Which recipe's rows the report shows [default: the one --arch fits with]."
)
@click.option(
    "--arch",
    default=None,
    metavar="LEVELS,ARM_WIDTH,ARM_HIDDEN,SYN_WIDTH[,UPSAMPLING]",
    help=f"Fit another architecture than the default ({DEFAULT.levels},{DEFAULT.arm_width},{DEFAULT.arm_hidden},"
    f"{DEFAULT.syn_width},{DEFAULT.upsampling}; upsampling 0: version 1's 4x4 kernels); its rows get their own "
    "recipe name.",
)
@click.option(
    "--warmup",
    default=None,
    metavar="CANDIDATES,ITERATIONS",
    help="Start each fit with a warm-up (`fit.fit`): that many starts run that many iterations, the best goes on.",
)
def main(
    images: tuple[str, ...],
    photos: int,
    crop: str,
    references: str,
    lambdas: str,
    budgets: str,
    threads: int,
    shard: str,
    only_report: bool,
    recipe: str | None,
    arch: str | None,
    warmup: str | None,
) -> None:
    """Fit what the results file lacks (cheapest budget first), then print the report (of IMAGES only, when given)."""
    torch.set_num_threads(threads)
    shape = DEFAULT if arch is None else Architecture(*(int(v) for v in arch.split(",")))
    shape.check()
    warm = (1, 0) if warmup is None else tuple(int(v) for v in warmup.split(","))
    fitting = recipe_of(shape, warm)
    variant = "" if shape == DEFAULT else "-" + arch.replace(",", "-")  # in the names of its fits' state files
    variant += "" if warmup is None else "-w" + warmup.replace(",", "-")
    paths = [Path(p) for p in images] or sorted(VALID.glob("*.png"))[:photos]
    rows = load()
    crop = crop_key(crop)
    if not only_report:
        crops = {p.stem: centre_crop(p, crop) for p in paths}
        mine, workers = (int(v) for v in shard.split("/"))
        done_refs = {(r["image"], r["codec"]) for r in rows if r["kind"] == "reference" and r["crop"] == crop}
        for name, im in crops.items() if mine == 0 else ():  # worker 0 measures the references
            for codec in references.split(","):
                if (name, codec) not in done_refs:
                    row = {"kind": "reference", "image": name, "crop": crop, "codec": codec}
                    row["curve"] = reference_curve(codec, im)
                    append(row)
                    rows.append(row)
        done = {
            (r["image"], r["lambda"], r["iterations"])
            for r in rows
            if r["kind"] == "fit" and r["crop"] == crop and r["recipe"] == fitting
        }
        jobs = [
            (its, name, lam)
            for its in (int(v) for v in budgets.split(","))
            for name in crops
            for lam in (float(v) for v in lambdas.split(","))
        ]
        for its, name, lam in jobs[mine::workers]:
            if (name, lam, its) in done:
                continue
            state = RESUME / f"{name}-{crop}-{lam:g}-{its}{variant}.pt"
            r, data = fit_file(crops[name], lam, its, state, shape, warm)
            write_atomic(state.with_suffix(".nic"), data)  # kept, to study the networks' bits later
            row = {"kind": "fit", "image": name, "crop": crop, "lambda": lam, "iterations": its}
            row.update(recipe=fitting, threads=threads, date=time.strftime("%Y-%m-%d"), **r)
            append(row)
            rows.append(row)
            state.unlink(missing_ok=True)
            speed = "resumed" if r["ms_per_iteration"] is None else f"{r['ms_per_iteration']:.0f} ms/it"
            print(f"{name} lambda {lam:g} {its} it: {r['bpp']:.3f} bpp {r['psnr']:.2f} dB {speed}", flush=True)
    print(report(rows, crop, recipe or fitting, {p.stem for p in paths} if images else None))


if __name__ == "__main__":
    main()
