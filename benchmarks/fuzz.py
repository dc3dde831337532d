"""Fuzz the decoder with mutated .nic files: only NicError may come out, never a crash or hang.

    python benchmarks/fuzz.py --cases 20000 [--seed 1]

Mutations flip bits, overwrite, insert and delete bytes, truncate, splice two
files, and rewrite header fields; half of the cases then fix the CRC-32 up, so
that the mutation reaches the entropy decoder and chunk parsing instead of
stopping at the checksum. The unit test tests/test_fuzz.py runs a few hundred
cases of the same generator; this script runs the long campaign and prints
counts per outcome.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np


def fix_crc(data: bytes) -> bytes:
    if len(data) < 8:
        return data
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def mutate(data: bytes, other: bytes, rng: np.random.Generator) -> bytes:
    """One random mutation of `data` (`other` is a second valid file to splice from)."""
    b = bytearray(data)
    kind = rng.integers(0, 7)
    if kind == 0:  # flip a few bits
        for _ in range(rng.integers(1, 4)):
            i = rng.integers(0, len(b))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # overwrite a run of bytes
        i = rng.integers(0, len(b))
        n = int(rng.integers(1, 9))
        b[i : i + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif kind == 2:  # insert bytes
        i = rng.integers(0, len(b) + 1)
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
    elif kind == 3:  # delete bytes
        i = rng.integers(0, len(b))
        del b[i : i + int(rng.integers(1, 9))]
    elif kind == 4:  # truncate
        b = b[: rng.integers(0, len(b))]
    elif kind == 5:  # splice the tail of another file
        i = rng.integers(0, min(len(b), len(other)))
        b = b[:i] + bytearray(other[i:])
    else:  # rewrite a header field (width, height, quality, lengths) with an edge value
        off = int(rng.choice([8, 12, 16, 26, 30, 34]))
        size = 2 if off == 16 else 4
        value = int(rng.choice([0, 1, 2, 255, 65535, 1 << 20, (1 << 20) + 1, 0x7FFFFFFF, 0xFFFFFFFF]))
        b[off : off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    out = bytes(b)
    return fix_crc(out) if rng.random() < 0.5 else out


def _kind(message: str) -> str:
    """The error message without its numbers, so that counts group by kind."""
    return re.sub(r"\b[0-9a-f]{16}\b|\d+", "N", message.split(" (")[0])


def run(seeds: list[bytes], cases: int, seed: int, max_pixels: int) -> Counter:
    """Decode `cases` mutants; returns outcome counts. Anything but NicError propagates."""
    import neurocodec
    from neurocodec.errors import NicError

    rng = np.random.default_rng(seed)
    counts: Counter = Counter()
    for _ in range(cases):
        a, o = rng.integers(0, len(seeds), 2)
        data = mutate(seeds[a], seeds[o], rng)
        try:
            neurocodec.decode(data, max_pixels=max_pixels)
            counts["decoded (damage inside the payload)"] += 1
        except NicError as e:
            counts[_kind(str(e))] += 1
    return counts


def seed_files() -> list[bytes]:
    """Small valid files of each layout (RGB, grey, RGBA with an ICC profile) and of the fitted mode (version 2 as
    the encoder writes it, and the golden version 1 file)."""
    import torch
    from PIL import Image, ImageCms

    import neurocodec
    from neurocodec.fitted import codec as fitted
    from neurocodec.imageio import prepare

    rng = np.random.default_rng(0)
    base = (rng.random((40, 56, 3)) * 60 + np.linspace(0, 180, 56)[None, :, None]).astype(np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgba = Image.fromarray(np.dstack([base, (base[:, :, 0] > 100).astype(np.uint8) * 255]), "RGBA")
    rgba.info["icc_profile"] = icc
    return [
        neurocodec.encode(base, quality=50),
        neurocodec.encode(base[:23, :31, 0].copy(), quality=90),
        neurocodec.encode(rgba, quality=10),
        fitted.encode(prepare(base[:24, :40]), 5000, 0.002, 30, torch.device("cpu")).code(),
        (Path(__file__).parent.parent / "tests" / "golden" / "6e69636669740001.nic").read_bytes(),
    ]


def main() -> None:
    import click

    @click.command()
    @click.option("--cases", default=20000, show_default=True)
    @click.option("--seed", default=1, show_default=True)
    def cli(cases: int, seed: int) -> None:
        seeds = seed_files()
        t0 = time.time()
        counts = run(seeds, cases, seed, max_pixels=1 << 16)
        dt = time.time() - t0
        print(f"{cases} mutated files in {dt:.0f} s ({1000 * dt / cases:.1f} ms each); no crash, no hang")
        for what, n in counts.most_common():
            print(f"{n:8d}  {what}")

    cli()


if __name__ == "__main__":
    main()
