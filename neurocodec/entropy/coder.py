"""Entropy coding of integer symbols with constriction's ANS coder.

Symbols come in *sections*, decoded in the order they were written (the
autoencoder writes z, then y in one section, or two with the checkerboard
context: anchors, then the rest). Within a section every symbol names the
integer table that models it; symbols are coded grouped by table,
in ascending table order and raster order inside a group, so the decoder,
which knows the table of every position before decoding it, can undo it.
ANS is a stack: the encoder pushes groups in reverse decode order.
"""

from __future__ import annotations

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


def encode_sections(sections: list[tuple[np.ndarray, np.ndarray, TableSet]]) -> tuple[bytes, bytes]:
    """[(symbols, table ids, tables)] in decode order -> (ANS bytes, overflow bytes)."""
    pushes = []
    overflow: list[int] = []
    for symbols, idx, tables in sections:
        symbols = np.asarray(symbols, dtype=np.int64).ravel()
        ids, positions = _groups(np.asarray(idx, dtype=np.int64).ravel())
        for k, pos in zip(ids, positions):
            k = int(k)
            local = symbols[pos] - tables.lows[k]
            escape = int(tables.lengths[k]) - 1
            out = (local < 0) | (local >= escape)
            big = symbols[pos][out]
            if len(big) and np.abs(big).max() > MAX_SYMBOL:
                raise NicError("latent value out of range (is the image or model broken?)")
            overflow.extend(int(v) for v in big)
            local[out] = escape
            pushes.append((tables, k, local.astype(np.int32)))
    coder = constriction.stream.stack.AnsCoder()
    for tables, k, local in reversed(pushes):
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
            esc = np.flatnonzero(local == escape)
            if len(esc):
                if self.used + len(esc) > len(self.overflow):
                    raise NicError("corrupted file: overflow values missing")
                values[esc] = self.overflow[self.used : self.used + len(esc)]
                self.used += len(esc)
            out[pos] = values
        return out.reshape(idx.shape)

    def finish(self) -> None:
        """Check that the streams were consumed exactly (catches foreign payloads)."""
        if self.used != len(self.overflow):
            raise NicError("corrupted file: unused overflow values")
        if not self.coder.is_empty():
            raise NicError("corrupted file: trailing entropy-coded data")
