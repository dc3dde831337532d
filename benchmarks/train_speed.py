"""Pixels per second of a full training step (forward, backward, Adam) on this machine.

    python benchmarks/train_speed.py --batch 8 --crop 192 [--compile] [--channels-last] [--bf16] [--decode-each-step]

--decode-each-step measures the naive data pipeline (decode `batch` photos with
Pillow at every step) instead of crops from the uint8 memory-mapped cache.

Pause any training run first (kill -STOP PID): the figure is only meaningful on idle cores.
"""

from __future__ import annotations

import time

import click
import numpy as np
import torch

from neurocodec.autoencoder.model import ModelConfig, NicModel
from neurocodec.training.data import ImageCache, list_images, load_rgb
from neurocodec.training.loop import train_step


def decoded_crops(files: list, batch: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """The pipeline the cache replaces: open and decode a photo for every crop."""
    out = []
    for i in rng.integers(0, len(files), batch):
        a = load_rgb(files[i])
        y, x = rng.integers(0, a.shape[0] - crop + 1), rng.integers(0, a.shape[1] - crop + 1)
        out.append(torch.from_numpy(a[y : y + crop, x : x + crop].copy()))
    return torch.stack(out).permute(0, 3, 1, 2).float()


@click.command()
@click.option("--data", default="../shared/data/train", show_default=True)
@click.option("--batch", default=8, show_default=True)
@click.option("--crop", default=192, show_default=True)
@click.option("--steps", default=8, show_default=True, help="Timed steps (after 3 warm-up steps).")
@click.option("--threads", default=2, show_default=True)
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model.")
@click.option("--channels-last", is_flag=True)
@click.option("--decode-each-step", is_flag=True, help="Decode photos at every step instead of using the cache.")
@click.option("--latent-channels", default=ModelConfig.m, show_default=True)
@click.option("--deep-channels", default=ModelConfig.n_deep, show_default=True)
@click.option("--bf16", is_flag=True, help="bfloat16 autocast for the convolutions.")
def main(
    data: str,
    batch: int,
    crop: int,
    steps: int,
    threads: int,
    use_compile: bool,
    channels_last: bool,
    decode_each_step: bool,
    latent_channels: int,
    deep_channels: int,
    bf16: bool,
) -> None:
    torch.set_num_threads(threads)
    cache = ImageCache(data)
    files = list_images(data)
    rng = np.random.default_rng(0)
    model = NicModel(ModelConfig(m=latent_channels, n_deep=deep_channels))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    step_model = torch.compile(model) if use_compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    lambdas = torch.tensor(model.cfg.lambdas)
    for i in range(3 + steps):
        if i == 3:
            t0 = time.perf_counter()
        x = decoded_crops(files, batch, crop, rng) if decode_each_step else cache.crops(batch, crop, rng)
        x = x.contiguous(memory_format=fmt)
        level = torch.from_numpy(rng.integers(0, model.cfg.levels, size=batch))
        train_step(step_model, opt, x, level, lambdas, bf16)
    dt = (time.perf_counter() - t0) / steps
    print(
        f"m={latent_channels} batch {batch}x{crop}^2 threads {threads} compile {use_compile} "
        f"channels_last {channels_last} decode_each_step {decode_each_step} n_deep {deep_channels} bf16 {bf16}: "
        f"{dt * 1000:.0f} ms/step, {batch * crop * crop / dt / 1e6:.3f} Mpix/s"
    )


if __name__ == "__main__":
    main()
