"""The fitted mode's exact context model: fast path = integer reference, wave-by-wave decoding = one pass."""

from __future__ import annotations

import pytest
import torch
from helpers import torch_settings

from neurocodec.fitted.codec import arm_tensors, int_arm
from neurocodec.fitted.context import (
    ACT_MAX,
    CONTEXT,
    FEATURES,
    WEIGHT_MAX,
    IntARM,
    IntLinear,
    Schedule,
    decode_waves,
    encode_order,
)
from neurocodec.fitted.model import ARM


def features(grid: torch.Tensor, coarser: torch.Tensor | None) -> torch.Tensor:
    """The context's definition from whole grids (the reference for the schedule's gathers): (H*W, FEATURES),
    raster order; neighbours outside the grid are 0, and so is the coarsest grid's parent."""
    h, w = grid.shape
    pad = torch.nn.functional.pad(grid, (2, 2, 2, 0))
    cols = [pad[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w] for dy, dx in CONTEXT]
    if coarser is None:
        cols.append(torch.zeros_like(grid))
    else:
        cols.append(coarser.repeat_interleave(2, 0).repeat_interleave(2, 1)[:h, :w])
    return torch.stack(cols, dim=-1).reshape(h * w, FEATURES)


def waves(shapes: list[tuple[int, int]]) -> list[list[torch.Tensor]]:
    """For each decoding step, the raster indices of the latents of each grid (finest first) decoded in it."""
    sched = Schedule.of(shapes)
    out = []
    for a, b in zip(sched.bounds, sched.bounds[1:], strict=False):
        idx = sched.order[a:b]
        spans = zip(sched.offsets[:-1], sched.offsets[1:], strict=True)
        out.append([idx[(idx >= lo) & (idx < hi)] - lo for lo, hi in spans])
    return out


def random_arm(g: torch.Generator, width: int = 16, hidden: int = 1, big: bool = False) -> IntARM:
    """An IntARM with random integer parameters (near their limits if `big`)."""
    lim = WEIGHT_MAX if big else 300

    def layer(o: int, i: int, relu: bool) -> IntLinear:
        w = torch.randint(-lim, lim + 1, (o, i), generator=g)
        b = torch.randint(-(2**20), 2**20, (o,), generator=g)
        return IntLinear(w, b, int(torch.randint(4, 14, (1,), generator=g)), relu)

    return IntARM(
        layer(width, FEATURES, True), [layer(width, width, True) for _ in range(hidden)], layer(2, width, False)
    )


def pyramid(g: torch.Generator, h: int, w: int, levels: int = 4, spread: int = 6) -> list[torch.Tensor]:
    shapes = [(-(-h // 2**i), -(-w // 2**i)) for i in range(levels)]
    return [torch.randint(-spread, spread + 1, s, generator=g) for s in shapes]


@pytest.mark.parametrize("big", [False, True])
def test_the_fast_path_equals_the_integer_reference(big: bool) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        arm = random_arm(g, width=int(torch.randint(4, 40, (1,), generator=g)), big=big)
        arm.check()
        feats = torch.randint(-(2**12), 2**12, (500, FEATURES), generator=g)
        if big:
            feats[:50] = torch.randint(-ACT_MAX, ACT_MAX + 1, (50, FEATURES), generator=g)
        fast = arm(feats)
        slow = arm(feats, reference=True)
        assert torch.equal(fast[0], slow[0]) and torch.equal(fast[1], slow[1])


def test_parameters_do_not_depend_on_threads_or_onednn() -> None:
    g = torch.Generator().manual_seed(2)
    arm = random_arm(g, width=32)
    feats = torch.randint(-50, 50, (4000, FEATURES), generator=g)
    with torch_settings(1):
        one = arm(feats)
    with torch_settings(2):
        two = arm(feats)
    with torch_settings(2, onednn=False):
        plain = arm(feats)
    for a in (two, plain):
        assert torch.equal(one[0], a[0]) and torch.equal(one[1], a[1])


def test_every_latent_decodes_after_its_context() -> None:
    shapes = [(7, 11), (4, 6), (2, 3), (1, 2)]
    seen = [torch.full(s, -1) for s in shapes]
    for step, row in enumerate(waves(shapes)):
        for i, idx in enumerate(row):
            seen[i].view(-1)[idx] = step
    for i, (h, w) in enumerate(shapes):
        assert (seen[i] >= 0).all()  # each latent exactly once: counts add up
        assert sum(len(r[i]) for r in waves(shapes)) == h * w
        for r in range(h):
            for c in range(w):
                for dr, dc in CONTEXT:
                    if 0 <= r + dr and 0 <= c + dc < w:
                        assert seen[i][r + dr, c + dc] < seen[i][r, c]
                if i + 1 < len(shapes):
                    assert seen[i + 1][r // 2, c // 2] < seen[i][r, c]


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (9, 14)])
def test_wave_decoding_gives_the_encoders_parameters_and_latents(size: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(3)
    grids = pyramid(g, *size)
    arm = random_arm(g)
    values, means, scales = encode_order(grids, arm)
    seen_means, seen_scales, at = [], [], [0]

    def oracle(mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        seen_means.append(mean)
        seen_scales.append(log_scale)
        out = values[at[0] : at[0] + len(mean)]
        at[0] += len(mean)
        return out

    decoded = decode_waves(arm, [tuple(x.shape) for x in grids], oracle)
    assert all(torch.equal(a, b) for a, b in zip(decoded, grids, strict=True))
    assert torch.equal(torch.cat(seen_means), means) and torch.equal(torch.cat(seen_scales), scales)


def test_features_see_only_the_causal_neighbours_and_the_parent() -> None:
    grid = torch.arange(1, 13).reshape(3, 4)
    parent = torch.tensor([[100, 200], [300, 400]])
    f = features(grid, parent)
    # latent (1, 2) = 7: left 6, up 3, up-left 2, up-right 4, two left 5, two up (outside) 0,
    # up, two left 1, up, two right (outside) 0, two up, left 0, two up, right 0; parent (0, 1) = 200
    assert f[1 * 4 + 2].tolist() == [6, 3, 2, 4, 5, 0, 1, 0, 0, 0, 200]


@pytest.mark.parametrize("size", [(1, 1), (6, 9), (13, 5)])
def test_the_schedule_gathers_each_latents_context_as_defined(size: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(6)
    grids = pyramid(g, *size)
    sched = Schedule.of([tuple(x.shape) for x in grids])
    flat = torch.cat([x.reshape(-1) for x in grids] + [torch.zeros(1, dtype=torch.int64)])
    gathered = torch.empty(sched.offsets[-1], FEATURES, dtype=torch.int64)
    gathered[sched.order] = flat[sched.context]
    for i, grid in enumerate(grids):
        want = features(grid, grids[i + 1] if i + 1 < len(grids) else None)
        assert torch.equal(gathered[sched.offsets[i] : sched.offsets[i + 1]], want)


def test_a_float_arm_rounds_to_an_integer_one_that_predicts_alike() -> None:
    g = torch.Generator().manual_seed(4)
    w1, b1 = torch.randn(16, FEATURES, generator=g) * 0.3, torch.randn(16, generator=g) * 0.1
    w2, b2 = torch.randn(16, 16, generator=g) * 0.2, torch.randn(16, generator=g) * 0.1
    w3, b3 = torch.randn(2, 16, generator=g) * 0.3, torch.randn(2, generator=g) * 0.1
    float_arm = ARM(16, 1)
    with torch.no_grad():
        for layer, (w, b) in zip(float_arm.layers(), ((w1, b1), (w2, b2), (w3, b3)), strict=True):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    arm = int_arm(arm_tensors(float_arm, [12] * len(float_arm.layers())))  # as the encoder rounds it
    arm.check()
    x = torch.randint(-5, 6, (300, FEATURES), generator=g)
    h = torch.relu(x.double() @ w1.double().T + b1.double())
    h = h + torch.relu(h @ w2.double().T + b2.double())
    want = h @ w3.double().T + b3.double()
    mean, log_scale = arm(x)
    got = torch.stack([mean, log_scale], dim=1).double() / 256
    assert (got - want).abs().max() < 0.05  # 12-bit weights and Q8 activations: a few 1/256 at most


def test_parameters_out_of_range_are_refused() -> None:
    g = torch.Generator().manual_seed(5)
    arm = random_arm(g)
    arm.first.weight[0, 0] = WEIGHT_MAX + 1
    with pytest.raises(ValueError, match="out of range"):
        arm.check()
