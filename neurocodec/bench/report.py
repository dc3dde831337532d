"""Presenting a BenchResult: terminal table, CSV, Markdown and rate-distortion plots."""

from __future__ import annotations

import csv
import io
import math
import os

from ..errors import NicError
from .bjontegaard import rate_at_psnr
from .references import LABELS
from .run import BenchResult

CSV_FIELDS = ["codec", "setting", "bpp", "psnr", "msssim", "msssim_db", "encode_ms", "decode_ms"]


def _num(v: float, fmt: str, none: str = "n/a") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else none


def _pct(v: float) -> str:
    return _num(v, "+.1f", "n/a") + (" %" if math.isfinite(v) else "")


def _setting(codec: str, v: float) -> str:
    return f"{'rate ' if codec == 'jpeg2000' else 'q'}{v:g}"


def summary_line(result: BenchResult) -> str:
    n = len(result.images)
    mpix = sum(result.pixels) / max(n, 1) / 1e6
    line = f"{n} image{'s' if n != 1 else ''}, {mpix:.3g} megapixels on average"
    if result.weights:
        pixels = result.weights.get("progress", {}).get("pixels", 0)
        line += f"; nic weights {result.weights['identity']} ({pixels:.2e} training pixels)"
    return line


def format_table(result: BenchResult) -> str:
    """The readable terminal report: every point, then the BD numbers and the settings."""
    lines = [summary_line(result), ""]
    lines.append(f"{'codec':<10} {'setting':>10} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'enc ms':>9} {'dec ms':>9}")
    for codec, pts in result.curves.items():
        for p in pts:
            lines.append(
                f"{LABELS[codec]:<10} {_setting(codec, p.setting):>10} {p.bpp:7.3f} {p.psnr:7.2f} "
                f"{_num(p.msssim, '8.4f', '     n/a')} {p.encode_ms:9.1f} {p.decode_ms:9.1f}"
            )
    if result.comparisons:
        lines += [
            "",
            "nic against each reference (Bjontegaard, over the overlapping range; n/a: no overlap, or under 4 points):",
            f"{'reference':<10} {'BD-rate PSNR':>13} {'BD-rate MS-SSIM':>16} {'BD-PSNR':>10}",
        ]
        for ref, c in result.comparisons.items():
            lines.append(
                f"{LABELS[ref]:<10} {_pct(c['bd_rate_psnr']):>13} {_pct(c['bd_rate_msssim']):>16} "
                f"{_num(c['bd_psnr'], '+.2f') + (' dB' if math.isfinite(c['bd_psnr']) else ''):>10}"
            )
        lines.append(
            "BD-rate: bits nic needs relative to the reference at equal quality (negative: nic is smaller); "
            "BD-PSNR: nic's PSNR gain at equal rate."
        )
    lines += ["", "Settings (V = the swept value; MS-SSIM on RGB, BD-rate of MS-SSIM on -10 log10(1 - MS-SSIM)):"]
    lines += [f"  {text}" for text in result.settings.values()]
    return "\n".join(lines)


def to_csv(result: BenchResult) -> str:
    """One row per codec and setting (the BD numbers are in the JSON)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for codec, pts in result.curves.items():
        for p in pts:
            row = [p.bpp, p.psnr, p.msssim, p.msssim_db, p.encode_ms, p.decode_ms]
            w.writerow([codec, f"{p.setting:g}", *(_num(v, ".6g", "") for v in row)])
    return buf.getvalue()


def to_markdown(result: BenchResult, plot: str | None = None) -> str:
    """README tables: nic's ladder with what each reference needs for the same PSNR, then BD numbers."""
    refs = [c for c in result.curves if c != "nic"]
    nic = result.curves["nic"]
    out = [summary_line(result) + ".", ""]
    out.append("| nic quality | bpp | PSNR (dB) | MS-SSIM | " + " | ".join(f"{LABELS[r]} bpp" for r in refs) + " |")
    out.append("| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in refs) + " |")
    for p in nic:
        others = [_num(rate_at_psnr([(q.bpp, q.psnr) for q in result.curves[r]], p.psnr), ".3f", "-") for r in refs]
        out.append(
            f"| {p.setting:g} | {p.bpp:.3f} | {p.psnr:.2f} | {_num(p.msssim, '.4f', '-')} | "
            + " | ".join(others)
            + " |"
        )
    out += [
        "",
        (
            "(reference bpp: the rate each codec needs for nic's PSNR, interpolated on its curve; "
            "-: outside the reference's sweep)"
        ),
        "",
        "| nic against | BD-rate (PSNR) | BD-rate (MS-SSIM) | BD-PSNR |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in refs:
        c = result.comparisons[r]
        bd_psnr = _num(c["bd_psnr"], "+.2f") + (" dB" if math.isfinite(c["bd_psnr"]) else "")
        out.append(f"| {LABELS[r]} | {_pct(c['bd_rate_psnr'])} | {_pct(c['bd_rate_msssim'])} | {bd_psnr} |")
    times = []
    for codec, pts in result.curves.items():
        enc = sorted(p.encode_ms for p in pts)[len(pts) // 2]
        dec = sorted(p.decode_ms for p in pts)[len(pts) // 2]
        times.append(f"{LABELS[codec]} {enc:.0f} / {dec:.0f}")
    out += [
        "",
        "(BD-rate: nic's bits relative to the reference at equal quality, negative when nic is smaller; "
        "BD-PSNR: nic's PSNR gain at equal rate.) "
        "Encode / decode milliseconds per image, median over the sweep: " + "; ".join(times) + ".",
    ]
    out += ["", "Settings (V = the swept value):", ""]
    out += [f"- {text}" for text in result.settings.values()]
    if plot:
        out += ["", f"![rate-distortion curves]({plot})"]
    return "\n".join(out)


def plot_rd(result: BenchResult, path: str | os.PathLike, title: str | None = None) -> None:
    """Rate-distortion curves (PSNR and MS-SSIM in dB against bpp) as an image file."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise NicError("--plot needs matplotlib: pip install 'neurocodec[plot]'") from e
    has_ms = any(math.isfinite(p.msssim) for pts in result.curves.values() for p in pts)
    panels = [("psnr", "RGB PSNR (dB)")]
    if has_ms:
        panels.append(("msssim_db", "MS-SSIM (dB) = -10 log10(1 - MS-SSIM)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    # Show the references around nic's range, not up to their highest qualities.
    all_bpp = [p.bpp for pts in result.curves.values() for p in pts]
    nic_bpp = [p.bpp for p in result.curves.get("nic", [])]
    xmax = min(max(all_bpp), 1.5 * max(nic_bpp)) if nic_bpp else max(all_bpp)
    for ax, (attr, ylabel) in zip(axes[0], panels):
        shown = []
        for codec, pts in result.curves.items():
            style = {"linewidth": 2.5, "color": "black", "zorder": 3} if codec == "nic" else {"linewidth": 1.2}
            xs, ys = [p.bpp for p in pts], [getattr(p, attr) for p in pts]
            ax.plot(xs, ys, marker="o", markersize=3, label=LABELS[codec], **style)
            shown += [y for x, y in zip(xs, ys) if x <= xmax and math.isfinite(y)]
        ax.set_xlim(0, xmax * 1.02)
        if shown:
            pad = 0.04 * (max(shown) - min(shown) or 1)
            ax.set_ylim(min(shown) - pad, max(shown) + pad)
        ax.set_xlabel("bits per pixel (real file sizes)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title or summary_line(result), fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
