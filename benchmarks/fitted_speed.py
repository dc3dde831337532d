"""Speed of the fitted mode: ms per fitting iteration, and decoding time, for a 768x512 image.

    python benchmarks/fitted_speed.py                      # CPU, 1 and 2 threads
    python benchmarks/fitted_speed.py --device cuda        # on a GPU (when there is one)

An iteration is `neurocodec.fitted.fit`'s own (`fit._Run.step`): the rounding
proxy, the decoder, the context model's rate, backward, the gradient's clipping
and an Adam step (timed over --iterations after a warm-up). The decode is `neurocodec.decode` of a real
fitted file (fitted for --fit-iterations, so its latents have a real fit's
statistics), best and median of --repeats. Pause other jobs while it runs.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click
import numpy as np
import torch

import neurocodec
from neurocodec.fitted import codec as fitted
from neurocodec.fitted.fit import _Run
from neurocodec.fitted.model import DEFAULT
from neurocodec.heap import keeping
from neurocodec.imageio import prepare

VALID = Path(__file__).parent.parent.parent / "shared" / "data" / "valid"


@keeping  # as `fit.fit` runs
def ms_per_iteration(h: int, w: int, device: torch.device, iterations: int) -> float:
    """`fit._Run.step` itself: the schedule, the rounding proxy, decoder and rate, backward, clipping, Adam."""
    x = torch.rand(1, 3, h, w, device=device)
    run = _Run(x, 1e-3, 10 * iterations, DEFAULT, seed=0)  # timed well inside the soft phase
    for it in range(3):
        run.step(it)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for it in range(3, 3 + iterations):
        run.step(it)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / iterations


@click.command()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--size", default="768x512", show_default=True, help="WxH of the image.")
@click.option("--iterations", default=10, show_default=True, help="Timed fitting iterations.")
@click.option("--fit-iterations", default=300, show_default=True, help="Iterations of the fit whose file is decoded.")
@click.option("--repeats", default=5, show_default=True, help="Decodes timed.")
def main(device: str, size: str, iterations: int, fit_iterations: int, repeats: int) -> None:
    w, h = (int(v) for v in size.split("x"))
    dev = torch.device(device)
    for threads in (1, 2) if device == "cpu" else (torch.get_num_threads(),):
        torch.set_num_threads(threads)
        print(f"{size} on {device}, {threads} threads: {ms_per_iteration(h, w, dev, iterations):.0f} ms per iteration")
    from PIL import Image

    photo = min(VALID.glob("*.png"))
    with Image.open(photo) as im:
        im = im.convert("RGB")
        left, top = (im.width - w) // 2, (im.height - h) // 2
        rgb = np.asarray(im.crop((left, top, left + w, top + h)))
    data = fitted.encode(prepare(rgb), 5000, 0.003, fit_iterations, dev).code()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            neurocodec.decode(data, device="cpu")
            seconds.append(time.perf_counter() - start)
        print(
            f"decode of a {len(data)}-byte fitted file ({photo.stem}, {fit_iterations} iterations), CPU, {threads} "
            f"threads: best {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s"
        )


if __name__ == "__main__":
    main()
