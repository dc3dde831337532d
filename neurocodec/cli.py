"""The `nic` command line: a thin layer over `neurocodec.encode/decode`.

Heavy imports (torch) happen inside the commands that need them, so
`nic --help` and `nic info` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click

from .errors import NicError

DEFAULT_QUALITY = 75.0  # keep equal to codec.DEFAULT_QUALITY (not imported: it pulls in torch)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"nic: error: {message}", err=True)
    sys.exit(code)


def friendly(fn: Callable) -> Callable:
    """Turn every failure into one line on stderr and a non-zero exit."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
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


def _output_path(src: Path, out: str | None, suffix: str) -> Path:
    dst = Path(out) if out else src.with_suffix(suffix)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise NicError(f"refusing to overwrite the input file {src}; choose another name with -o")
    return dst


def _check_writable(dst: Path, force: bool) -> None:
    if dst.exists() and not force:
        raise NicError(f"{dst} already exists (use -f to overwrite it)")
    if not dst.parent.exists():
        raise NicError(f"output folder {dst.parent} does not exist")


device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the network runs; auto picks CUDA when available.",
)
force_option = click.option("-f", "--force", is_flag=True, help="Overwrite the output if it exists.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """neurocodec: a learned image codec.

    \b
    nic encode photo.png                  # writes photo.nic
    nic encode photo.png -q 90 -o hi.nic  # higher quality, bigger file
    nic decode photo.nic                  # writes photo.png
    nic info photo.nic                    # size, quality, bits per pixel
    """


@main.command()
@click.argument("input", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", help="Output .nic file [default: INPUT with .nic suffix].")
@click.option(
    "-q",
    "--quality",
    type=float,
    default=DEFAULT_QUALITY,
    show_default=True,
    help="0 (smallest file) to 100 (best image); fractions allowed.",
)
@device_option
@force_option
@friendly
def encode(input: Path, output: str | None, quality: float, device: str, force: bool) -> None:
    """Compress an image (PNG, JPEG, ...) to a .nic file.

    \b
    Example: nic encode photo.png -q 80 -o photo.nic
    """
    from .atomic import write_atomic
    from .codec import encode as encode_image

    dst = _output_path(input, output, ".nic")
    _check_writable(dst, force)
    data = encode_image(input, quality=quality, device=device)
    write_atomic(dst, data)


@main.command()
@click.argument("input", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", help="Output image; its extension picks the format [default: INPUT with .png suffix].")
@device_option
@force_option
@friendly
def decode(input: Path, output: str | None, device: str, force: bool) -> None:
    """Decompress a .nic file to an image (PNG unless -o says otherwise).

    \b
    Example: nic decode photo.nic -o photo.png
    """
    import io

    from .atomic import write_atomic
    from .codec import decode as decode_image

    if not input.exists():
        raise NicError(f"no such file: {input}")
    dst = _output_path(input, output, ".png")
    _check_writable(dst, force)
    image = decode_image(input.read_bytes(), device=device)
    buf = io.BytesIO()
    try:
        image.save(buf, format=_pil_format(dst))
    except (KeyError, ValueError) as e:
        raise NicError(
            f"cannot write {dst.suffix or 'files without an extension'}: use .png, .jpg, .webp, .tiff or .ppm"
        ) from e
    write_atomic(dst, buf.getvalue())


def _pil_format(path: Path) -> str:
    from PIL import Image

    ext = path.suffix.lower()
    Image.init()
    if ext not in Image.EXTENSION:
        raise NicError(f"unknown image extension {ext or '(none)'!r}: use .png, .jpg, .webp, .tiff or .ppm")
    return Image.EXTENSION[ext]


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@friendly
def info(file: Path) -> None:
    """Show the header of a .nic file and its bits per pixel."""
    from .format import parse

    if not file.exists():
        raise NicError(f"no such file: {file}")
    data = file.read_bytes()
    f = parse(data)
    bpp = 8 * len(data) / (f.width * f.height)
    click.echo(f"file:      {file}")
    click.echo(f"size:      {f.width}x{f.height} RGB")
    click.echo(f"quality:   {f.quality:g}")
    click.echo(f"model:     {f.model_id.hex()}")
    click.echo(f"bytes:     {len(data)} (payload {len(f.ans)} + overflow {len(f.overflow)})")
    click.echo(f"bpp:       {bpp:.4f}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train the model (same options as python -m neurocodec.train; see nic train --help)."""
    from .train import main as train_main

    train_main.main(args=ctx.args, prog_name="nic train", standalone_mode=True)


if __name__ == "__main__":
    main()
