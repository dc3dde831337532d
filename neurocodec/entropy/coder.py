"""Entropy coding of integer symbols with constriction's ANS coder.

Symbols come in *sections*, decoded in the order they were written (the
autoencoder writes z, then y in one section, or two with the checkerboard
context: anchors, then the rest). Within a section every symbol names the
integer table that models it; symbols are coded grouped by table,
in ascending table order and raster order inside a group, so the decoder,
which knows the table of every position before decoding it, can undo it.
ANS is a stack: the encoder pushes groups in reverse decode order.

An `Ordered` section is coded in decoding order instead, in chunks, one coder call per chunk with a
table per symbol: for the fitted mode, whose symbols each have their own table, known only once the
previous chunk is decoded.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass

import constriction
import numpy as np

from ..errors import NicError
from .tables import TableSet


def _model(tables: TableSet, k: int) -> constriction.stream.model.Categorical:
    probs = tables.table(k).astype(np.float64)
    return constriction.stream.model.Categorical(probs, perfect=False)


def _groups(idx: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Table ids in ascending order and, for each, the positions that use it."""
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    cuts = np.flatnonzero(np.diff(sorted_idx)) + 1
    starts = np.concatenate([[0], cuts]) if len(order) else np.array([], dtype=np.int64)
    return sorted_idx[starts], np.split(order, cuts) if len(order) else []


def zigzag_varints(values: list[int]) -> bytes:
    out = bytearray()
    for v in values:
        u = (v << 1) if v >= 0 else ((-v << 1) - 1)
        while u >= 0x80:
            out.append((u & 0x7F) | 0x80)
            u >>= 7
        out.append(u)
    return bytes(out)


# Largest magnitude of a coded symbol; real latents stay far below it, and the
# bound keeps a hostile file's values inside int64 and the exact integer path.
MAX_SYMBOL = 1 << 24


def _read_varints(data: bytes) -> list[int]:
    values, u, shift = [], 0, 0
    for byte in data:
        u |= (byte & 0x7F) << shift
        shift += 7
        if u > 2 * MAX_SYMBOL:
            raise NicError("corrupted file: bad overflow value")
        if not byte & 0x80:
            values.append((u >> 1) if not u & 1 else -((u + 1) >> 1))
            u, shift = 0, 0
    if shift:
        raise NicError("corrupted file: truncated overflow value")
    return values


_FAMILY = constriction.stream.model.Categorical(perfect=False)  # one row of probabilities per symbol
_ROWS: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(tables) -> _padded(tables), while tables lives


def _padded(tables: TableSet) -> tuple[np.ndarray, np.ndarray]:
    """Every table's counts without the escape, zero-padded to the widest (tables, width), and the escape
    counts (tables,), float64: what `_rows` cuts its rows from, built once per TableSet."""
    hit = _ROWS.get(id(tables))
    if hit is None:
        body = tables.lengths - 1
        dense = np.zeros((len(body), int(body.max(initial=0))), dtype=np.float64)
        for k, n in enumerate(body.tolist()):
            dense[k, :n] = tables.table(k)[:n]
        hit = dense, tables.counts[tables.offsets + body].astype(np.float64)
        _ROWS[id(tables)] = hit
        weakref.finalize(tables, _ROWS.pop, id(tables), None)  # before the id can be reused
    return hit


def _rows(tables: TableSet, idx: np.ndarray) -> np.ndarray:
    """One chunk's probabilities (len(idx), w + 1): each row its symbol's table without the escape, zero-padded
    to the chunk's widest table (w entries), then the escape count in the last column."""
    dense, escapes = _padded(tables)
    width = int(tables.lengths[idx].max()) - 1
    rows = np.empty((len(idx), width + 1), dtype=np.float64)
    rows[:, :width] = dense[idx, :width]
    rows[:, width] = escapes[idx]
    return rows


@dataclass
class Ordered:
    """A section coded in decoding order: symbols and table ids 1-D, chunk s = [bounds[s], bounds[s + 1]).

    The decoder takes one chunk at a time (`SectionDecoder.decode_ordered`), each in one coder call.
    """

    symbols: np.ndarray
    idx: np.ndarray
    tables: TableSet
    bounds: list[int]


def _localise(
    symbols: np.ndarray, lows: np.ndarray | int, ends: np.ndarray | int, escape: int, overflow: list[int]
) -> np.ndarray:
    """Symbols -> their tables' local indices; the ones outside [0, ends) become `escape` and go to overflow."""
    local = symbols - lows
    out = (local < 0) | (local >= ends)
    big = symbols[out]
    if len(big) and np.abs(big).max() > MAX_SYMBOL:
        raise NicError("latent value out of range (is the image or model broken?)")
    overflow.extend(int(v) for v in big)
    return np.where(out, escape, local).astype(np.int32)


def encode_sections(sections: list[tuple[np.ndarray, np.ndarray, TableSet] | Ordered]) -> tuple[bytes, bytes]:
    """[(symbols, table ids, tables) or Ordered] in decode order -> (ANS bytes, overflow bytes)."""
    pushes = []  # (tables, table id or a chunk's ids, local indices), in decode order
    overflow: list[int] = []
    for section in sections:
        if isinstance(section, Ordered):
            symbols = np.asarray(section.symbols, dtype=np.int64).ravel()
            idx = np.asarray(section.idx, dtype=np.int64).ravel()
            tables, bounds = section.tables, section.bounds
            cuts = len(bounds) and bounds[0] == 0 and bounds[-1] == len(symbols) and np.all(np.diff(bounds) >= 0)
            if not cuts or len(idx) != len(symbols):
                raise ValueError("ordered section: bounds do not cut its symbols into chunks")
            for a, b in itertools.pairwise(bounds):
                if a == b:
                    continue
                ids = idx[a:b]
                ends = tables.lengths[ids] - 1
                local = _localise(symbols[a:b], tables.lows[ids], ends, int(ends.max()), overflow)
                pushes.append((tables, ids, local))
            continue
        symbols, idx, tables = section
        symbols = np.asarray(symbols, dtype=np.int64).ravel()
        ids, positions = _groups(np.asarray(idx, dtype=np.int64).ravel())
        for k, pos in zip(ids, positions):
            k = int(k)
            escape = int(tables.lengths[k]) - 1
            pushes.append((tables, k, _localise(symbols[pos], tables.lows[k], escape, escape, overflow)))
    coder = constriction.stream.stack.AnsCoder()
    for tables, k, local in reversed(pushes):
        if isinstance(k, np.ndarray):
            coder.encode_reverse(local, _FAMILY, _rows(tables, k))
        else:
            coder.encode_reverse(local, _model(tables, k))
    words = coder.get_compressed().astype("<u4")
    return words.tobytes(), zigzag_varints(overflow)


class SectionDecoder:
    """Decodes the sections of `encode_sections`, one at a time, in order."""

    def __init__(self, ans: bytes, overflow: bytes) -> None:
        if len(ans) % 4:
            raise NicError("corrupted file: entropy-coded payload is not whole 32-bit words")
        words = np.frombuffer(ans, dtype="<u4").astype(np.uint32)
        try:
            self.coder = constriction.stream.stack.AnsCoder(words)
        except Exception as e:  # constriction rejects some malformed streams outright
            raise NicError("corrupted file: invalid entropy-coded payload") from e
        self.overflow = _read_varints(overflow)
        self.used = 0

    def decode(self, idx: np.ndarray, tables: TableSet) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        flat = idx.ravel()
        out = np.empty(flat.shape, dtype=np.int64)
        ids, positions = _groups(flat)
        for k, pos in zip(ids, positions):
            k = int(k)
            try:
                local = self.coder.decode(_model(tables, k), len(pos)).astype(np.int64)
            except Exception as e:
                raise NicError("corrupted file: entropy decoding failed") from e
            escape = int(tables.lengths[k]) - 1
            values = local + tables.lows[k]
            self._resolve(values, np.flatnonzero(local == escape))
            out[pos] = values
        return out.reshape(idx.shape)

    def decode_ordered(self, idx: np.ndarray, tables: TableSet) -> np.ndarray:
        """The next chunk of an `Ordered` section: len(idx) symbols, in order, with these table ids."""
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if not len(idx):
            return np.empty(0, dtype=np.int64)
        rows = _rows(tables, idx)
        try:
            local = self.coder.decode(_FAMILY, rows).astype(np.int64)
        except Exception as e:
            raise NicError("corrupted file: entropy decoding failed") from e
        escape = rows.shape[1] - 1
        if np.any((local >= tables.lengths[idx] - 1) & (local != escape)):  # a zero-probability padding column
            raise NicError("corrupted file: entropy decoding failed")
        values = local + tables.lows[idx]
        self._resolve(values, np.flatnonzero(local == escape))
        return values

    def _resolve(self, values: np.ndarray, escaped: np.ndarray) -> None:
        """Fill the escaped positions of `values` from the overflow stream, in order."""
        if len(escaped):
            if self.used + len(escaped) > len(self.overflow):
                raise NicError("corrupted file: overflow values missing")
            values[escaped] = self.overflow[self.used : self.used + len(escaped)]
            self.used += len(escaped)

    def finish(self) -> None:
        """Check that the streams were consumed exactly (catches foreign payloads)."""
        if self.used != len(self.overflow):
            raise NicError("corrupted file: unused overflow values")
        if not self.coder.is_empty():
            raise NicError("corrupted file: trailing entropy-coded data")
