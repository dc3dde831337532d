"""Turn a training checkpoint into shipped weights.

python -m neurocodec.export --ckpt .cache/train/ckpt.pt --out weights/nic.pt
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from .data import ImageCache
from .train import load_start
from .weights import export_weights


@click.command()
@click.option("--ckpt", default=".cache/train/ckpt.pt", show_default=True, help="Training checkpoint to export.")
@click.option("--out", default="weights/nic.pt", show_default=True, help="Shipped weights file to write.")
@click.option("--data", default="../shared/data/train", show_default=True, help="Training photos, for calibration.")
def main(ckpt: str, out: str, data: str) -> None:
    """Export a checkpoint (float model) with its integer tables for coding."""
    torch.set_num_threads(2)
    model, _, progress = load_start(Path(ckpt), Path("/nonexistent"))
    calib = ImageCache(data).crops(16, 256, np.random.default_rng(0))
    export_weights(model, out, progress, calib)
    click.echo(f"wrote {out} (step {progress['step']}, {progress['pixels']:.3e} pixels)")


if __name__ == "__main__":
    main()
