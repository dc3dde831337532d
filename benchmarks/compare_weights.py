"""Is a candidate model better than the shipped one? Compares two rd_valid.py results.

    python benchmarks/rd_valid.py --weights /tmp/new.pt --out /tmp/new.json
    python benchmarks/compare_weights.py benchmarks/results/readme-valid.json /tmp/new.json

Prints the BD-rate of the candidate against the shipped curve over their common
PSNR range (negative: the candidate needs fewer bits), and for each of the
candidate's levels the ratio of its bytes to JPEG's at the same PSNR, so that
`python -m neurocodec.training.export --levels N` can ship only levels that beat JPEG.
Both files must come from the same image set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from neurocodec.bench import bd_psnr, bd_rate, rate_at_psnr


def load_curves(path: str) -> dict[str, list[tuple[float, float]]]:
    """{codec: [(bpp, psnr)]} from rd_valid's --out or --save-result JSON."""
    d = json.loads(Path(path).read_text())
    curves = d["curves"] if "curves" in d else {"nic": d["nic"], **d["refs"]}  # --save-result / --out
    return {k: [(p["bpp"], p["psnr"]) for p in v] for k, v in curves.items()}


@click.command()
@click.argument("shipped", type=click.Path(exists=True, dir_okay=False))
@click.argument("candidate", type=click.Path(exists=True, dir_okay=False))
def main(shipped: str, candidate: str) -> None:
    """Compare the nic curve of CANDIDATE with that of SHIPPED (rd_valid.py JSON files)."""
    old = load_curves(shipped)
    new = load_curves(candidate)
    print(
        f"candidate vs shipped: BD-rate {bd_rate(old['nic'], new['nic']):+.1f} %, "
        f"BD-PSNR {bd_psnr(old['nic'], new['nic']):+.2f} dB (common PSNR range)"
    )
    jpeg = new.get("jpeg") or old.get("jpeg")
    if not jpeg:
        return
    beats = 0
    for i, (bpp, psnr) in enumerate(new["nic"]):
        ratio = bpp / rate_at_psnr(jpeg, psnr)  # nan outside JPEG's sweep: not counted as a win
        versus = f"{ratio:.3f} x JPEG's bytes" if math.isfinite(ratio) else "outside JPEG's measured range"
        print(f"  level {i:2d}: {bpp:.3f} bpp {psnr:.2f} dB, {versus}")
        beats = i + 1 if ratio < 1 and beats == i else beats
    print(f"the lowest {beats} levels beat JPEG (export --levels {beats})")


if __name__ == "__main__":
    main()
