"""Peak memory and time of `nic encode` / `nic decode` on a large photo (default 24 megapixels).

    python benchmarks/large_image.py [--width 6000 --height 4000] [--source examples/mountain.png]

Builds a photo-like test image by enlarging a real photo (with a little grain,
so it is not unrealistically smooth), then runs the CLI under /usr/bin/time -v
and reports wall seconds and peak resident memory. Pause any training run first
(kill -STOP PID) so that the seconds mean something. Issue 5's bound: 3 GB.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
from PIL import Image


def _timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a command run under GNU time."""
    r = subprocess.run(["/usr/bin/time", "-v", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{r.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    h, m, s = (float(g) if g else 0.0 for g in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    return h * 3600 + m * 60 + s, rss / 1024


@click.command()
@click.option("--width", default=6000, show_default=True)
@click.option("--height", default=4000, show_default=True)
@click.option("--source", default="examples/mountain.png", show_default=True, help="Photo to enlarge.")
@click.option("--quality", default=75.0, show_default=True)
def main(width: int, height: int, source: str, quality: float) -> None:
    rng = np.random.default_rng(0)
    with Image.open(source) as im:
        big = np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.LANCZOS), dtype=np.int16)
    big = (big + rng.integers(-3, 4, big.shape, dtype=np.int16)).clip(0, 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as d:
        src, nic, out = Path(d) / "big.png", Path(d) / "big.nic", Path(d) / "out.png"
        Image.fromarray(big).save(src, compress_level=1)
        cli = [sys.executable, "-m", "neurocodec.cli"]
        enc_s, enc_mb = _timed([*cli, "encode", str(src), "-o", str(nic), "-q", str(quality)])
        dec_s, dec_mb = _timed([*cli, "decode", str(nic), "-o", str(out)])
        with Image.open(out) as im:
            back = np.asarray(im.convert("RGB"), dtype=np.float64)
        mse = np.mean((back - big) ** 2)
        bpp = 8 * nic.stat().st_size / (width * height)
    mp = width * height / 1e6
    print(f"{width}x{height} ({mp:.1f} MP), quality {quality:g}: {bpp:.3f} bpp, {10 * np.log10(255**2 / mse):.2f} dB")
    print("| step | seconds | peak RSS (MB) |")
    print("| --- | ---: | ---: |")
    print(f"| nic encode (PNG in, incl. start-up) | {enc_s:.1f} | {enc_mb:.0f} |")
    print(f"| nic decode (PNG out, incl. start-up) | {dec_s:.1f} | {dec_mb:.0f} |")


if __name__ == "__main__":
    main()
