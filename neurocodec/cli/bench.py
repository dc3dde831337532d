"""`nic bench`: nic's rate-distortion and speed beside JPEG, JPEG 2000, WebP and AVIF.

A thin layer over neurocodec.bench (measurement and output);
everything heavy is imported when the command runs, so `nic --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import NicError
from ..options import device_option
from ..settings import DEFAULT_TUNE, TUNES
from .common import check_output, friendly, weights_for_tune, weights_option


def _parse_sweeps(items: tuple[str, ...], codecs: list[str]) -> dict[str, list[float]]:
    sweeps = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().lower()
        if not sep or not values.strip():
            raise NicError(f"--sweep takes CODEC=V1,V2,... (e.g. jpeg=20,50,80), not {item!r}")
        if name not in codecs:
            raise NicError(f"--sweep {name}: {name!r} is not benchmarked (codecs: {', '.join(codecs)})")
        try:
            sweeps[name] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError as e:
            raise NicError(f"--sweep {item!r}: the values must be numbers") from e
    return sweeps


def _outputs(paths: dict[str, str | None], force: bool) -> dict[str, Path]:
    """Check the output files before the (long) run starts."""
    out = {k: Path(v) for k, v in paths.items() if v}
    for p in out.values():
        check_output(p, force)
    if "plot" in out:
        try:
            import matplotlib  # noqa: F401
        except ImportError as e:
            raise NicError("--plot needs matplotlib: pip install 'neurocodec[plot]'") from e
    return out


def _run(
    images: tuple[str, ...],
    vs: str,
    sweep: tuple[str, ...],
    msssim: bool,
    json_file: str | None,
    csv_file: str | None,
    plot_file: str | None,
    weights: str | None,
    tune: str,
    device: str,
    force: bool,
) -> None:
    import json

    from ..autoencoder.modelfiles import tuned_weights
    from ..bench import format_table, load_images, parse_codecs, plot_rd, run_bench, to_csv

    codecs = ["nic", *parse_codecs(vs)]
    sweeps = _parse_sweeps(sweep, codecs)
    outputs = _outputs({"json": json_file, "csv": csv_file, "plot": plot_file}, force)
    weights = tuned_weights(tune, weights, 0)
    if weights and not Path(weights).is_file():
        raise NicError(f"weights file not found: {weights}")
    names, arrays = load_images(images)

    def bar(total: int):
        return click.progressbar(
            length=total,
            label=f"nic bench: {len(arrays)} images",
            file=click.get_text_stream("stderr"),
            item_show_func=lambda item: item,
        )

    result = run_bench(
        arrays, codecs, sweeps=sweeps, device=device, weights=weights, msssim=msssim, names=names, progress=bar
    )
    click.echo(format_table(result))
    if "json" in outputs:
        outputs["json"].write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    if "csv" in outputs:
        outputs["csv"].write_text(to_csv(result))
    if "plot" in outputs:
        plot_rd(result, outputs["plot"])


@click.command("bench")
@click.argument("images", nargs=-1, type=click.Path(path_type=str))
@click.option(
    "--vs",
    default="jpeg",
    show_default=True,
    help="Reference codecs, comma-separated: jpeg, jpeg2000, webp, avif, or all.",
)
@click.option(
    "--sweep",
    multiple=True,
    metavar="CODEC=V1,V2,...",
    help="Replace a codec's sweep, e.g. --sweep jpeg=20,50,80 or --sweep nic=0,50,100 "
    "[default: nic every trained quality level; the references as printed].",
)
@click.option("--msssim/--no-msssim", default=True, show_default=True, help="Measure MS-SSIM (the slow part).")
@click.option("--json", "json_file", metavar="FILE", help="Write every point, the BD numbers and the settings as JSON.")
@click.option("--csv", "csv_file", metavar="FILE", help="Write one row per codec and setting as CSV.")
@click.option("--plot", "plot_file", metavar="FILE.png", help="Draw the rate-distortion curves (needs matplotlib).")
@weights_option
@click.option(
    "--tune",
    type=click.Choice(list(TUNES)),
    default=DEFAULT_TUNE,
    show_default=True,
    help="Benchmark nic's weights tuned for psnr or for ssim (as nic encode --tune).",
)
@device_option
@click.option("-f", "--force", is_flag=True, help="Overwrite the output files if they exist.")
def bench(**kwargs) -> None:
    """Compare nic with JPEG, JPEG 2000, WebP and AVIF on your images.

    IMAGES are image files or folders of images [default: the example photos].
    Every codec sweeps its quality; for each point the table shows bits per pixel
    (real file sizes), RGB PSNR, MS-SSIM and the median encode and decode time per
    image, then nic's Bjontegaard deltas against each reference.

    \b
    Examples:
      nic bench --vs all
      nic bench photos/ --vs jpeg,webp --json rd.json --csv rd.csv --plot rd.png
      nic bench photos/ --vs all --tune ssim   # read the MS-SSIM columns
    """
    kwargs["weights"] = weights_for_tune(kwargs["tune"], kwargs["weights"])
    friendly(_run)(**kwargs)
