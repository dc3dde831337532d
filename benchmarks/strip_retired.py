"""Rewrite whole retired weights files as decoder-only ones, listed in retired/SHA256SUMS (run once, then commit).

    python benchmarks/strip_retired.py [--folder weights/retired]

Retired weights serve only the .nic files their model wrote, and decoding reads
a third of each file (`neurocodec.autoencoder.weights.strip_for_decoding`);
whole copies made the checkout too big to travel to a lent GPU. Files already
stripped are left as they are. `retire_weights` writes the stripped form
directly, so a later export needs no run of this script.
"""

from __future__ import annotations

from pathlib import Path

import click

from neurocodec.autoencoder.modelfiles import DEFAULT_WEIGHTS, RETIRED_DIR, SUMS_NAME, identity_of
from neurocodec.autoencoder.weights import load_weights, strip_for_decoding


@click.command()
@click.option("--folder", default=str(DEFAULT_WEIGHTS.parent / RETIRED_DIR), show_default=True)
def main(folder: str) -> None:
    """Strip every whole retired weights file of `folder` in place."""
    for path in sorted(Path(folder).glob("*.pt")):
        if identity_of(path).hex() != path.stem:  # not a whole file of this model: stripped already, or foreign
            state = "decoder only" if load_weights(path).identity.hex() == path.stem else "NOT TRUSTED"
            click.echo(f"{path.name}: left as it is ({state})")
            continue
        before = path.stat().st_size
        strip_for_decoding(path, path)
        assert load_weights(path).identity.hex() == path.stem and load_weights(path).decoder_only
        click.echo(f"{path.name}: {before / 1e6:.1f} MB -> {path.stat().st_size / 1e6:.1f} MB")
    click.echo(f"now commit {folder}/*.pt with {folder}/{SUMS_NAME}")


if __name__ == "__main__":
    main()
