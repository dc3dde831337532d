"""Pixels per second of a full training step (forward, backward, Adam) on this machine.

    python benchmarks/train_speed.py --batch 8 --crop 192 [--compile] [--channels-last]

Pause any training run first (kill -STOP PID): the figure is only meaningful on idle cores.
"""

from __future__ import annotations

import time

import click
import numpy as np
import torch

from neurocodec.data import ImageCache
from neurocodec.model import NicModel


@click.command()
@click.option("--data", default="../shared/data/train", show_default=True)
@click.option("--batch", default=8, show_default=True)
@click.option("--crop", default=192, show_default=True)
@click.option("--steps", default=8, show_default=True, help="Timed steps (after 3 warm-up steps).")
@click.option("--threads", default=2, show_default=True)
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model.")
@click.option("--channels-last", is_flag=True)
def main(data: str, batch: int, crop: int, steps: int, threads: int, use_compile: bool, channels_last: bool) -> None:
    torch.set_num_threads(threads)
    cache = ImageCache(data)
    rng = np.random.default_rng(0)
    model = NicModel()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    step_model = torch.compile(model) if use_compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    lambdas = torch.tensor(model.cfg.lambdas)
    for i in range(3 + steps):
        if i == 3:
            t0 = time.perf_counter()
        x = cache.crops(batch, crop, rng).contiguous(memory_format=fmt)
        level = torch.from_numpy(rng.integers(0, model.cfg.levels, size=batch))
        r = step_model(x, level)
        bpp = (r["y_bits"] + r["z_bits"]) / (crop * crop)
        loss = (bpp + lambdas[level] * (r["x_hat"] - x).square().mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dt = (time.perf_counter() - t0) / steps
    print(
        f"batch {batch}x{crop}^2 threads {threads} compile {use_compile} channels_last {channels_last}: "
        f"{dt * 1000:.0f} ms/step, {batch * crop * crop / dt / 1e6:.3f} Mpix/s"
    )


if __name__ == "__main__":
    main()
