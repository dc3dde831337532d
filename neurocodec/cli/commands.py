"""The `nic` commands: encode, decode, info, bench, train; a thin layer over the Python API.

Heavy imports (torch) happen inside the commands that need them, so
`nic --help` and `nic info` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from .. import __version__
from ..errors import NicError
from ..settings import DEFAULT_QUALITY, MAX_EFFORT, REFINE_STEPS
from .bench import bench
from .common import STDIO, device_option, force_option, friendly, jobs_option, quiet_option


def _paths(inputs: tuple[str, ...]) -> list[Path]:
    if not inputs:
        raise NicError("no input given (a file, a folder, or - for stdin); see --help")
    return [Path(p) for p in inputs]


def _refuse_terminal(jobs: list, what: str) -> None:
    if jobs and str(jobs[0].dst) == STDIO and sys.stdout.isatty():
        raise NicError(f"refusing to write {what} to the terminal; redirect it or use -o FILE")


def _run_batch(jobs: list, fn: Callable, opts: dict, n_jobs: int, quiet: bool) -> None:
    """Run jobs; print failures (one line each), warnings and a summary; exit 1 if any failed."""
    from .batch import attempt, human, run

    if len(jobs) == 1:
        r = attempt(fn, opts, jobs[0])
        for w in r.warnings:
            click.echo(f"nic: warning: {w}", err=True)
        if r.error:
            raise NicError(r.error)
        return
    opts = dict(opts, make_dirs=True)
    failed, n_in, n_out = 0, 0, 0
    for r in run(jobs, fn, opts, n_jobs, progress=not quiet and sys.stderr.isatty()):
        for w in r.warnings:
            click.echo(f"nic: warning: {r.job.src}: {w}", err=True)
        if r.error:
            failed += 1
            click.echo(f"nic: error: {r.job.src}: {r.error}", err=True)
        else:
            n_in, n_out = n_in + r.bytes_in, n_out + r.bytes_out
    if not quiet:
        ratio = f" ({n_in / n_out:.2f}x)" if n_out else ""
        tail = f", {failed} failed" if failed else ""
        click.echo(
            f"nic: {len(jobs) - failed} of {len(jobs)} files converted, {human(n_in)} -> {human(n_out)}{ratio}{tail}",
            err=True,
        )
    if failed:
        sys.exit(1)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog='Shell completion: eval "$(_NIC_COMPLETE=bash_source nic)" in ~/.bashrc (zsh_source, fish_source).',
)
@click.version_option(__version__, "-V", "--version", prog_name="nic")
def main() -> None:
    """neurocodec: a learned image codec.

    \b
    nic encode photo.png                  # writes photo.nic (quality 75)
    nic encode photo.png -q 90 -o hi.nic  # higher quality, bigger file
    nic encode photo.png --size 50KB      # the best quality that fits in 50 kB
    nic encode photo.png --effort 2       # slower encode, fewer bytes, same decoder
    nic encode photos/ -o out/ -j 2       # a whole folder, mirrored
    cat photo.png | nic encode - > photo.nic
    nic decode photo.nic                  # writes photo.png
    nic decode photo.nic -o photo.jpg     # any format, by extension
    nic info photo.nic                    # size, quality, bits per pixel
    nic bench --vs all                    # nic against JPEG, JPEG 2000, WebP, AVIF
    """


@main.command()
@click.argument("inputs", nargs=-1, metavar="INPUT...")
@click.option("-o", "--output", help="Output file, folder (several inputs), or - for stdout [default: INPUT.nic].")
@click.option(
    "-q",
    "--quality",
    type=click.FloatRange(0, 100),
    default=DEFAULT_QUALITY,
    show_default=True,
    help="0 (smallest file) to 100 (best image); fractions allowed.",
)
@click.option("--size", help="Instead of -q: the best quality whose file fits this size (50000, 50KB, 48KiB, 1MB).")
@click.option("--bpp", type=float, help="Instead of -q: the best quality within this many bits per pixel.")
@click.option("--psnr", type=float, help="Instead of -q: the smallest file with at least this PSNR (dB).")
@click.option(
    "--effort",
    type=click.IntRange(0, MAX_EFFORT),
    default=0,
    show_default=True,
    help="Encode time for fewer bits, like cwebp -m: 0 is one fast pass; "
    + ", ".join(map(str, range(1, MAX_EFFORT + 1)))
    + " refine each image's latents with "
    + ", ".join(map(str, REFINE_STEPS[1:]))
    + f" gradient steps (level {MAX_EFFORT}: about 1.5 minutes per megapixel on 2 CPU cores). Same decoder and format.",
)
@device_option
@jobs_option
@force_option
@quiet_option
@friendly
def encode(
    inputs: tuple[str, ...],
    output: str | None,
    quality: float,
    size: str | None,
    bpp: float | None,
    psnr: float | None,
    effort: int,
    device: str,
    jobs: int,
    force: bool,
    quiet: bool,
) -> None:
    """Compress images (PNG, JPEG, WebP, TIFF, BMP, ...) to .nic files.

    INPUT can be files, folders (searched recursively; the tree is mirrored
    under -o) or - for stdin (then the output goes to stdout unless -o says
    otherwise). Grey stays grey, alpha is kept losslessly, the colour profile
    is kept and EXIF orientation applied.

    \b
    Examples:
      nic encode photo.png -q 80 -o photo.nic
      nic encode photo.png --size 50KB
      nic encode photo.png -q 60 --effort 2   # smaller file, slower encode
      nic encode a.png b.jpg photos/ -o out/ --jobs 2
      cat photo.png | nic encode - > photo.nic
    """
    from ..ratecontrol import parse_size
    from .batch import image_suffixes, plan
    from .files import encode_file

    if sum(t is not None for t in (size, bpp, psnr)) > 1:
        raise NicError("give only one of --size, --bpp and --psnr")
    targets = {"size": parse_size(size) if size is not None else None, "bpp": bpp, "psnr": psnr}
    job_list = plan(_paths(inputs), Path(output) if output else None, ".nic", image_suffixes())
    _refuse_terminal(job_list, "a .nic file")
    opts = {"quality": quality, "device": device, "force": force, "effort": effort, **targets}
    _run_batch(job_list, encode_file, opts, jobs, quiet)


@main.command()
@click.argument("inputs", nargs=-1, metavar="INPUT...")
@click.option(
    "-o",
    "--output",
    help="Output image (its extension picks the format), folder, or - for stdout [default: INPUT.png].",
)
@click.option("--format", "fmt", help="Image format for stdout and folders: png, jpg, webp, tiff, ppm [default: png].")
@click.option(
    "-O",
    "--option",
    "save_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Pillow save option of the output format, e.g. -O quality=90 or -O lossless=true.",
)
@click.option(
    "--max-pixels",
    type=int,
    default=None,
    help="Refuse files declaring more pixels than this [default: 178956970]; 0 = no limit.",
)
@device_option
@jobs_option
@force_option
@quiet_option
@friendly
def decode(
    inputs: tuple[str, ...],
    output: str | None,
    fmt: str | None,
    save_options: tuple[str, ...],
    max_pixels: int | None,
    device: str,
    jobs: int,
    force: bool,
    quiet: bool,
) -> None:
    """Decompress .nic files to images (PNG unless -o or --format says otherwise).

    Grey, alpha and the colour profile come back as they were encoded. JPEG
    and WebP outputs default to quality 95.

    \b
    Examples:
      nic decode photo.nic -o photo.png
      nic decode photo.nic -o photo.jpg -O quality=90
      nic decode out/ --format webp -o webp/
      nic decode - --format png < photo.nic > photo.png
    """
    from .batch import plan
    from .files import decode_file, parse_options, pil_format

    if fmt:
        pil_format(fmt)
    suffix = "." + (fmt or "png").lower().lstrip(".")
    job_list = plan(_paths(inputs), Path(output) if output else None, suffix, {".nic"})
    if len(job_list) == 1 and str(job_list[0].dst) != STDIO and not fmt:
        pil_format(job_list[0].dst.suffix)
    _refuse_terminal(job_list, "image bytes")
    opts = {
        "format": fmt,
        "save_options": parse_options(save_options),
        "max_pixels": max_pixels,
        "device": device,
        "force": force,
    }
    _run_batch(job_list, decode_file, opts, jobs, quiet)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@friendly
def info(file: Path) -> None:
    """Show the header of a .nic file and its bits per pixel.

    \b
    Example: nic info photo.nic
    """
    from ..autoencoder.modelfiles import availability
    from ..format import ICC, LAYOUT_NAMES, parse

    if not file.exists():
        raise NicError(f"no such file: {file}")
    data = file.read_bytes()
    f = parse(data)
    bpp = 8 * len(data) / (f.width * f.height)
    click.echo(f"file:      {file}")
    click.echo(f"size:      {f.width}x{f.height} {LAYOUT_NAMES[f.layout]}")
    click.echo(f"quality:   {f.quality:g}")
    click.echo(f"model:     {f.model_id.hex()} ({availability(f.model_id)})")
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
    """Train the model (same options as python -m neurocodec.training; see nic train --help)."""
    from ..training.loop import main as train_main

    train_main.main(args=ctx.args, prog_name="nic train", standalone_mode=True)


main.add_command(bench)  # nic bench: cli/bench.py

if __name__ == "__main__":
    main(prog_name="nic")
