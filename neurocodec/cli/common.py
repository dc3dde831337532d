"""What every nic command shares: one-line errors, the common options, output checks.

The training script's options come from here too (`--device`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click

from ..errors import NicError

STDIO = "-"


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"nic: error: {message}", err=True)
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"nic: warning: {message}", err=True)


def friendly(fn: Callable) -> Callable:
    """Turn every failure into one line on stderr and a non-zero exit; warnings into one line too."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        import warnings

        warnings.showwarning = _show_warning
        try:
            return fn(*args, **kwargs)
        except NicError as e:
            _fail(str(e))
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except MemoryError:
            _fail("out of memory (try a smaller image)")
        except OSError as e:
            _fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
        except Exception as e:  # noqa: BLE001 -- a bug: still one line, but say so
            _fail(f"internal error ({type(e).__name__}: {e}); please report it")

    return wrapper


def check_output(dst: Path, force: bool) -> None:
    """Refuse an output that exists (unless forced) or whose folder does not, before any work."""
    from .files import check_writable

    check_writable(dst, force)
    if not dst.parent.exists():
        raise NicError(f"output folder {dst.parent} does not exist")


force_option = click.option("-f", "--force", is_flag=True, help="Overwrite outputs that exist.")
jobs_option = click.option(
    "-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True, help="Files converted in parallel."
)
quiet_option = click.option("--quiet", is_flag=True, help="No progress bar or summary.")


device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the network runs; auto picks CUDA when available.",
)
