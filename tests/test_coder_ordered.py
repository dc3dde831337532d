"""Ordered sections: coded chunk by chunk with a table per symbol, between grouped sections in one stream."""

from __future__ import annotations

import constriction
import numpy as np
import pytest

from neurocodec.entropy.coder import (
    _FAMILY,
    MAX_SYMBOL,
    Ordered,
    SectionDecoder,
    _read_varints,
    _rows,
    encode_sections,
)
from neurocodec.entropy.tables import TableSet, gaussian_tables
from neurocodec.errors import NicError
from neurocodec.fitted import laplace


def random_ordered(rng: np.random.Generator, chunks: int, escapes: int = 0) -> Ordered:
    """Latents near their tables' centres, in chunks of 0..60 (some empty); 2 * `escapes` outside their tables."""
    tables = laplace.tables()
    sizes = rng.integers(0, 61, chunks)
    sizes[rng.integers(0, chunks, 5)] = 0
    bounds = [0, *np.cumsum(sizes).tolist()]
    n = bounds[-1]
    idx = rng.integers(0, len(tables.lengths), n)
    reach = -tables.lows[idx]
    symbols = np.clip(np.round(rng.laplace(0, np.maximum(reach / 10, 0.2))), -reach, reach).astype(np.int64)
    where = rng.choice(n, 4 * escapes, replace=False)
    far, just_out, edge, low_edge = np.split(where, 4)
    symbols[far] = rng.choice([-1, 1], len(far)) * rng.integers(10**3, MAX_SYMBOL, len(far))
    symbols[just_out] = rng.choice([-1, 1], len(just_out)) * (reach[just_out] + 1)
    symbols[edge], symbols[low_edge] = reach[edge], -reach[low_edge]  # the tables' last entries: no escape
    return Ordered(symbols, idx, tables, bounds)


def decode_ordered(dec: SectionDecoder, section: Ordered) -> np.ndarray:
    chunks = zip(section.bounds[:-1], section.bounds[1:], strict=True)
    return np.concatenate([dec.decode_ordered(section.idx[a:b], section.tables) for a, b in chunks])


def test_ordered_round_trip_between_grouped_sections():
    rng = np.random.default_rng(0)
    gauss = gaussian_tables()
    idx1, idx2 = rng.integers(0, 64, (6, 7)), rng.integers(0, 64, 50)
    sym1 = np.round(rng.normal(size=idx1.shape) * 5).astype(np.int64)
    sym1[2, 3] = -(10**5)
    sym2 = rng.integers(-4, 5, 50)
    sym2[7] = 10**6
    first, second = random_ordered(rng, 300, escapes=20), random_ordered(rng, 40, escapes=3)
    ans, overflow = encode_sections([(sym1, idx1, gauss), first, second, (sym2, idx2, gauss)])
    assert len(_read_varints(encode_sections([first])[1])) == 2 * 20  # far and just outside escape, the edges not
    dec = SectionDecoder(ans, overflow)
    assert np.array_equal(dec.decode(idx1, gauss), sym1)
    assert np.array_equal(decode_ordered(dec, first), first.symbols)
    assert np.array_equal(decode_ordered(dec, second), second.symbols)
    assert np.array_equal(dec.decode(idx2, gauss), sym2)
    dec.finish()


def test_empty_ordered_sections_and_chunks():
    tables = laplace.tables()
    empty = Ordered(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), tables, [0, 0, 0])
    one = Ordered(np.array([3]), np.array([700]), tables, [0, 0, 1, 1])
    ans, overflow = encode_sections([empty, one])
    dec = SectionDecoder(ans, overflow)
    assert len(dec.decode_ordered(np.zeros(0, dtype=np.int64), tables)) == 0
    assert list(decode_ordered(dec, one)) == [3]
    dec.finish()


def test_one_table_costs_the_same_as_grouped():
    tables = laplace.tables()
    rng = np.random.default_rng(1)
    for k in (5, 520, 1023):
        symbols = np.round(rng.laplace(0, -tables.lows[k] / 10, 3000)).astype(np.int64)
        idx = np.full(3000, k)
        bounds = [0, *np.sort(rng.integers(0, 3000, 60)).tolist(), 3000]
        grouped, _ = encode_sections([(symbols, idx, tables)])
        ordered, _ = encode_sections([Ordered(symbols, idx, tables, bounds)])
        assert abs(len(ordered) - len(grouped)) <= 2 * 4, k


def run_decoder(ans: bytes, overflow: bytes, section: Ordered, idx: np.ndarray) -> None:
    dec = SectionDecoder(ans, overflow)
    for a, b in zip(section.bounds[:-1], section.bounds[1:], strict=True):
        dec.decode_ordered(idx[a:b], section.tables)
    dec.finish()


def test_wrong_tables_or_truncated_stream_raise_nic_errors():
    rng = np.random.default_rng(2)
    section = random_ordered(rng, 100, escapes=5)
    ans, overflow = encode_sections([section])
    wrong = [
        (ans, overflow, (section.idx + 37) % len(section.tables.lengths)),  # other tables
        (ans, overflow, np.full_like(section.idx, 1023)),  # the widest everywhere
        (ans[:-8], overflow, section.idx),  # truncated
        (ans[8:], overflow, section.idx),
        (ans, overflow[:-2], section.idx),
    ]
    for a, o, idx in wrong:
        with pytest.raises(NicError):
            run_decoder(a, o, section, idx)
    for _ in range(20):  # random damage: decodes to something or raises NicError, nothing else
        damaged = bytearray(ans)
        damaged[rng.integers(0, len(ans))] ^= 1 << int(rng.integers(0, 8))
        try:
            run_decoder(bytes(damaged), overflow, section, section.idx)
        except NicError:
            pass


def test_padding_columns_are_corrupt_data():
    """A stream that decodes onto a narrower table's zero padding (never written by the encoder)."""
    tables = laplace.tables()
    idx = np.array([0, 1023])  # the narrowest table and the widest (966 entries)
    narrow = int(tables.lengths[0])  # its symbols, then its escape
    rows = _rows(tables, idx)
    assert narrow < 966 and rows.shape == (2, 966)
    assert rows[0, narrow - 1] == 0 and rows[0, -1] == tables.table(0)[-1]  # padding, then the escape
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(np.array([500, 482], dtype=np.int32), _FAMILY, rows)  # constriction still codes it
    dec = SectionDecoder(coder.get_compressed().astype("<u4").tobytes(), b"")
    with pytest.raises(NicError, match="entropy decoding failed"):
        dec.decode_ordered(idx, tables)


def test_ordered_escapes_out_of_range_and_bad_bounds():
    tables = laplace.tables()
    with pytest.raises(NicError, match="out of range"):
        encode_sections([Ordered(np.array([MAX_SYMBOL + 1]), np.array([3]), tables, [0, 1])])
    for bounds in ([0, 2], [1, 1], [0, 1, 0, 1], [0], []):
        with pytest.raises(ValueError, match="bounds"):
            encode_sections([Ordered(np.array([0]), np.array([3]), tables, bounds)])


def test_rows_follow_each_tables_counts():
    counts = np.array([5, 6, 7, 1, 9, 9, 2, 3], dtype=np.int32)  # tables [5 6 7 | 1], [9 | 9], [2 | 3]
    tables = TableSet(counts, np.array([0, 4, 6]), np.array([4, 2, 2]), np.array([-1, 0, 4]))
    rows = _rows(tables, np.array([1, 0, 2, 0]))
    assert rows.dtype == np.float64
    assert rows.tolist() == [[9, 0, 0, 9], [5, 6, 7, 1], [2, 0, 0, 3], [5, 6, 7, 1]]
    assert _rows(tables, np.array([2, 1])).tolist() == [[2, 3], [9, 9]]
    symbols = np.array([0, 1, 4, -1, 7, -5, 2])  # 7 and -5 escape (tables 2 and 0), 2 is table 1's escape
    idx = np.array([1, 0, 2, 0, 2, 0, 1])
    ordered = Ordered(symbols, idx, tables, [0, 4, 7])
    ans, overflow = encode_sections([ordered])
    assert _read_varints(overflow) == [7, -5, 2]
    dec = SectionDecoder(ans, overflow)
    assert np.array_equal(decode_ordered(dec, ordered), symbols)
    dec.finish()
