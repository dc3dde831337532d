"""Where the bits go (issue 19): a real .nic file's bytes, part by part, against the float model's estimate.

    python benchmarks/bits.py [--data ../shared/data/valid] [--images N] [--qualities 10,50,90] [--full]
                              [--out benchmarks/results/bits.md]

Every photo is cut to its centre 768x512 (512x768 when upright; `--full`: the whole
photo, its metadata chunks kept) and coded at effort 0 (the plain autoencoder).

(a) The real file is split exactly, to the bit: the container (header, chunks, CRC),
then the ANS stack's growth while each section is pushed (z, the checkerboard's
anchors, the rest; the encoder's own pushes replayed, and checked to give the very
same payload), each section's overflow varints, and the padding of the stack's
top word. The parts add up to the file's size; the script checks it.

(b) The float model's estimate of the same symbols: -log2 of the likelihood the
float networks (h_s, the context, z's density) give the decoded values, with no
integer tables.

(c) Between (b) and (a), one exactness step at a time, each on the same symbols:
the integer h_s (float context kept), the integer context, the 64-scale grid of
the Gaussian tables (continuous Gaussians at the table's scale), the tables'
integer counts (20-bit counts, +-8 sigma, escape entry), the ANS coder (its
initial state and its own rounding of the counts), escapes' overflow bytes,
padding and container; these add up from (b) to (a) exactly. The Q16 gains
change the symbols, so they are measured apart, in the float model on both
sides: the estimated bits and the decoded pixels' squared error with the Q16
gains and with the unrounded gains (the same linear interpolation between the
ladder's levels), the distortion difference turned into bits with the slope of
the rate-distortion curve between quality q-1 and q+1 (bits at equal distortion).
Items that cost more than 1 % of the file are flagged.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import constriction
import numpy as np
import torch

from neurocodec.autoencoder.codec import Analysis, analyse, synthesis_tiled
from neurocodec.autoencoder.gains import GAIN_FRAC_BITS, gains_for
from neurocodec.autoencoder.latent_codecs import HyperpriorY, Section, anchor_mask, gained_mean
from neurocodec.entropy.coder import zigzag_varints
from neurocodec.entropy.densities import SCALE_MIN, gaussian_likelihood
from neurocodec.entropy.intnet import OUT_FRAC_BITS
from neurocodec.entropy.tables import COUNT_BITS, SCALE_FRAC_BITS, gaussian_tables, scale_table
from neurocodec.format import parse
from neurocodec.settings import Q100_MAX

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("z", "y anchors", "y rest")
# The estimates between the float model and the coder, in order (z has no networks in between).
STAGES = ("float", "int h_s", "int context", "scale grid", "int tables")
FLAG = 1.0  # per cent of the file


@dataclass
class Split:
    """One file's bits: the real parts (adding up to the file) and the estimates of each part."""

    file_bytes: int
    pixels: int
    container: int  # header, chunks, CRC (bits)
    stream: list[int]  # per part: the ANS stack's growth (bits)
    overflow: list[int]  # per part: overflow varints (bits)
    escapes: list[int]  # per part: symbols sent as escapes
    pad: int  # unused bits of the stack's top word
    stages: dict[str, list[float]] = field(default_factory=dict)  # stage -> estimated bits per part

    @property
    def total(self) -> int:
        """The parts' sum in bits: equals 8 x file_bytes."""
        return self.container + sum(self.stream) + sum(self.overflow) + self.pad

    def steps(self) -> dict[str, float]:
        """From the float estimate to the real file, one exactness step at a time (bits; they add up)."""
        s = self.stages
        out = {"z tables": s["int tables"][0] - s["float"][0]}
        for name, (a, b) in {
            "int h_s": ("float", "int h_s"),
            "int context": ("int h_s", "int context"),
            "scale grid": ("int context", "scale grid"),
            "int counts": ("scale grid", "int tables"),
        }.items():
            out[name] = sum(s[b][1:]) - sum(s[a][1:])
        out["ANS coder"] = sum(self.stream) - sum(s["int tables"])
        out["overflow"] = float(sum(self.overflow))
        out["ANS pad"] = float(self.pad)
        out["container"] = float(self.container)
        return out


def replay(sections: list[Section]) -> tuple[bytes, bytes, list[int], list[int], list[int], list[float], int]:
    """The pushes of `entropy.coder.encode_sections`, with the stack's size after each section.

    ANS is a stack: the last section is pushed first, so the stack's valid bits
    after pushing section k and all after it, minus those before, are section
    k's share, and the shares add up to the payload. Returns the ANS and
    overflow payloads (to compare with the real file), each section's stack
    growth, overflow bits and escapes, its ideal bits under the integer tables,
    and the padding bits of the top word.
    """
    groups, over, ideal, escapes = [], [], [], []
    for symbols, idx, tables in sections:
        symbols = np.asarray(symbols, np.int64).ravel()
        idx = np.asarray(idx, np.int64).ravel()
        order = np.argsort(idx, kind="stable")
        ids, starts = np.unique(idx[order], return_index=True)
        pushes, big, bits = [], [], 0.0
        for k, pos in zip(ids.tolist(), np.split(order, starts[1:]) if len(order) else []):
            local = symbols[pos] - tables.lows[k]
            esc = int(tables.lengths[k]) - 1
            out = (local < 0) | (local >= esc)
            big.extend(symbols[pos][out].tolist())
            local[out] = esc
            counts = tables.table(k).astype(np.float64)
            bits += float(np.sum(COUNT_BITS - np.log2(counts[local])))
            pushes.append((tables, k, local.astype(np.int32)))
        groups.append(pushes)
        over.append(big)
        ideal.append(bits)
        escapes.append(len(big))
    coder = constriction.stream.stack.AnsCoder()
    after = []
    for pushes in reversed(groups):
        for tables, k, local in reversed(pushes):
            model = constriction.stream.model.Categorical(tables.table(k).astype(np.float64), perfect=False)
            coder.encode_reverse(local, model)
        after.append(int(coder.num_valid_bits()))
    after = after[::-1] + [0]  # after[k]: valid bits once sections k.. are pushed
    stream = [after[k] - after[k + 1] for k in range(len(sections))]
    pad = int(coder.num_bits()) - after[0]
    ans = coder.get_compressed().astype("<u4").tobytes()
    overflow = b"".join(zigzag_varints(b) for b in over)
    over_bits = [8 * len(zigzag_varints(b)) for b in over]
    return ans, overflow, stream, over_bits, escapes, ideal, pad


def _gaussian_bits(residual: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-log2 P of each residual's unit bin under a zero-mean Gaussian (float64; the model's floors)."""
    return -torch.log2(gaussian_likelihood(residual.double(), scale.double()))


def _parts_sum(bits: torch.Tensor, anchors: torch.Tensor) -> list[float]:
    return [float(bits[anchors.expand_as(bits)].sum()), float(bits[~anchors.expand_as(bits)].sum())]


@torch.no_grad()
def split(a: Analysis, q100: int) -> tuple[bytes, Split]:
    """The real file at quality q100 and its exact split, with the estimates of every stage."""
    w = a.w
    assert w.y.exact is not None and w.z.tables is not None
    if w.y.exact.context is None or w.y.context is None:
        raise click.ClickException("these weights have no checkerboard context: nothing to split into two passes")
    data = a.code(q100)
    f = parse(data)
    v, mean_c, scale_c, gain_q = a.symbols(q100)
    sections = [w.z.compress(a.z), *w.y.compress(v, scale_c, gain_q)]
    ans, overflow, stream, over_bits, escapes, ideal, pad = replay(sections)
    if ans != f.ans or overflow != f.overflow:
        raise RuntimeError("the replayed pushes do not give the file's payload (entropy.coder changed?)")
    s = Split(
        file_bytes=len(data),
        pixels=a.pixels,
        container=8 * (len(data) - len(f.ans) - len(f.overflow)),
        stream=stream,
        overflow=over_bits,
        escapes=escapes,
        pad=pad,
    )
    if s.total != 8 * len(data):
        raise RuntimeError(f"the parts add up to {s.total} bits, the file has {8 * len(data)}")

    hy, wy = v.shape[2], v.shape[3]
    anchors = anchor_mask(hy, wy)
    g = gain_q.view(1, -1, 1, 1).double() / 2.0**GAIN_FRAC_BITS
    y_hat = (v.double() + gained_mean(mean_c, gain_q)) / g  # what the decoder reconstructs
    q8 = 2.0**OUT_FRAC_BITS
    # The float networks on the same inputs: h_s on z, the context on the decoded anchors.
    mean_f, scale_f = (t[:, :, :hy, :wy].double() for t in w.y.h_s(a.z.float()).chunk(2, dim=1))
    d_mean, d_scale = (t.double() for t in w.y.context((y_hat * anchors).float()).chunk(2, dim=1))

    def est(mean: torch.Tensor, scale: torch.Tensor, with_context: bool) -> list[float]:
        if with_context:
            mean = torch.where(anchors, mean, mean + d_mean)
            scale = torch.where(anchors, scale, scale + d_scale)
        return _parts_sum(_gaussian_bits(y_hat * g - mean * g, scale * g), anchors)

    z_float = float(w.z.bits(a.z.float()).double().sum())
    idx = torch.from_numpy(w.y.table_index(scale_c, gain_q))
    grid = torch.from_numpy(scale_table())[idx]
    exact_scale = scale_c.double() * gain_q.view(1, -1, 1, 1).double() / 2.0**SCALE_FRAC_BITS
    s.stages = {
        "float": [z_float, *est(mean_f, scale_f, True)],
        "int h_s": [z_float, *est(a.mean_q.double() / q8, a.scale_q.double() / q8, True)],
        "int context": [z_float, *_parts_sum(_gaussian_bits(v, exact_scale), anchors)],
        "scale grid": [z_float, *_parts_sum(_gaussian_bits(v, grid), anchors)],
        "int tables": ideal,
    }
    return data, s


def float_gains(a: Analysis, q100: int) -> torch.Tensor:
    """The unrounded gains at q100: `gains_for`'s linear interpolation on the float gains."""
    g = a.w.model.log_gain.detach().double().exp()
    i, frac = divmod(q100 * (g.shape[0] - 1), Q100_MAX)
    if i >= g.shape[0] - 1:
        return g[-1]
    t = frac / Q100_MAX
    return g[i] * (1 - t) + g[i + 1] * t


@torch.no_grad()
def float_rd(a: Analysis, gain: torch.Tensor) -> tuple[float, float]:
    """Bits (the float model's estimate of z and y) and squared error of the decoded pixels at these gains.

    The float model throughout (float h_s and context, rounding around the
    float means), so that only the gains differ between two calls.
    """
    w = a.w
    gain = gain.float().view(1, -1, 1, 1)
    y_g = a.y * gain
    v, mean_g, scale_g = w.y.forward(a.z.float(), gain, lambda m: torch.round(y_g - m), tuple(a.y.shape[2:]))
    bits = float(HyperpriorY.bits(v, scale_g.clamp_min(SCALE_MIN)).double().sum())
    bits += float(w.z.bits(a.z.float()).double().sum())
    height, width = a.source.shape[:2]
    x = synthesis_tiled(w.model, (v + mean_g) / gain, height, width, a.dev)
    return bits, float(np.sum((x.astype(np.float64) - a.source.astype(np.float64)) ** 2))


def gain_rd(a: Analysis, q100: int) -> dict[str, list[float]]:
    """(bits, squared error) with the Q16 gains, the float gains, and the Q16 gains at quality q -+ 1."""

    def q16(q: int) -> torch.Tensor:
        return gains_for(a.w.gains, q).double() / 2.0**GAIN_FRAC_BITS

    lo, hi = max(0, q100 - 100), min(Q100_MAX, q100 + 100)
    return {
        "q16": list(float_rd(a, q16(q100))),
        "float": list(float_rd(a, float_gains(a, q100))),
        "lo": list(float_rd(a, q16(lo))),
        "hi": list(float_rd(a, q16(hi))),
    }


def gain_cost(rd: dict[str, list[float]]) -> float:
    """Bits the Q16 gains cost over the float gains at the Q16 gains' distortion (positive: Q16 worse)."""
    (r_q, d_q), (r_f, d_f), (r_lo, d_lo), (r_hi, d_hi) = (rd[k] for k in ("q16", "float", "lo", "hi"))
    slope = (r_hi - r_lo) / (d_hi - d_lo) if d_hi != d_lo else 0.0  # bits per unit of squared error (< 0)
    return r_q - (r_f + slope * (d_q - d_f))


def centre_crop(x: np.ndarray, w: int = 768, h: int = 512) -> np.ndarray:
    """The centre 768x512 (512x768 for an upright photo), as in benchmarks/effort.py."""
    if x.shape[0] > x.shape[1]:
        w, h = h, w
    top, left = max(0, (x.shape[0] - h) // 2), max(0, (x.shape[1] - w) // 2)
    return np.ascontiguousarray(x[top : top + h, left : left + w])


# -- the report ---------------------------------------------------------------------------------


def _pct(bits: float, file_bits: float) -> str:
    return f"{100 * bits / file_bits:.2f} %"


def _table_start(title: str, columns: list[str], align: list[str]) -> list[str]:
    """A blank line, the table's title, a blank line, then its header rows."""
    return ["", title, "", "| " + " | ".join(columns) + " |", "| " + " | ".join(align) + " |"]


def report(results: dict[int, list[dict]], header: str) -> str:
    """Markdown tables: the real split, real against float per part, and the exactness steps."""
    qs = sorted(results)
    lines = [header]
    lines += _table_start(
        "Where the bytes of the real file go (mean bytes per photo, share of the file):",
        ["quality", "bpp", "file", "container", "z", "y anchors", "y rest", "overflow (escapes)", "ANS pad"]
        + ["sum check"],
        ["---:"] * 9 + ["---"],
    )
    for q in qs:
        rs = [Split(**r["split"]) for r in results[q]]
        n = len(rs)
        file_bits = 8.0 * sum(r.file_bytes for r in rs)
        bpp = file_bits / sum(r.pixels for r in rs)

        def cell(bits: float, n: int = n, file_bits: float = file_bits) -> str:
            return f"{bits / 8 / n:,.1f} ({_pct(bits, file_bits)})"

        parts = [sum(r.stream[k] for r in rs) for k in range(3)]
        over = sum(sum(r.overflow) for r in rs)
        esc = sum(sum(r.escapes) for r in rs) / n
        ok = all(r.total == 8 * r.file_bytes for r in rs)
        check = f"{'= file, exact' if ok else 'MISMATCH'} ({n} files)"
        lines.append(
            f"| {q / 100:g} | {bpp:.3f} | {file_bits / 8 / n:,.0f} | {cell(sum(r.container for r in rs))} | "
            + " | ".join(cell(b) for b in parts)
            + f" | {cell(over)} ({esc:.1f}) | {cell(sum(r.pad for r in rs))} | {check} |"
        )
    lines += _table_start(
        "The same symbols: the real stream of each part (its overflow bytes included) against the float "
        "model's estimate (mean bytes per photo):",
        ["quality", "part", "real", "float estimate", "real / float"],
        ["---:", "---", "---:", "---:", "---:"],
    )
    for q in qs:
        rs = [Split(**r["split"]) for r in results[q]]
        n = len(rs)
        for k, part in enumerate(PARTS):
            real = sum(r.stream[k] + r.overflow[k] for r in rs)
            est = sum(r.stages["float"][k] for r in rs)
            lines.append(f"| {q / 100:g} | {part} | {real / 8 / n:,.1f} | {est / 8 / n:,.1f} | {real / est:.4f} |")
    steps = list(Split(**results[qs[0]][0]["split"]).steps()) + ["Q16 gains (RD)"]
    lines += _table_start(
        "From the float estimate to the file, one exactness step at a time, on the same symbols (share of the "
        f"file, over all photos, and in brackets the largest share in one photo's file; **bold**: more than "
        f"{FLAG:g} %). The rows down to the container add up to the file "
        "less the float estimate; the gains' row is measured apart (bits at equal distortion):",
        ["step"] + [f"q {q / 100:g}" for q in qs],
        ["---"] + ["---:" for _ in qs],
    )
    table: dict[str, list[str]] = {s: [] for s in steps}
    flags: list[str] = []
    for q in qs:
        rs = [Split(**r["split"]) for r in results[q]]
        file_bits = 8.0 * sum(r.file_bytes for r in rs)
        per_photo = [{**r.steps(), "Q16 gains (RD)": gain_cost(raw["gains"])} for r, raw in zip(rs, results[q])]
        for s in steps:
            pct = 100 * sum(p[s] for p in per_photo) / file_bits
            top = max(100 * p[s] / (8 * r.file_bytes) for p, r in zip(per_photo, rs))
            text = f"{pct:+.3f} %"
            if pct > FLAG:
                text = f"**{text}**"
                flags.append(f"q {q / 100:g}: {s} costs {pct:.2f} % of the files")
            elif top > FLAG:
                flags.append(f"q {q / 100:g}: {s} costs up to {top:.2f} % of one photo's file")
            table[s].append(f"{text} ({top:+.2f} %)")
    lines += [f"| {s} | " + " | ".join(table[s]) + " |" for s in steps]
    lines += ["", f"Flagged (more than {FLAG:g} % of the file): " + ("; ".join(flags) if flags else "none") + "."]
    return "\n".join(lines) + "\n"


def _tables_match(a: Analysis) -> bool:
    """Whether the weights' y tables are today's `gaussian_tables` (the scale grid row assumes their scales)."""
    t, ref = a.w.y.exact.tables, gaussian_tables()
    return np.array_equal(t.counts, ref.counts) and np.array_equal(t.lows, ref.lows)


def _header(command: str, photos: int, data: str, full: bool, model: str, matched: bool) -> str:
    what = "whole photos (metadata kept)" if full else "768x512 centre crops (512x768 upright)"
    header = (
        f"`{command}`: {photos} photos of `{data}`, {what}, effort 0, weights {model}, {time.strftime('%Y-%m-%d')}."
    )
    if not matched:
        header += " (The weights' y tables differ from today's `gaussian_tables`: the scale grid row is approximate.)"
    return header


@click.command()
@click.option("--data", default="../shared/data/valid", show_default=True, help="Folder of photos.")
@click.option("--images", "limit", type=int, default=0, help="Only the first N photos (0: all).")
@click.option("--qualities", default="10,50,90", show_default=True)
@click.option("--full", is_flag=True, help="Whole photos with their metadata, not 768x512 centre crops.")
@click.option("--threads", default=2, show_default=True)
@click.option("--out", default=str(RESULTS / "bits.md"), show_default=True, help="Markdown report ('-': none).")
@click.option("--from-json", "stored", default=None, help="Only write the report again from a run's .json.")
def main(data: str, limit: int, qualities: str, full: bool, threads: int, out: str, stored: str | None) -> None:
    from neurocodec.training.data import list_images, load_rgb

    if stored:
        raw = json.loads(Path(stored).read_text())
        text = report({int(q): r for q, r in raw["results"].items()}, raw["header"])
        print(text)
        if out != "-":
            Path(out).write_text(text)
        return
    torch.set_num_threads(threads)
    paths = list_images(data)[: limit or None]
    if not paths:
        raise click.ClickException(f"no images in {data}")
    q100s = sorted({round(float(q) * 100) for q in qualities.split(",") if q.strip()})
    results: dict[int, list[dict]] = {q: [] for q in q100s}
    t0, model, matched = time.perf_counter(), "", True
    for i, path in enumerate(paths):
        a = analyse(str(path) if full else centre_crop(load_rgb(path)), device="cpu")
        model, matched = a.w.identity.hex(), matched and _tables_match(a)
        for q in q100s:
            _, s = split(a, q)
            results[q].append({"photo": path.name, "split": asdict(s), "gains": gain_rd(a, q)})
        print(f"{i + 1}/{len(paths)} {path.name} {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    command = f"python benchmarks/bits.py{' --full' if full else ''} --qualities {qualities}"
    header = _header(command, len(paths), data, full, model, matched)
    text = report(results, header)
    print(text)
    if out != "-":
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        raw_path = Path(out).with_suffix(".json")
        raw_path.write_text(json.dumps({"header": header, "results": {str(q): r for q, r in results.items()}}))
        print(f"written: {out}, {raw_path} (load average {os.getloadavg()[0]:.2f})", file=sys.stderr)


if __name__ == "__main__":
    main()
