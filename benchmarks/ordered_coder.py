"""Speed of the ordered entropy coder on a 768x512 fitted pyramid's latents, Laplace tables.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/ordered_coder.py [--repeat 3]

Random latents in decoding order (7 grids, the fitted schedule's 2,307 chunks), symbols drawn around
random Q8 means with scales b = 0.3..5. Times the encoder (all chunks), the decoder chunk by chunk as
a real decoder must (split into building the rows and the coder calls), and `laplace.params` per chunk
(the decoder runs it on every chunk's context-model output). --wide gives some latents large scales:
a chunk's rows are as wide as its widest table.
"""

from __future__ import annotations

import itertools
import math
import time

import click
import numpy as np
import torch

from neurocodec.entropy.coder import _FAMILY, Ordered, SectionDecoder, _rows, encode_sections
from neurocodec.fitted import laplace
from neurocodec.fitted.context import Schedule

H, W, LEVELS = 512, 768, 7


def _best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


@click.command()
@click.option("--repeat", default=3, show_default=True, help="runs of each timing (the best is shown)")
@click.option("--wide", default=0.0, show_default=True, help="this fraction of the latents gets b = 5..48 instead")
@click.option("--seed", default=0, show_default=True)
def main(repeat: int, wide: float, seed: int) -> None:
    t = time.perf_counter()
    tables = laplace.tables()
    print(f"tables: {time.perf_counter() - t:.3f} s (first build)")
    shapes = [(math.ceil(H / 2**i), math.ceil(W / 2**i)) for i in range(LEVELS)]
    bounds = Schedule.of(shapes).bounds
    n = bounds[-1]
    rng = np.random.default_rng(seed)
    mean_q8 = rng.integers(-2000, 2001, n)
    ln_b = rng.uniform(math.log(0.3), math.log(5.0), n)
    ln_b = np.where(rng.random(n) < wide, rng.uniform(math.log(5.0), laplace.LN_SCALE_MAX, n), ln_b)
    log_scale_q8 = np.round(ln_b * 256).astype(np.int64)
    x = np.round(mean_q8 / 256 + rng.laplace(0, np.exp(log_scale_q8 / 256))).astype(np.int64)
    mean_t, log_scale_t = torch.from_numpy(mean_q8), torch.from_numpy(log_scale_q8)
    centre, idx = (v.numpy() for v in laplace.params(mean_t, log_scale_t))
    symbols = x - centre
    chunks = list(itertools.pairwise(bounds))
    print(f"{n} latents, {len(chunks)} chunks, widest chunk {max(b - a for a, b in chunks)} latents")

    t_enc, (ans, overflow) = _best(lambda: encode_sections([Ordered(symbols, idx, tables, bounds)]), repeat)
    ideal = laplace.bits(torch.from_numpy(x).double(), mean_t / 256.0, log_scale_t / 256.0).sum().item()
    print(f"size: {len(ans) + len(overflow)} bytes ({len(overflow)} overflow), {8 * len(ans) / n:.4f} bits/latent;")
    print(f"  float Laplace ideal {ideal / n:.4f} bits/latent ({8 * (len(ans) + len(overflow)) / ideal - 1:+.2%})")

    def decode() -> np.ndarray:
        dec = SectionDecoder(ans, overflow)
        out = np.concatenate([dec.decode_ordered(idx[a:b], tables) for a, b in chunks])
        dec.finish()
        return out

    t_dec, out = _best(decode, repeat)
    assert np.array_equal(out, symbols)

    def build_rows() -> int:
        return sum(_rows(tables, idx[a:b]).size for a, b in chunks)  # each chunk's rows dropped, as the decoder

    t_rows, size = _best(build_rows, repeat)
    print(f"  rows: {size / n:.1f} columns per latent on average")
    rows = [_rows(tables, idx[a:b]) for a, b in chunks]

    def coder_only() -> None:
        dec = SectionDecoder(ans, overflow)
        for r in rows:
            dec.coder.decode(_FAMILY, r)

    t_coder, _ = _best(coder_only, repeat)
    slices = [(mean_t[a:b], log_scale_t[a:b]) for a, b in chunks]
    t_params, _ = _best(lambda: [laplace.params(m, s) for m, s in slices], repeat)
    print(f"encode (all chunks):        {t_enc:.3f} s")
    print(f"decode (chunk by chunk):    {t_dec:.3f} s")
    print(f"  of which building rows:   {t_rows:.3f} s")
    print(f"  of which coder calls:     {t_coder:.3f} s")
    print(f"laplace.params per chunk:   {t_params:.3f} s")


if __name__ == "__main__":
    main()
