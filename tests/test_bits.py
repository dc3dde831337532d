"""benchmarks/bits.py splits a real .nic file into parts that add up to it, bit for bit."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT
from PIL import Image

_spec = importlib.util.spec_from_file_location("bench_bits", ROOT / "benchmarks" / "bits.py")
bits = importlib.util.module_from_spec(_spec)
sys.modules["bench_bits"] = bits  # its dataclasses look their module up
_spec.loader.exec_module(bits)


@pytest.fixture(scope="module")
def analysis():
    from neurocodec.autoencoder.codec import analyse

    with Image.open(EXAMPLES / "mountain.png") as im:
        rgb = np.asarray(im.convert("RGB"))[100:164, 100:164].copy()
    return analyse(rgb, device="cpu")


@pytest.mark.parametrize("q100", [1000, 9000])
def test_split_adds_up_to_the_file(analysis, q100):
    data, s = bits.split(analysis, q100)
    assert s.total == 8 * len(data) == 8 * s.file_bytes
    assert all(b >= 0 for b in [s.container, s.pad, *s.stream, *s.overflow, *s.escapes])
    assert s.container == 8 * 42  # a header and a CRC; an array has no metadata chunks
    assert s.pad < 32 and (sum(s.stream) + s.pad) % 32 == 0  # the ANS payload is whole 32-bit words
    # The steps lead from the float estimate to the file exactly.
    float_bits = sum(s.stages["float"])
    assert sum(s.steps().values()) == pytest.approx(8 * len(data) - float_bits, abs=1e-6 * len(data))
    # The float model's estimate of the same symbols is close to what the coder wrote.
    real = sum(s.stream) + sum(s.overflow)
    assert 0.5 < real / float_bits < 2


def test_replay_is_the_coder_escapes_included(analysis):
    from neurocodec.entropy.coder import encode_sections

    tables = analysis.w.y.exact.tables
    rng = np.random.default_rng(0)
    sections = []
    for n in (50, 0, 70):
        symbols = rng.integers(-3, 4, n)
        symbols[::7] = 10_000 * (1 + np.arange(len(symbols[::7])))  # escapes, with multi-byte varints
        sections.append((symbols, rng.integers(0, 8, n), tables))
    ans, overflow, stream, over, escapes, ideal, pad = bits.replay(sections)
    assert (ans, overflow) == encode_sections(sections)
    assert sum(stream) + pad == 8 * len(ans) and sum(over) == 8 * len(overflow)
    for (symbols, idx, _), n in zip(sections, escapes):
        local = symbols - tables.lows[idx]
        assert n == int(np.sum((local < 0) | (local >= tables.lengths[idx] - 1)))
    assert escapes[0] >= 8 and stream[1] == over[1] == 0 and ideal[1] == 0


def test_gain_cost_is_in_bits_at_equal_distortion():
    # Q16 gains: 100 bits, 10 more squared error than float gains: 100; slope -1 bit per unit error.
    rd = {"q16": [100.0, 60.0], "float": [100.0, 50.0], "lo": [90.0, 80.0], "hi": [110.0, 60.0]}
    assert bits.gain_cost(rd) == pytest.approx(10.0)
