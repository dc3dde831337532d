"""The `nic` command line (`commands`), over the Python API; `batch` and `files` run many files safely."""

from .commands import main

__all__ = ["main"]
