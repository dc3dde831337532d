"""The --device option, shared by the nic commands and the training script (which is not part of the CLI)."""

from __future__ import annotations

import click

device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the network runs; auto picks CUDA when available.",
)
