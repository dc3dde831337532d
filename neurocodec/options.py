"""Command-line options shared by nic's commands and the training script.

A module of its own so that every command can import them: cli imports
bench_cli, so bench_cli cannot import them from cli.
"""

from __future__ import annotations

import click

device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the network runs; auto picks CUDA when available.",
)
