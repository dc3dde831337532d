"""`python -m neurocodec` is `nic`."""

from .cli import main

main(prog_name="nic")
