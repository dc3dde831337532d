"""Tiles: the transforms run on bounded windows, so memory stays bounded for any image size.

A tile is a core of TILE x TILE pixels read with MARGIN pixels of context on
each side; the margin covers the transforms' receptive field (61 pixels for
the analysis), so tiles join without seams. One iterator serves the analysis
(pixels -> y), the synthesis (y -> pixels) and refinement (the synthesis'
gradient).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

TILE = 1024
MARGIN = 64

Box = tuple[slice, slice]


@dataclass(frozen=True)
class Tile:
    read: Box  # the window of the input: the core and its margin
    write: Box  # where the core's output goes in the whole output
    keep: Box  # the core within the window's output


def _spans(size: int, out_size: int, num: int, den: int, tile: int, margin: int) -> list[tuple[slice, slice, slice]]:
    """(read, write, keep) along one axis; input position p maps to output p * num // den."""
    spans = []
    for start in range(0, size, tile):
        lo, hi = max(0, start - margin), min(size, start + tile + margin)
        w0 = start * num // den
        w1 = min(min(start + tile, size) * num // den, out_size)
        k0 = (start - lo) * num // den
        spans.append((slice(lo, hi), slice(w0, w1), slice(k0, k0 + w1 - w0)))
    return spans


def tiles(
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    scale: tuple[int, int],
    tile: int,
    margin: int,
    whole_up_to: int = 0,
) -> Iterator[Tile]:
    """The tiles covering an input of in_hw (rows, columns) whose output is out_hw.

    scale = (num, den): an input position p lands on output position p * num // den
    (the analysis: (1, 16); the synthesis: (16, 1)); tile and margin are in input units.
    An input no larger than whole_up_to on both sides is one tile, the whole of it.
    """
    if in_hw[0] <= whole_up_to and in_hw[1] <= whole_up_to:
        whole = (slice(0, in_hw[0]), slice(0, in_hw[1]))
        out = (slice(0, out_hw[0]), slice(0, out_hw[1]))
        yield Tile(whole, out, out)
        return
    rows = _spans(in_hw[0], out_hw[0], *scale, tile, margin)
    cols = _spans(in_hw[1], out_hw[1], *scale, tile, margin)
    for r_read, r_write, r_keep in rows:
        for c_read, c_write, c_keep in cols:
            yield Tile((r_read, c_read), (r_write, c_write), (r_keep, c_keep))
