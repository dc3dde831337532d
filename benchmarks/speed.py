"""Speed and memory of nic and the Pillow codecs: encode and decode time per megapixel,
peak memory, and the start-up time of the `nic` command.

    python benchmarks/speed.py                   # the example photos; prints Markdown
    python benchmarks/speed.py --images ../shared/data/valid --repeats 3
    python benchmarks/speed.py --readme          # also rewrites README's speed section

Each codec runs at one typical setting (nic: its default quality). Times are the
median over --repeats runs per image, summed over images and divided by their
megapixels. Peak memory is the maximum resident set size of a child process that
imports the codec and encodes and decodes every image once (its VmHWM), next to
a child that only loads the images. Start-up is the wall time of whole `nic`
processes on a 64x64 image. Run it while nothing else runs: timings on a busy
machine say little.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

from neurocodec.bench import LABELS, REFERENCES, coder, find_images, read_image

ROOT = Path(__file__).resolve().parent.parent
NIC_QUALITY = 75.0  # neurocodec's default quality
TYPICAL = {"jpeg": 75, "jpeg2000": 24, "webp": 75, "avif": 75}  # JPEG 2000: compression ratio (1 bpp)


def setting_of(codec: str) -> float:
    return NIC_QUALITY if codec == "nic" else TYPICAL[codec]


def describe(codec: str) -> str:
    return f"ratio {TYPICAL[codec]}" if codec == "jpeg2000" else f"quality {setting_of(codec):g}"


def time_codec(codec: str, images: list[np.ndarray], repeats: int, device: str) -> dict:
    enc, dec = coder(codec, device)
    v = setting_of(codec)
    dec(enc(Image.fromarray(images[0][:64, :64].copy()), v))  # warm-up: weights, libraries
    enc_ms, dec_ms, bits = 0.0, 0.0, 0
    for a in images:
        im = Image.fromarray(a)
        te, td = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            data = enc(im, v)
            t1 = time.perf_counter()
            dec(data)
            t2 = time.perf_counter()
            te.append(t1 - t0)
            td.append(t2 - t1)
        enc_ms += 1000 * float(np.median(te))
        dec_ms += 1000 * float(np.median(td))
        bits += 8 * len(data)
    mpix = sum(a.shape[0] * a.shape[1] for a in images) / 1e6
    return {"enc": enc_ms / mpix, "dec": dec_ms / mpix, "bpp": bits / (mpix * 1e6)}


def _own_peak_kib() -> int:
    """This process's peak resident memory. VmHWM belongs to the process's own address space;
    getrusage's ru_maxrss would also count the parent's memory at fork time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS: bytes


def run_child(codec: str, files: list[str], device: str) -> None:
    """In a child process: load the images, code each once (codec 'none': only load), print the peak."""
    images = [read_image(f) for f in files]
    if codec != "none":
        enc, dec = coder(codec, device)
        for a in images:
            dec(enc(Image.fromarray(a), setting_of(codec)))
    print(f"peak_kib {_own_peak_kib()}")


def peak_rss_mib(codec: str, files: list[str], device: str) -> float:
    cmd = [sys.executable, __file__, "--child", codec, "--device", device, *[f"--file={f}" for f in files]]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [x for x in r.stdout.splitlines() if x.startswith("peak_kib ")]
    if r.returncode or not lines:
        raise SystemExit(f"the {codec} child process failed: {r.stderr.strip()[-500:]}")
    return int(lines[-1].split()[1]) / 1024


def nic_command() -> list[str]:
    exe = Path(sys.executable).with_name("nic")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("nic")
    return [found] if found else [sys.executable, "-m", "neurocodec.cli"]


def startup(repeats: int) -> list[tuple[str, float]]:
    nic = nic_command()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        png, nicf, out = Path(d, "tiny.png"), Path(d, "tiny.nic"), Path(d, "out.png")
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(png)
        subprocess.run([*nic, "encode", png, "-o", nicf, "-f"], check=True, capture_output=True)
        rows = []
        for label, args in [
            ("nic --help", ["--help"]),
            ("nic info tiny.nic", ["info", nicf]),
            ("nic encode tiny.png (64x64)", ["encode", png, "-o", nicf, "-f"]),
            ("nic decode tiny.nic (64x64)", ["decode", nicf, "-o", out, "-f"]),
        ]:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                subprocess.run([*nic, *args], check=True, capture_output=True)
                times.append(time.perf_counter() - t0)
            rows.append((label, float(np.median(times))))
    return rows


def markdown(
    images: str, arrays: list[np.ndarray], rows: list[dict], base_mib: float, start: list, repeats: int
) -> str:
    import torch

    mpix = sum(a.shape[0] * a.shape[1] for a in arrays) / 1e6 / len(arrays)
    out = [
        (
            f"{len(arrays)} images from `{images}` ({mpix:.2f} megapixels on average), median of {repeats} runs, "
            f"{os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"{time.strftime('%Y-%m-%d')} (`python benchmarks/speed.py`):"
        ),
        "",
        "| codec | setting | bpp | encode ms / megapixel | decode ms / megapixel | peak memory (MiB) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        out.append(
            f"| {LABELS[r['codec']]} | {r['setting']} | {r['bpp']:.3f} | {r['enc']:.1f} | {r['dec']:.1f} "
            f"| {r['rss']:.0f} |"
        )
    out += [
        "",
        (
            f"Peak memory is a whole Python process (it includes {base_mib:.0f} MiB for Python, numpy, Pillow "
            "and the decoded images; nic's includes torch)."
        ),
        "",
        "| command | wall seconds |",
        "| --- | ---: |",
    ]
    out += [f"| `{label}` | {s:.2f} |" for label, s in start]
    return "\n".join(out)


@click.command()
@click.option("--images", default=str(ROOT / "examples"), show_default=True, help="A folder of images.")
@click.option("--repeats", default=5, show_default=True)
@click.option("--codecs", default="nic," + ",".join(REFERENCES), show_default=True)
@click.option("--device", default="auto", show_default=True, help="Where nic's network runs.")
@click.option("--readme", is_flag=True, help="Also rewrite README.md between <!-- bench:speed:start/end -->.")
@click.option("--child", default=None, hidden=True)
@click.option("--file", "child_files", multiple=True, hidden=True)
def main(images: str, repeats: int, codecs: str, device: str, readme: bool, child: str | None, child_files) -> None:
    if child:
        run_child(child, list(child_files), device)
        return
    files = [str(f) for f in find_images([images])]
    arrays = [read_image(f) for f in files]
    rows = []
    for codec in [c for c in codecs.split(",") if c]:
        t = time_codec(codec, arrays, repeats, device)
        rss = peak_rss_mib(codec, files, device)
        rows.append({"codec": codec, "setting": describe(codec), "rss": rss, **t})
        print(f"{codec}: {t['enc']:.1f} / {t['dec']:.1f} ms per megapixel, {rss:.0f} MiB", file=sys.stderr)
    base = peak_rss_mib("none", files, device)
    start = startup(repeats)
    where = os.path.relpath(images, ROOT) if Path(images).is_absolute() else images
    text = markdown(where, arrays, rows, base, start, repeats)
    print(text)
    if readme:
        from readme_figures import replace_section

        replace_section(ROOT / "README.md", "speed", text)


if __name__ == "__main__":
    main()
