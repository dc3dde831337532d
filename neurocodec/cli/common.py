"""What every nic command shares: one-line errors, the common options, output checks."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click

from ..errors import NicError
from ..options import device_option
from ..settings import DEFAULT_TUNE

STDIO = Path("-")  # stdin or stdout, as an input or an output


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
        except BrokenPipeError:  # the reader went away (nic info x.nic | head -3): not an error
            _quiet_stdout()
            sys.exit(0)
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


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail on the closed pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def check_writable(dst: Path, force: bool, src: Path | None = None) -> None:
    """Refuse to overwrite the input, or an existing output without force."""
    if dst == STDIO:
        return
    if src is not None and src != STDIO and dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise NicError(f"refusing to overwrite the input file {src}; choose another name with -o")
    if dst.exists() and not force:
        raise NicError(f"{dst} already exists (use -f to overwrite it)")
    if dst.exists() and dst.is_dir():
        raise NicError(f"{dst} is a folder")


def check_output(dst: Path, force: bool) -> None:
    """Refuse an output that exists (unless forced) or whose folder does not, before any work."""
    check_writable(dst, force)
    if not dst.parent.exists():
        raise NicError(f"output folder {dst.parent} does not exist")


force_option = click.option("-f", "--force", is_flag=True, help="Overwrite outputs that exist.")
jobs_option = click.option(
    "-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True, help="Files converted in parallel."
)
quiet_option = click.option("--quiet", is_flag=True, help="Nothing on stderr but warnings and errors.")
verbose_option = click.option(
    "-v", "--verbose", count=True, help="Say more: image size, model, device and timings per file."
)
skip_option = click.option(
    "--skip-existing", is_flag=True, help="Leave inputs whose output exists alone (re-running a batch)."
)
threads_option = click.option(
    "--threads", type=click.IntRange(1, 512), default=None, help="CPU threads per process [default: all cores]."
)
weights_option = click.option(
    "--weights",
    metavar="FILE",
    envvar="NIC_WEIGHTS",
    show_envvar=True,
    help="Weights of your own (nic train) [default: the shipped weights].",
)


def weights_for_tune(tune: str, weights: str | None) -> str | None:
    """--weights as given, but not $NIC_WEIGHTS under another tuning than psnr: the variable names one's own
    (PSNR) weights, and --tune picks the shipped weights tuned for it, as tune= does in the API."""
    source = click.get_current_context().get_parameter_source("weights")
    return None if tune != DEFAULT_TUNE and source == click.core.ParameterSource.ENVIRONMENT else weights


def batch_options(fn: Callable) -> Callable:
    """The options of every command that converts files: weights, device, threads, jobs, overwriting, verbosity."""
    for option in reversed(
        (
            weights_option,
            device_option,
            threads_option,
            jobs_option,
            force_option,
            skip_option,
            quiet_option,
            verbose_option,
        )
    ):
        fn = option(fn)
    return fn
