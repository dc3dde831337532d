"""The fitted mode's context model, exact: integer latents in, integer Laplace parameters out.

A fitted file's latents form a pyramid of one-channel grids (finest first).
Each latent is coded with a Laplace whose mean and log-scale a small MLP (the
ARM) predicts from already decoded latents: `CONTEXT`'s causal neighbours in
its own grid and the co-located latent of the next coarser grid. Whatever
feeds the entropy coder must be the same on every machine, so the ARM the
decoder runs is integer: weights are integers at a power-of-two step per
layer, activations are rounded to `ACT_FRAC_BITS` after each layer, and the
outputs are Q8 integers. Every product and sum is an integer below 2**53, so
float64 matrix products give them exactly in any summation order (the fast
path); `reference=True` does the same in int64 (slow, for the tests).

Decoding cannot run a latent before its neighbours, but needs no loop per
latent: latent (r, c) of a grid depends only on latents with a smaller
3r + c, so all latents of one wave t = 3r + c decode together, and the grids
run interleaved, the coarser one a wave ahead (a coarser latent (r//2, c//2)
has the smaller wave number). A 768x512 image takes 3*511 + 767 + 7 waves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Causal neighbours in the latent's own grid, (row, column) offsets, nearest first; every one has 3*dr + dc < 0.
CONTEXT = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-1, -2), (-1, 2), (-2, -1), (-2, 1))
FEATURES = len(CONTEXT) + 1  # the neighbours and the co-located latent of the coarser grid
WAVE_SLOPE = 3  # latent (r, c) is in wave WAVE_SLOPE * r + c
ACT_FRAC_BITS = 8  # hidden activations in units of 1/256
OUT_FRAC_BITS = 8  # mean and log-scale in units of 1/256
ACT_MAX = 2**20  # activations and outputs are clamped to +-ACT_MAX ...
WEIGHT_MAX = 2**15  # ... weights to +-WEIGHT_MAX, and a layer has at most MAX_WIDTH inputs,
MAX_WIDTH = 256  # so that |accumulator| < 2**20 * 2**15 * 2**8 + bias < 2**53: exact in float64
BIAS_MAX = 2**44

assert all(WAVE_SLOPE * dr + dc < 0 for dr, dc in CONTEXT)


def _clamp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """np.clip in place, without its wrapper's cost (~15 us a call)."""
    np.maximum(x, lo, out=x)
    return np.minimum(x, hi, out=x)


def _round_shift(x: Tensor, bits: int) -> Tensor:
    """x * 2**-bits rounded half up, in integers (bits may be negative: a left shift)."""
    if bits <= 0:
        return x << -bits
    return (x + (1 << (bits - 1))) >> bits


@dataclass
class IntLinear:
    """out = round((W x + b) * 2**-(w_bits + in_bits - out_bits)): integer weights W at step 2**-w_bits."""

    weight: Tensor  # int64 (out, in)
    bias: Tensor  # int64 (out,), in units of 2**-(w_bits + in_bits)
    w_bits: int
    relu: bool

    def __call__(self, x: Tensor | np.ndarray, in_bits: int, out_bits: int, reference: bool) -> Tensor | np.ndarray:
        """x: integers (an int64 tensor for the reference, an integer-valued float64 array for the fast path)."""
        shift = self.w_bits + in_bits - out_bits
        lo = 0 if self.relu else -ACT_MAX
        if reference:
            acc = (x[:, None, :] * self.weight[None]).sum(dim=2) + self.bias
            return _round_shift(acc, shift).clamp(lo, ACT_MAX)
        # Every value an integer below 2**53: the products, the sums in any order, the power-of-two scaling and
        # the floor are exact. numpy, not torch: the decoder calls a layer ~7,000 times on small arrays.
        acc = x @ self._weight64_t
        acc += self._bias64
        acc *= 2.0**-shift
        if shift > 0:
            acc += 0.5
            np.floor(acc, out=acc)
        return _clamp(acc, lo, ACT_MAX)

    @functools.cached_property
    def _weight64_t(self) -> np.ndarray:  # the fast path's operands, converted once
        return self.weight.numpy().astype(np.float64).T

    @functools.cached_property
    def _bias64(self) -> np.ndarray:
        return self.bias.numpy().astype(np.float64)

    def check(self) -> None:
        """Refuse parameters outside the ranges that keep the float64 path exact."""
        o, i = self.weight.shape
        if i > MAX_WIDTH or o > MAX_WIDTH or self.bias.shape != (o,):
            raise ValueError("context model layer too wide or malformed")
        if self.weight.abs().max() > WEIGHT_MAX or self.bias.abs().max() > BIAS_MAX or not 0 <= self.w_bits <= 24:
            raise ValueError("context model parameter out of range")


@dataclass
class IntARM:
    """The exact context model: features (N, FEATURES) of integer latents -> Q8 (mean, log-scale), each (N,).

    Layers: `first` (FEATURES -> width, ReLU), `hidden` (width -> width, ReLU, added to its input), `last`
    (width -> 2). Its float twin (`model.ARM`) is trained; `codec.int_arm` rounds that one's weights to this.
    """

    first: IntLinear
    hidden: list[IntLinear]
    last: IntLinear

    def __call__(self, features: Tensor | np.ndarray, reference: bool = False) -> tuple[Tensor, Tensor]:
        """features: integers (N, FEATURES), a tensor or an array; the fast path runs in float64 numpy."""
        if reference:
            x = torch.as_tensor(features).to(torch.int64)
        else:
            x = (features.numpy() if isinstance(features, Tensor) else features).astype(np.float64, copy=False)
        x = self.first(x, 0, ACT_FRAC_BITS, reference)
        for layer in self.hidden:
            y = layer(x, ACT_FRAC_BITS, ACT_FRAC_BITS, reference)
            x = (x + y).clamp(-ACT_MAX, ACT_MAX) if reference else _clamp(x + y, -ACT_MAX, ACT_MAX)
        out = self.last(x, ACT_FRAC_BITS, OUT_FRAC_BITS, reference)
        out = out if reference else torch.from_numpy(out.astype(np.int64))
        return out[:, 0], out[:, 1]

    def layers(self) -> list[IntLinear]:
        return [self.first, *self.hidden, self.last]

    def check(self) -> None:
        for layer in self.layers():
            layer.check()
        if self.first.weight.shape[1] != FEATURES or self.last.weight.shape[0] != 2:
            raise ValueError("context model of the wrong shape")


@dataclass
class Schedule:
    """The decoding order of a latent pyramid and, for every latent, where its context lies.

    All grids (finest first) live in one flat buffer, grid after grid in raster order, plus one zero at the
    end that stands for every neighbour outside its grid. `order[k]` is the buffer position of the k-th
    latent decoded and `context[k]` the positions of its FEATURES (neighbours outside the grid, and the
    coarsest grid's missing parent, read the zero); `order[bounds[s]:bounds[s + 1]]` are the latents decoded
    in step s: grid i's latent (r, c) in
    step (levels - 1 - i) + 3r + c (the coarser grids a step ahead, so a parent always comes earlier),
    coarser grids first within a step, raster order within a grid.
    """

    shapes: list[tuple[int, int]]
    offsets: list[int]
    order: Tensor  # int64 (N,)
    context: Tensor  # int64 (N, FEATURES), in decoding order
    bounds: list[int]

    @classmethod
    def of(cls, shapes: list[tuple[int, int]]) -> Schedule:
        levels = len(shapes)
        sizes = [h * w for h, w in shapes]
        offsets = np.cumsum([0, *sizes]).tolist()
        total = offsets[-1]  # the zero's position
        width = np.array([w for _, w in shapes] + [1], dtype=np.int64)  # grid levels: the zero's row
        start = np.array(offsets, dtype=np.int64)
        grid = np.repeat(np.arange(levels), sizes)  # every latent's grid, in buffer order
        local = np.arange(total) - start[grid]
        key = ((levels - 1 - grid) + WAVE_SLOPE * (local // width[grid]) + local % width[grid]) * levels
        key += levels - 1 - grid  # (step, coarser grids first)
        # A stable sort keeps grid after grid, raster order, within each (step, grid); 16-bit keys sort by radix.
        order = np.argsort(key.astype(np.uint16) if total and key.max() < 1 << 16 else key, kind="stable")
        counts = np.bincount(key[order] // levels)  # latents per step
        # The context of every latent, computed in decoding order.
        g = grid[order]
        w = width[g]
        r, c = (order - start[g]) // w, (order - start[g]) % w
        context = np.empty((total, FEATURES), dtype=np.int64)
        for k, (dr, dc) in enumerate(CONTEXT):
            rr, cc = r + dr, c + dc
            context[:, k] = np.where((rr >= 0) & (cc >= 0) & (cc < w), start[g] + rr * w + cc, total)
        parent = start[g + 1] + (r // 2) * width[g + 1] + c // 2
        context[:, -1] = np.where(g + 1 < levels, parent, total)
        bounds = [0, *np.cumsum(counts).tolist()]
        return cls(list(shapes), offsets, torch.from_numpy(order), torch.from_numpy(context), bounds)

    def split(self, flat: Tensor) -> list[Tensor]:
        """The grids (finest first) of a flat buffer."""
        return [flat[a:b].view(s) for a, b, s in zip(self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)]


def decode_waves(
    arm: IntARM,
    shapes: list[tuple[int, int]],
    decode: Callable[[Tensor, Tensor], Tensor],
    reference: bool = False,
) -> list[Tensor]:
    """The latent grids (finest first), decoded step by step.

    `decode(mean_q8, log_scale_q8)` returns the next symbols of the stream for latents with these
    parameters, in the order given (`Schedule.order`, one step at a time).
    """
    sched = Schedule.of(shapes)
    n = sched.offsets[-1] + 1
    if reference:
        flat, context, order = torch.zeros(n, dtype=torch.int64), sched.context, sched.order
    else:  # numpy in the loop: ~2,300 steps of small arrays, where torch's cost per call would dominate
        flat, context, order = np.zeros(n), sched.context.numpy(), sched.order.numpy()
    for a, b in zip(sched.bounds, sched.bounds[1:], strict=False):
        mean, log_scale = arm(flat[context[a:b]], reference)
        symbols = decode(mean, log_scale)
        flat[order[a:b]] = symbols if reference else symbols.numpy()
    return [g.to(torch.int64) for g in sched.split(torch.as_tensor(flat[:-1]))]


def encode_order(
    grids: list[Tensor], arm: IntARM, reference: bool = False, schedule: Schedule | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(values, mean_q8, log_scale_q8) of every latent in decoding order, in one pass: what the encoder codes.

    `schedule`: the grids' `Schedule.of`, when the caller has it already (the encoder tries several ARMs).
    """
    sched = schedule or Schedule.of([tuple(g.shape) for g in grids])
    flat = torch.cat([g.reshape(-1).to(torch.int64) for g in grids] + [torch.zeros(1, dtype=torch.int64)])
    mean, log_scale = arm(flat[sched.context], reference)
    return flat[sched.order], mean, log_scale
