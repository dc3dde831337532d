"""Turn a training checkpoint into shipped weights.

python -m neurocodec.training.export --ckpt .cache/train/ckpt.pt --out weights/nic.pt [--levels N]
python -m neurocodec.training.export --ckpt .cache/train-ssim/ckpt.pt --half   # -> weights/nic-ssim.pt

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

from ..autoencoder.modelfiles import SUMS_NAME, is_shipped_folder, tuned_weights_path
from ..autoencoder.weights import export_weights, retire_weights
from ..errors import NicError
from ..settings import DEFAULT_TUNE, TUNES
from .checkpoints import DEFAULT_CANDIDATE, on_default_ladder, read_checkpoint, save_candidate, trained_pixels
from .data import ImageCache


@click.command()
@click.option("--ckpt", default=".cache/train/ckpt.pt", show_default=True, help="Training checkpoint to export.")
@click.option(
    "--out",
    default=None,
    help="Shipped weights file to write [default: weights/nic.pt, or weights/nic-ssim.pt for a model trained "
    "with --tune ssim].",
)
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
def main(
    ckpt: str, out: str | None, data: str, levels: int | None, retire: bool, as_candidate: bool, half: bool
) -> None:
    """Export a checkpoint (float model) with its integer tables for coding."""
    torch.set_num_threads(2)
    try:  # a missing checkpoint must not become a freshly initialised model shipped as the weights
        model, _, progress = read_checkpoint(Path(ckpt))
    except NicError as e:
        raise click.ClickException(f"{e}; nothing was written") from None
    model = on_default_ladder(model)
    tune = {d: t for t, d in TUNES.items()}[model.cfg.distortion]
    out = out or str(tuned_weights_path(Path("weights/nic.pt"), tune))
    names = {tuned_weights_path(Path("nic.pt"), t).name: t for t in TUNES}
    if names.get(Path(out).name, tune) != tune:
        raise click.ClickException(
            f"the checkpoint is tuned for {tune}, and {Path(out).name} is the name of the {names[Path(out).name]} "
            "weights; nothing was written"
        )
    candidate = Path(out).parent / Path(DEFAULT_CANDIDATE).name
    if as_candidate and tune != DEFAULT_TUNE:
        raise click.ClickException(f"a candidate is a {DEFAULT_TUNE} model, this one is tuned for {tune}")
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
    if tune == DEFAULT_TUNE and candidate.exists() and trained_pixels(candidate) <= progress["pixels"]:
        candidate.unlink()
        click.echo(f"removed {candidate}: the shipped weights have overtaken it")


if __name__ == "__main__":
    main()
