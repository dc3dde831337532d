"""Entropy coding round trips, including escapes into the overflow stream."""

from __future__ import annotations

import numpy as np
import pytest

from neurocodec.entropy.coder import MAX_SYMBOL, SectionDecoder, _read_varints, encode_sections, zigzag_varints
from neurocodec.entropy.tables import gaussian_tables, scale_thresholds, to_counts
from neurocodec.errors import NicError


def test_sections_round_trip_with_escapes():
    tables = gaussian_tables()
    rng = np.random.default_rng(0)
    idx1 = rng.integers(0, 64, size=(3, 5, 7))
    sym1 = np.round(rng.normal(size=idx1.shape) * 4).astype(np.int64)
    sym1[0, 0, 0], sym1[2, 4, 6] = 10**6, -(10**5)  # far outside any table
    idx2 = rng.integers(0, 64, size=(40,))
    sym2 = rng.integers(-3, 4, size=(40,))
    ans, overflow = encode_sections([(sym1, idx1, tables), (sym2, idx2, tables)])
    dec = SectionDecoder(ans, overflow)
    assert np.array_equal(dec.decode(idx1, tables), sym1)
    assert np.array_equal(dec.decode(idx2, tables), sym2)
    dec.finish()


def test_likely_symbols_cost_few_bits():
    tables = gaussian_tables()
    idx = np.zeros(4000, dtype=np.int64)  # narrowest Gaussian: almost always 0
    ans, _ = encode_sections([(np.zeros(4000, dtype=np.int64), idx, tables)])
    assert len(ans) * 8 < 0.05 * 4000


def test_wrong_tables_are_detected():
    tables = gaussian_tables()
    idx = np.full(200, 40)
    sym = np.arange(200) - 100
    ans, overflow = encode_sections([(sym, idx, tables)])
    dec = SectionDecoder(ans, overflow)
    with pytest.raises(NicError):
        dec.decode(np.zeros(50, dtype=np.int64), tables)
        dec.finish()


def test_varints_round_trip_and_bound():
    values = [0, 1, -1, 63, -64, MAX_SYMBOL, -MAX_SYMBOL, 12345, -(2**20) - 3]
    assert _read_varints(zigzag_varints(values)) == values
    with pytest.raises(NicError):
        _read_varints(b"\x80")
    with pytest.raises(NicError, match="bad overflow"):
        _read_varints(zigzag_varints([MAX_SYMBOL + 1]))


def test_tables_are_normalised_and_thresholds_sorted():
    counts = to_counts(np.array([0.5, 0.25, 0.25, 0.0]))
    assert counts.sum() == 2**20 and counts.min() >= 1
    thr = scale_thresholds()
    assert np.all(np.diff(thr) > 0)
