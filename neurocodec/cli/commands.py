"""The `nic` commands: encode, decode, info, bench, train; a thin layer over the Python API.

Heavy imports (torch) happen inside the commands that need them, so
`nic --help` and `nic info` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import click

from .. import __version__
from ..errors import NicError
from ..settings import (
    DEFAULT_EFFORT,
    DEFAULT_QUALITY,
    DEFAULT_TUNE,
    FIRST_FITTED,
    FIT_ITERATIONS,
    MAX_EFFORT,
    MAX_PIXELS,
    REFINE_STEPS,
    TUNES,
)
from .bench import bench
from .common import STDIO, batch_options, friendly, weights_for_tune, weights_option


def _paths(inputs: tuple[str, ...]) -> list[Path]:
    if not inputs:
        raise NicError("no input given (a file, a folder, or - for stdin); see --help")
    return [Path(p) for p in inputs]


def _refuse_terminal(jobs: list, what: str) -> None:
    if jobs and jobs[0].dst == STDIO and sys.stdout.isatty():
        raise NicError(f"refusing to write {what} to the terminal; redirect it or use -o FILE")


def _run_batch(jobs: list, fn: Callable, opts: dict, run_options: dict) -> None:
    """Run jobs with the `batch_options`; print a line per file (unless --quiet), failures, warnings
    and a summary; exit 1 if any failed."""
    from .batch import attempt, human, run

    verbosity = _verbosity(run_options["quiet"], run_options["verbose"])
    weights, threads, n_jobs = run_options["weights"], run_options["threads"] or 0, run_options["jobs"]
    if weights is not None and not Path(weights).is_file():
        raise NicError(f"weights file not found: {weights}")
    opts = {**opts, **{k: run_options[k] for k in ("weights", "device", "force", "skip_existing")}}
    say = verbosity > 0
    single = len(jobs) == 1
    if opts["skip_existing"]:
        skipped = [j for j in jobs if j.dst != STDIO and j.dst.exists()]
        jobs = [j for j in jobs if j not in skipped]
        if say and skipped:
            click.echo(f"nic: skipped {len(skipped)} file(s) whose output exists (--skip-existing)", err=True)
        if not jobs:
            return
    if threads:
        import torch

        torch.set_num_threads(threads)
    if single:
        with _progress_bar(say) as progress:
            r = attempt(fn, dict(opts, progress=progress), jobs[0])
        for w in r.warnings:
            click.echo(f"nic: warning: {w}", err=True)
        if r.error:
            raise NicError(r.error)
        _report(r, verbosity)
        return
    opts = dict(opts, make_dirs=True)
    failed, n_in, n_out = 0, 0, 0
    for r in run(jobs, fn, opts, n_jobs, threads=threads):  # each file's line is the progress
        for w in r.warnings:
            click.echo(f"nic: warning: {r.job.src}: {w}", err=True)
        if r.error:
            failed += 1
            click.echo(f"nic: error: {r.job.src}: {r.error}", err=True)
        else:
            n_in, n_out = n_in + r.bytes_in, n_out + r.bytes_out
            _report(r, verbosity)
    if say:
        ratio = f" ({n_in / n_out:.2f}x)" if n_out else ""
        tail = f", {failed} failed" if failed else ""
        click.echo(
            f"nic: {len(jobs) - failed} of {len(jobs)} files converted, {human(n_in)} -> {human(n_out)}{ratio}{tail}",
            err=True,
        )
    if failed:
        sys.exit(1)


def _report(r, verbosity: int) -> None:
    if verbosity > 0:
        click.echo(f"nic: {r.line}", err=True)
    if verbosity > 1 and r.detail:
        click.echo(f"nic:   {r.detail}", err=True)


@contextmanager
def _progress_bar(enabled: bool):
    """A progress callback that draws a bar on a terminal once work is long (several tiles, refinement)."""
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    bars: dict[str, object] = {}
    try:

        def progress(stage: str, done: int, total: int) -> None:
            if total < 2 or (stage != "refinement" and total < 4):
                return
            if stage not in bars:
                bar = click.progressbar(length=total, label=f"nic: {stage}", file=sys.stderr)
                bars[stage] = bar.__enter__()
            bars[stage].update(done - bars[stage].pos)
            if done >= total:
                bars.pop(stage).__exit__(None, None, None)

        yield progress
    finally:
        for bar in bars.values():
            bar.__exit__(None, None, None)


def _verbosity(quiet: bool, verbose: int) -> int:
    if quiet and verbose:
        raise NicError("give --quiet or -v, not both")
    return 0 if quiet else 1 + verbose


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
    nic info photo.nic                    # size, quality, bits per pixel (--json)
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
    default=DEFAULT_EFFORT,
    show_default=True,
    help="Encode time for fewer bits, like cwebp -m: 0 is one fast pass; "
    + ", ".join(map(str, range(1, FIRST_FITTED)))
    + " refine each image's latents with "
    + ", ".join(map(str, REFINE_STEPS[1:]))
    + f" gradient steps (level {FIRST_FITTED - 1}: about 1.5 minutes per megapixel on 2 CPU cores); "
    + ", ".join(map(str, range(FIRST_FITTED, MAX_EFFORT + 1)))
    + " fit a tiny decoder to each image ("
    + ", ".join(f"{n:,}" for n in FIT_ITERATIONS)
    + " iterations: minutes to an hour per image on a CPU, for archives or a GPU) and keep it when it beats "
    f"level {FIRST_FITTED - 1}. Every file decodes with any level's decoder.",
)
@click.option(
    "--tune",
    type=click.Choice(list(TUNES)),
    default=DEFAULT_TUNE,
    show_default=True,
    help="What the weights are tuned for, like aomenc --tune: psnr (least squared error) or ssim (MS-SSIM: "
    "fewer bits at equal MS-SSIM, finer texture, lower PSNR). ssim takes efforts up to "
    f"{FIRST_FITTED - 1} and not --weights.",
)
@click.option(
    "--metadata",
    default="all",
    show_default=True,
    metavar="all|none|icc,exif,xmp",
    help="What to keep of the colour profile, EXIF and XMP (like cwebp -metadata); EXIF orientation is applied "
    "to the pixels either way.",
)
@batch_options
@click.pass_context
@friendly
def encode(
    ctx: click.Context,
    inputs: tuple[str, ...],
    output: str | None,
    quality: float,
    size: str | None,
    bpp: float | None,
    psnr: float | None,
    effort: int,
    tune: str,
    metadata: str,
    **run,
) -> None:
    """Compress images (PNG, JPEG, WebP, TIFF, BMP, ...) to .nic files.

    INPUT can be files, folders (searched recursively; the tree is mirrored
    under -o) or - for stdin (then the output goes to stdout unless -o says
    otherwise). Grey stays grey, alpha is kept losslessly, the colour profile,
    EXIF and XMP are kept and EXIF orientation applied. Each file gets a line
    on stderr: output, bytes, bits per pixel, the quality used (and the PSNR
    when rate control or effort measured it).

    \b
    Examples:
      nic encode photo.png -q 80 -o photo.nic
      nic encode photo.png --size 50KB        # says which quality it chose
      nic encode photo.png -q 60 --effort 2   # smaller file, slower encode
      nic encode photo.png --tune ssim        # for MS-SSIM instead of PSNR
      nic encode a.png b.jpg photos/ -o out/ --jobs 2 --skip-existing
      cat photo.png | nic encode - > photo.nic
    """
    from ..autoencoder.modelfiles import tuned_weights
    from ..imageio import metadata_kinds
    from ..ratecontrol import parse_size
    from .batch import image_suffixes, plan
    from .files import encode_file

    given = [name for name, v in (("--size", size), ("--bpp", bpp), ("--psnr", psnr)) if v is not None]
    if len(given) > 1:
        raise NicError("give only one of --size, --bpp and --psnr")
    if given and ctx.get_parameter_source("quality") == click.core.ParameterSource.COMMANDLINE:
        raise NicError(f"give -q or {given[0]}, not both: {given[0]} chooses the quality")
    metadata_kinds(metadata)
    targets = {"size": parse_size(size) if size is not None else None, "bpp": bpp, "psnr": psnr}
    target = f"{given[0]} {size if size is not None else bpp if bpp is not None else psnr}" if given else None
    job_list = plan(_paths(inputs), output or None, ".nic", image_suffixes())
    _refuse_terminal(job_list, "a .nic file")
    run["weights"] = weights_for_tune(tune, run["weights"])
    tuned_weights(tune, run["weights"], effort)  # a tuning that cannot apply fails once, before any file
    opts = {"quality": quality, "effort": effort, "tune": tune, "metadata": metadata, "target": target, **targets}
    _run_batch(job_list, encode_file, opts, run)


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
    help=f"Refuse files declaring more pixels than this [default: {MAX_PIXELS}]; 0 = no limit.",
)
@batch_options
@friendly
def decode(
    inputs: tuple[str, ...],
    output: str | None,
    fmt: str | None,
    save_options: tuple[str, ...],
    max_pixels: int | None,
    **run,
) -> None:
    """Decompress .nic files to images (PNG unless -o or --format says otherwise).

    Grey, alpha, the colour profile, EXIF and XMP come back as they were
    encoded (where the output format can hold them). JPEG and WebP outputs
    default to quality 95.

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
        _refuse_nic(fmt)
        pil_format(fmt)
    suffix = "." + (fmt or "png").lower().lstrip(".")
    job_list = plan(_paths(inputs), output or None, suffix, {".nic"})
    for job in job_list:
        if job.dst != STDIO and not fmt:
            _refuse_nic(job.dst.suffix)
    if len(job_list) == 1 and job_list[0].dst != STDIO and not fmt:
        pil_format(job_list[0].dst.suffix)
    _refuse_terminal(job_list, "image bytes")
    opts = {"format": fmt, "save_options": parse_options(save_options), "max_pixels": max_pixels}
    _run_batch(job_list, decode_file, opts, run)


def _refuse_nic(name: str) -> None:
    if name.lower().lstrip(".") == "nic":
        raise NicError("decoding to .nic would only encode the picture again; to re-encode, use nic encode")


@main.command()
@click.argument("files", nargs=-1, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file, one per line.")
@weights_option
@friendly
def info(files: tuple[str, ...], as_json: bool, weights: str | None) -> None:
    """Show the header of .nic files (or - for stdin) and their bits per pixel.

    \b
    Examples:
      nic info photo.nic
      nic info out/*.nic --json | jq .bpp
    """
    import json

    from ..autoencoder.modelfiles import availability
    from ..format import EXIF, ICC, LAYOUT_NAMES, XMP, parse
    from .files import read_input

    if not files:
        raise NicError("no input given (.nic files, or - for stdin); see --help")
    failed = 0
    for i, name in enumerate(files):
        try:
            path = Path(name)
            if path != STDIO and not path.exists():
                raise NicError(f"no such file: {name}")
            data = read_input(path)
            f = parse(data)
        except NicError as e:
            if len(files) == 1:
                raise
            click.echo(f"nic: error: {name}: {e}", err=True)
            failed += 1
            continue
        record = {
            "file": "stdin" if path == STDIO else name,
            "width": f.width,
            "height": f.height,
            "layout": LAYOUT_NAMES[f.layout],
            "quality": f.quality,
            "model": f.model_id.hex(),
            "model_available": availability(f.model_id, weights),
            "bytes": len(data),
            "payload_bytes": len(f.ans),
            "overflow_bytes": len(f.overflow),
            "chunks": {tag.decode("ascii", "replace").strip(): len(d) for tag, d in f.chunks.items()},
            "bpp": 8 * len(data) / (f.width * f.height),
        }
        if as_json:
            click.echo(json.dumps(record))
            continue
        if i:
            click.echo("")
        extras = ", ".join(f"{tag} {n} B" for tag, n in record["chunks"].items())
        kept = [name for tag, name in ((ICC, "ICC"), (EXIF, "EXIF"), (XMP, "XMP")) if tag in f.chunks]
        click.echo(f"file:      {record['file']}")
        click.echo(f"size:      {f.width}x{f.height} {record['layout']}")
        click.echo(f"quality:   {f.quality:g}")
        click.echo(f"model:     {record['model']} ({record['model_available']})")
        click.echo(
            f"bytes:     {len(data)} (payload {len(f.ans)} + overflow {len(f.overflow)}"
            + (f"; {extras})" if extras else ")")
        )
        click.echo(f"profile:   {'ICC kept' if ICC in f.chunks else 'none (sRGB assumed)'}")
        click.echo(f"metadata:  {', '.join(kept) if kept else 'none'}")
        click.echo(f"bpp:       {record['bpp']:.4f}")
    if failed:
        sys.exit(1)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train the model (same options as python -m neurocodec.training; see nic train --help)."""
    from ..training.loop import main as train_main

    train_main.main(args=ctx.args, prog_name="nic train", standalone_mode=True)


main.add_command(bench)  # nic bench: cli/bench.py

if __name__ == "__main__":
    main(prog_name="nic")
