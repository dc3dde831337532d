"""Turn a training checkpoint into shipped weights.

python -m neurocodec.export --ckpt .cache/train/ckpt.pt --out weights/nic.pt [--levels N]

Training keeps the whole quality ladder, whose top levels push the transforms
towards fidelity; `--levels` ships only the lowest N of them, for when the top
ones do not yet beat JPEG (benchmarks/rd_valid.py says which).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from .data import ImageCache
from .modelfiles import retire_weights
from .train import load_start
from .weights import export_weights


@click.command()
@click.option("--ckpt", default=".cache/train/ckpt.pt", show_default=True, help="Training checkpoint to export.")
@click.option("--out", default="weights/nic.pt", show_default=True, help="Shipped weights file to write.")
@click.option("--data", default="../shared/data/train", show_default=True, help="Training photos, for calibration.")
@click.option("--levels", type=click.IntRange(2), default=None, help="Ship only the lowest N quality levels.")
@click.option(
    "--retire/--no-retire",
    default=True,
    show_default=True,
    help="Keep the weights being replaced as retired/<model>.pt next to --out, so files made with them still decode.",
)
def main(ckpt: str, out: str, data: str, levels: int | None, retire: bool) -> None:
    """Export a checkpoint (float model) with its integer tables for coding."""
    torch.set_num_threads(2)
    model, _, progress = load_start(Path(ckpt), Path("/nonexistent"))
    if levels is not None:
        if levels > model.cfg.levels:
            raise click.BadParameter(f"the model has only {model.cfg.levels} levels", param_hint="--levels")
        model, _ = model.with_ladder(model.cfg.lambdas[:levels])
    calib = ImageCache(data).crops(16, 256, np.random.default_rng(0))
    if retire and Path(out).exists():
        old = retire_weights(out)
        click.echo(f"kept the weights it replaces as {old}")
    export_weights(model, out, progress, calib)
    click.echo(f"wrote {out} (step {progress['step']}, {progress['pixels']:.3e} pixels)")


if __name__ == "__main__":
    main()
