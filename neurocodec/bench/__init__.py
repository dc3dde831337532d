"""Benchmarks against the reference codecs: `run` measures, `references` runs JPEG,
JPEG 2000, WebP and AVIF through Pillow, `bjontegaard` compares curves, `report`
writes tables, CSV and plots.

    from neurocodec.bench import run_bench, load_images
    names, images = load_images(["examples"])
    result = run_bench(images, ["nic", "jpeg"])
    result.comparisons["jpeg"]  # {"bd_rate_psnr": ..., "bd_rate_msssim": ..., "bd_psnr": ...}

No torch import here: nic is imported only when it is measured.
"""

from ..metrics import psnr
from .bjontegaard import bd_psnr, bd_rate, rate_at_psnr
from .references import (
    LABELS,
    REFERENCE_SETTINGS,
    REFERENCES,
    SWEEPS,
    parse_codecs,
    reference_decode,
    reference_encode,
)
from .report import format_table, plot_rd, to_csv, to_markdown
from .run import (
    BenchResult,
    Point,
    cache_key,
    coder,
    compare,
    find_images,
    json_clean,
    load_images,
    measure,
    nic_ladder,
    read_image,
    run_bench,
)

__all__ = [
    "LABELS",
    "REFERENCES",
    "REFERENCE_SETTINGS",
    "SWEEPS",
    "BenchResult",
    "Point",
    "bd_psnr",
    "bd_rate",
    "cache_key",
    "coder",
    "compare",
    "find_images",
    "format_table",
    "json_clean",
    "load_images",
    "measure",
    "nic_ladder",
    "parse_codecs",
    "plot_rd",
    "psnr",
    "rate_at_psnr",
    "read_image",
    "reference_decode",
    "reference_encode",
    "run_bench",
    "to_csv",
    "to_markdown",
]
