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

from .errors import NicError, NicWarning

DEFAULT_QUALITY = 75.0  # keep equal to codec.DEFAULT_QUALITY (not imported: it pulls in torch)


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
@click.option(
    "--max-pixels",
    type=int,
    default=None,
    help="Refuse files declaring more pixels than this [default: 178956970]; 0 = no limit.",
)
@device_option
@force_option
@friendly
def decode(input: Path, output: str | None, max_pixels: int | None, device: str, force: bool) -> None:
    """Decompress a .nic file to an image (PNG unless -o says otherwise).

    Grey, alpha and the colour profile come back as they were encoded.

    \b
    Example: nic decode photo.nic -o photo.png
    """
    from .atomic import write_atomic
    from .codec import decode as decode_image

    if not input.exists():
        raise NicError(f"no such file: {input}")
    dst = _output_path(input, output, ".png")
    _check_writable(dst, force)
    fmt = _pil_format(dst)
    image = decode_image(input.read_bytes(), device=device, max_pixels=max_pixels)
    write_atomic(dst, image_bytes(image, fmt, dst))


# Pillow formats that cannot store an alpha channel.
_NO_ALPHA = {"JPEG", "PPM", "BMP", "EPS", "PCX", "SGI", "XBM", "IM", "MPEG", "DDS", "JPEG2000"}


def image_bytes(image, fmt: str, dst: Path) -> bytes:
    """The image saved in Pillow format `fmt`, keeping its ICC profile where the format can."""
    import io
    import warnings

    if fmt in _NO_ALPHA and image.mode in ("RGBA", "LA"):
        warnings.warn(f"{fmt} cannot store transparency: the alpha channel is dropped", NicWarning, stacklevel=2)
        image = image.convert(image.mode[:-1])
    kwargs = {}
    if image.info.get("icc_profile") and fmt in ("PNG", "JPEG", "WEBP", "TIFF", "AVIF", "JPEG2000"):
        kwargs["icc_profile"] = image.info["icc_profile"]
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt, **kwargs)
    except (KeyError, ValueError, OSError) as e:
        raise NicError(f"cannot write {image.mode} images as {dst.suffix}: use .png, .jpg, .webp, .tiff or .ppm") from e
    return buf.getvalue()


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
    from .format import ICC, LAYOUT_NAMES, parse

    if not file.exists():
        raise NicError(f"no such file: {file}")
    data = file.read_bytes()
    f = parse(data)
    bpp = 8 * len(data) / (f.width * f.height)
    click.echo(f"file:      {file}")
    click.echo(f"size:      {f.width}x{f.height} {LAYOUT_NAMES[f.layout]}")
    click.echo(f"quality:   {f.quality:g}")
    click.echo(f"model:     {f.model_id.hex()}")
    extras = ", ".join(f"{tag.decode('ascii', 'replace')} {len(d)} B" for tag, d in f.chunks.items())
    click.echo(
        f"bytes:     {len(data)} (payload {len(f.ans)} + overflow {len(f.overflow)}"
        + (f"; {extras})" if extras else ")")
    )
    click.echo(f"profile:   {'ICC kept' if ICC in f.chunks else 'none (sRGB assumed)'}")
    click.echo(f"bpp:       {bpp:.4f}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train the model (same options as python -m neurocodec.train; see nic train --help)."""
    from .train import main as train_main

    train_main.main(args=ctx.args, prog_name="nic train", standalone_mode=True)



if __name__ == "__main__":
    main()
