"""Turn a training checkpoint into shipped weights.

python -m neurocodec.training.export --ckpt .cache/train/ckpt.pt --out weights/nic.pt [--levels N]

Training keeps the whole quality ladder, whose top levels push the transforms
towards fidelity; `--levels` ships only the lowest N of them, for when the top
ones do not yet beat JPEG (benchmarks/compare_weights.py says which).
`--candidate` instead writes a model that does not beat the shipped one yet as
weights/candidate.pt (the float model alone) to be committed, so the next
training run continues it rather than starting over; shipping removes a
candidate that the shipped weights have overtaken. The weights replaced are
kept for decoding (`weights.retire_weights`): in the repository's weights/,
their decoder alone goes to weights/retired/<model>.pt and its SHA-256 into
weights/retired/SHA256SUMS, both to be committed with the new weights; beside
weights of one's own, the whole file goes to retired/<model>.pt.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from ..autoencoder.modelfiles import SUMS_NAME, is_shipped_folder
from ..autoencoder.weights import export_weights, retire_weights
from ..errors import NicError
from .checkpoints import DEFAULT_CANDIDATE, on_default_ladder, read_checkpoint, save_candidate, trained_pixels
from .data import ImageCache


@click.command()
@click.option("--ckpt", default=".cache/train/ckpt.pt", show_default=True, help="Training checkpoint to export.")
@click.option("--out", default="weights/nic.pt", show_default=True, help="Shipped weights file to write.")
@click.option("--data", default="../shared/data/train", show_default=True, help="Training photos, for calibration.")
@click.option("--levels", type=click.IntRange(2), default=None, help="Ship only the lowest N quality levels.")
@click.option(
    "--retire/--no-retire",
    default=True,
    show_default=True,
    help="Keep the weights being replaced as retired/<model>.pt next to --out, so files made with them still "
    f"decode (for the shipped weights their decoder alone, listed in retired/{SUMS_NAME}).",
)
@click.option(
    "--candidate",
    "as_candidate",
    is_flag=True,
    help=f"Write the float model to {DEFAULT_CANDIDATE} for training to resume, instead of shipping it.",
)
@click.option(
    "--half",
    is_flag=True,
    help="Store the networks' large float tensors as float16: half the bytes (the exact integer parts are unchanged).",
)
def main(ckpt: str, out: str, data: str, levels: int | None, retire: bool, as_candidate: bool, half: bool) -> None:
    """Export a checkpoint (float model) with its integer tables for coding."""
    torch.set_num_threads(2)
    try:  # a missing checkpoint must not become a freshly initialised model shipped as the weights
        model, _, progress = read_checkpoint(Path(ckpt))
    except NicError as e:
        raise click.ClickException(f"{e}; nothing was written") from None
    model = on_default_ladder(model)
    candidate = Path(out).parent / Path(DEFAULT_CANDIDATE).name
    if as_candidate:
        save_candidate(model, progress, candidate)
        click.echo(f"wrote {candidate} (step {progress['step']}, {progress['pixels']:.3e} pixels)")
        return
    trained = model
    if levels is not None:
        if levels > model.cfg.levels:
            raise click.BadParameter(f"the model has only {model.cfg.levels} levels", param_hint="--levels")
        model, _ = model.with_ladder(model.cfg.lambdas[:levels])
    calib = ImageCache(data).crops(16, 256, np.random.default_rng(0))
    if retire and Path(out).exists():
        old = retire_weights(out)
        if is_shipped_folder(out):
            click.echo(f"kept the decoder of the weights it replaces as {old}; commit it with {old.parent / SUMS_NAME}")
        else:
            click.echo(f"kept the weights it replaces as {old}")
    export_weights(model, out, progress, calib, training_ladder=trained, half=half)
    click.echo(f"wrote {out} (step {progress['step']}, {progress['pixels']:.3e} pixels)")
    if candidate.exists() and trained_pixels(candidate) <= progress["pixels"]:
        candidate.unlink()
        click.echo(f"removed {candidate}: the shipped weights have overtaken it")


if __name__ == "__main__":
    main()
