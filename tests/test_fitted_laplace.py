"""The fitted mode's Laplace tables: normalised, mirrored, close to the float Laplace; `params`; `bits`.

Nothing here compares floats exactly: the tables are integers, the float64 references only bound them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurocodec.entropy.tables import COUNT_BITS
from neurocodec.fitted import laplace
from neurocodec.fitted.laplace import FRACTIONS, LN_SCALE_MAX, LN_SCALE_MIN, SCALES, TAIL, bits, params, tables

TOTAL = 1 << COUNT_BITS


def ln_b(j: int) -> float:
    return (laplace.LN_SCALE_MIN_Q8 + laplace.LN_SCALE_STEP_Q8 * j) / 256


def float_masses(j: int, f: int, reach: int) -> np.ndarray:
    """float64 Laplace masses of offsets -reach..reach around mean (f - 7.5) / 16, then the escape."""
    b, delta = math.exp(ln_b(j)), (f - 7.5) / 16
    k = np.arange(1, reach + 1, dtype=np.float64)
    up = 0.5 * np.exp(-(k - 0.5 - delta) / b)  # mass beyond the edge k - 1/2 ...
    down = 0.5 * np.exp(-(k - 0.5 + delta) / b)  # ... and beyond -(k - 1/2)
    up_end, down_end = 0.5 * math.exp(-(reach + 0.5 - delta) / b), 0.5 * math.exp(-(reach + 0.5 + delta) / b)
    up_next, down_next = np.append(up[1:], up_end), np.append(down[1:], down_end)
    centre = 1 - up[0] - down[0]
    return np.concatenate([(down - down_next)[::-1], [centre], up - up_next, [up_end + down_end]])


def test_tables_are_normalised_with_the_documented_ranges():
    t = tables()
    assert len(t.lengths) == SCALES * FRACTIONS
    sums = np.add.reduceat(t.counts.astype(np.int64), t.offsets)
    assert np.all(sums == TOTAL) and t.counts.min() >= 1
    for j in range(SCALES):
        reach = max(laplace.MIN_REACH, math.ceil(TAIL * math.exp(ln_b(j))))
        ids = slice(j * FRACTIONS, (j + 1) * FRACTIONS)
        assert np.all(t.lows[ids] == -reach) and np.all(t.lengths[ids] == 2 * reach + 2)
    assert t.lows[0] == -laplace.MIN_REACH == -8 and t.lows[-1] == -math.ceil(10 * math.exp(3.875)) == -482
    assert LN_SCALE_MIN == -4.0 and LN_SCALE_MAX == 3.875


def test_tables_follow_the_float_laplace():
    t = tables()
    for k in range(len(t.lengths)):
        j, f = divmod(k, FRACTIONS)
        counts = t.table(k).astype(np.int64)
        n = len(counts)
        ideal = float_masses(j, f, -int(t.lows[k])) * (TOTAL - n)  # what to_counts floors
        top = int(np.argmax(counts))
        rest = np.arange(n) != top
        want = np.maximum(1, ideal[rest])
        assert np.all(counts[rest] >= want - 1 - 1e-6) and np.all(counts[rest] <= want + 1e-6), k
        assert abs(counts[top] - ideal[top]) <= 2 * n, k  # the remainder goes to the largest entry
        assert top == n // 2 - 1  # offset 0: the mean's bin
        masses = float_masses(j, f, -int(t.lows[k]))
        assert np.sum(masses * np.log2(masses * TOTAL / counts)) < 2e-4, k  # the rate the rounding costs


def test_tables_are_mirrored():
    t = tables()
    for j in range(SCALES):
        for f in range(FRACTIONS):
            a, b = t.table(j * FRACTIONS + f), t.table(j * FRACTIONS + FRACTIONS - 1 - f)
            assert np.array_equal(a[:-1], b[:-1][::-1]) and a[-1] == b[-1]


# The tables as this format version defines them (FORMAT.md, "Laplace tables"): every decoder, on every machine
# and in every later version, must build these exact counts. Never update this to make a change pass.
TABLES_SHA256 = "43a322a73e69b0b2b2d34c063c370595059bbc6a3946528df05f9e058737948a"


def test_tables_are_the_formats():
    import hashlib

    t = tables()
    data = b"".join(
        np.ascontiguousarray(getattr(t, k)).astype("<i8").tobytes() for k in ("counts", "offsets", "lengths", "lows")
    )
    assert hashlib.sha256(data).hexdigest() == TABLES_SHA256


def test_tables_rebuild_identically():
    first = tables()
    tables.cache_clear()
    try:
        second = tables()
        assert second is not first
        for name in ("counts", "offsets", "lengths", "lows"):
            assert np.array_equal(getattr(first, name), getattr(second, name))
            assert getattr(first, name).dtype == getattr(second, name).dtype
    finally:
        tables.cache_clear()


@pytest.mark.parametrize(
    ("mean_q8", "centre", "fraction"),
    [
        (0, 0, 8),
        (-1, 0, 7),
        (15, 0, 8),
        (16, 0, 9),
        (127, 0, 15),
        (128, 1, 0),
        (-112, 0, 1),
        (-113, 0, 0),
        (-128, 0, 0),
        (-129, -1, 15),
        (-300, -1, 5),  # -300 = -256 - 44: fraction (-44 + 128) // 16
        (256 * 7 + 40, 7, 10),
        (-256 * 9 - 100, -9, 1),
    ],
)
def test_params_means(mean_q8: int, centre: int, fraction: int):
    c, k = params(torch.tensor([mean_q8]), torch.tensor([0]))
    assert c.item() == centre and k.item() == 32 * FRACTIONS + fraction  # log-scale 0: b = 1, scale 32


@pytest.mark.parametrize(
    ("log_scale_q8", "scale"),
    [
        (0, 32),
        (-1024, 0),
        (-1024 + 15, 0),
        (-1024 + 16, 1),
        (-1024 - 16, 0),
        (-1024 - 17, 0),  # rounds to -1: clamped
        (-(10**6), 0),
        (-1024 + 62 * 32 + 15, 62),
        (-1024 + 62 * 32 + 16, 63),
        (-1024 + 63 * 32, 63),
        (10**6, 63),
        (17, 33),
        (-17, 31),
    ],
)
def test_params_scales(log_scale_q8: int, scale: int):
    c, k = params(torch.tensor([0]), torch.tensor([log_scale_q8]))
    assert c.item() == 0 and k.item() == scale * FRACTIONS + 8


def test_params_keep_shape_and_dtype():
    g = torch.Generator().manual_seed(0)
    mean, log_scale = (
        torch.randint(-5000, 5000, (3, 4, 5), generator=g),
        torch.randint(-2000, 2000, (3, 4, 5), generator=g),
    )
    c, k = params(mean, log_scale)
    assert c.shape == k.shape == mean.shape and c.dtype == k.dtype == torch.int64
    frac = mean - 256 * c
    assert torch.all((frac >= -128) & (frac < 128)) and torch.all((k >= 0) & (k < SCALES * FRACTIONS))
    assert torch.equal(k % FRACTIONS, torch.div(frac + 128, 16, rounding_mode="floor"))


def test_bits_match_the_tables():
    t = tables()
    for k in range(len(t.lengths)):
        j, f = divmod(k, FRACTIONS)
        counts = t.table(k)[:-1].astype(np.float64)
        n = len(counts) + 1
        d = torch.arange(int(t.lows[k]), int(t.lows[k]) + n - 1, dtype=torch.float64)
        got = bits(d, torch.full_like(d, (f - 7.5) / 16), torch.full_like(d, ln_b(j))).numpy()
        diff = np.abs(got - (COUNT_BITS - np.log2(counts)))
        top = np.arange(n - 1) == np.argmax(counts)
        # counts ~ p (2**20 - n) +- 1 ...
        keep = ~top & (counts >= 2**10)  # (well above the 2**-16 floor)
        assert np.all(diff[keep] <= 1.01 * math.log2(math.e) * (n / TOTAL + 1 / counts[keep]) + 1e-9), k
        assert np.all(diff[~top & (counts >= 2**14)] <= 2e-3), k
        # ... and the largest takes the remainder, up to 2n more: 0.17 bits in the widest table, a rate cost
        # below 2e-4 bits (test_tables_follow_the_float_laplace)
        assert np.all(diff[top] <= math.log2(math.e) * 2 * n / counts[top]), k


def test_bits_sum_to_one_and_floor():
    x = torch.arange(-400, 401, dtype=torch.float64)
    for mean, log_scale in [(0.0, 0.0), (0.3, -2.0), (-0.49, 2.5), (12.7, 1.0), (0.5, -4.0)]:
        b = bits(x, torch.tensor(mean), torch.tensor(log_scale, dtype=torch.float64))
        p = 2.0 ** -b[b < laplace.MIN_PROB_BITS]
        assert 1 - 1e-3 < p.sum().item() < 1 + 1e-9
    far = bits(torch.tensor([1000.0]), torch.tensor([0.0]), torch.tensor([0.0]))
    assert far.item() == laplace.MIN_PROB_BITS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bits_are_finite_with_gradients_at_extremes(dtype: torch.dtype):
    x = torch.tensor([0.0, 0.0, 3.0, -7.0, 1e6, -1e6, 0.0, 5.0, 2.0, 0.0], dtype=dtype)
    mean = torch.tensor([0.0, 0.5, 2.5, -7.49, 0.0, 3.0, 1e-7, 5.0, 1.5, -0.5], dtype=dtype, requires_grad=True)
    log_scale = torch.tensor([-50.0, 50.0, -4.0, 3.875, 0.0, 10.0, -4.0, 100.0, -100.0, 0.0], dtype=dtype)
    log_scale.requires_grad_(True)
    out = bits(x, mean, log_scale)
    assert torch.all(torch.isfinite(out)) and torch.all(out >= 0) and torch.all(out <= laplace.MIN_PROB_BITS)
    out.sum().backward()
    assert torch.all(torch.isfinite(mean.grad)) and torch.all(torch.isfinite(log_scale.grad))
    # away from the clamps, mean and scale get gradients
    x, mean, log_scale = (torch.tensor(v, dtype=dtype, requires_grad=True) for v in (3.0, 1.2, 0.5))
    bits(x, mean, log_scale).backward()
    assert mean.grad < 0 and log_scale.grad != 0
