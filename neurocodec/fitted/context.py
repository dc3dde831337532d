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

from collections.abc import Callable
from dataclasses import dataclass

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

    def __call__(self, x: Tensor, in_bits: int, out_bits: int, reference: bool) -> Tensor:
        if reference:
            acc = (x[:, None, :] * self.weight[None]).sum(dim=2)
        else:
            acc = (x.to(torch.float64) @ self.weight.to(torch.float64).T).to(torch.int64)
        out = _round_shift(acc + self.bias, self.w_bits + in_bits - out_bits)
        return out.clamp(0 if self.relu else -ACT_MAX, ACT_MAX)

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
    (width -> 2). Its float twin is trained; `from_float` rounds that one's weights to this.
    """

    first: IntLinear
    hidden: list[IntLinear]
    last: IntLinear

    def __call__(self, features: Tensor, reference: bool = False) -> tuple[Tensor, Tensor]:
        x = self.first(features.to(torch.int64), 0, ACT_FRAC_BITS, reference)
        for layer in self.hidden:
            x = (x + layer(x, ACT_FRAC_BITS, ACT_FRAC_BITS, reference)).clamp(-ACT_MAX, ACT_MAX)
        out = self.last(x, ACT_FRAC_BITS, OUT_FRAC_BITS, reference)
        return out[:, 0], out[:, 1]

    def layers(self) -> list[IntLinear]:
        return [self.first, *self.hidden, self.last]

    def check(self) -> None:
        for layer in self.layers():
            layer.check()
        if self.first.weight.shape[1] != FEATURES or self.last.weight.shape[0] != 2:
            raise ValueError("context model of the wrong shape")

    @classmethod
    def from_float(cls, weights: list[tuple[Tensor, Tensor]], w_bits: list[int]) -> IntARM:
        """Round a float ARM's (weight, bias) pairs, first, hidden..., last, to steps 2**-w_bits."""
        layers = []
        for k, ((w, b), bits) in enumerate(zip(weights, w_bits, strict=True)):
            in_bits = 0 if k == 0 else ACT_FRAC_BITS
            wi = torch.round(w.detach().double() * 2.0**bits).to(torch.int64).clamp(-WEIGHT_MAX, WEIGHT_MAX)
            bi = torch.round(b.detach().double() * 2.0 ** (bits + in_bits)).to(torch.int64)
            layers.append(IntLinear(wi, bi.clamp(-BIAS_MAX, BIAS_MAX), bits, relu=k < len(weights) - 1))
        return cls(layers[0], layers[1:-1], layers[-1])


def coarser_up(coarser: Tensor | None, shape: tuple[int, int]) -> Tensor:
    """The coarser grid's latent at each position of a grid of `shape` (its parent (r//2, c//2)); 0 for the coarsest."""
    if coarser is None:
        return torch.zeros(shape, dtype=torch.int64)
    return coarser.repeat_interleave(2, 0).repeat_interleave(2, 1)[: shape[0], : shape[1]]


def features(grid: Tensor, coarser: Tensor | None) -> Tensor:
    """(H*W, FEATURES) integer context of every latent of `grid` (H, W), raster order: what the encoder computes
    at once (and the decoder wave by wave). Neighbours outside the grid are 0."""
    h, w = grid.shape
    pad = torch.nn.functional.pad(grid.to(torch.int64), (2, 2, 2, 0))
    cols = [pad[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w] for dy, dx in CONTEXT]
    cols.append(coarser_up(coarser, (h, w)))
    return torch.stack(cols, dim=-1).reshape(h * w, FEATURES)


def waves(shapes: list[tuple[int, int]]) -> list[list[Tensor]]:
    """For each decoding step, the flat (raster) indices of the latents of each grid decoded in it.

    Grids are finest first; grid i runs len(shapes) - 1 - i steps behind the coarsest, so that a latent's
    parent in the coarser grid (wave (3r + c) // 2 or less) is always decoded in an earlier step.
    """
    levels = len(shapes)
    per_grid = []
    for h, w in shapes:
        r = torch.arange(h).repeat_interleave(w)
        c = torch.arange(w).repeat(h)
        t = WAVE_SLOPE * r + c
        order = torch.argsort(t, stable=True)
        counts = torch.bincount(t, minlength=WAVE_SLOPE * (h - 1) + w)
        per_grid.append(list(torch.split(order, counts.tolist())))
    steps = max(len(g) + levels - 1 - i for i, g in enumerate(per_grid))
    empty = torch.zeros(0, dtype=torch.int64)
    out = []
    for s in range(steps):
        row = []
        for i, g in enumerate(per_grid):
            k = s - (levels - 1 - i)
            row.append(g[k] if 0 <= k < len(g) else empty)
        out.append(row)
    return out


def gather(grids: list[Tensor], i: int, idx: Tensor) -> Tensor:
    """(len(idx), FEATURES) context of the latents `idx` (flat) of grid i, from what is decoded so far."""
    w = grids[i].shape[1]
    r, c = idx // w, idx % w
    cols = []
    flat = grids[i].reshape(-1)
    for dy, dx in CONTEXT:
        rr, cc = r + dy, c + dx
        inside = (rr >= 0) & (cc >= 0) & (cc < w)
        cols.append(torch.where(inside, flat[(rr.clamp(min=0) * w + cc.clamp(0, w - 1))], 0))
    if i + 1 < len(grids):
        parent = grids[i + 1]
        cols.append(parent[r // 2, c // 2])
    else:
        cols.append(torch.zeros_like(idx))
    return torch.stack(cols, dim=1)


def decode_waves(
    arm: IntARM,
    shapes: list[tuple[int, int]],
    decode: Callable[[Tensor, Tensor], Tensor],
    reference: bool = False,
) -> list[Tensor]:
    """The latent grids (finest first), decoded wave by wave.

    `decode(mean_q8, log_scale_q8)` returns the next symbols of the stream for latents with these
    parameters, in the order given: each step's latents, grid by grid (coarsest first), raster order.
    """
    grids = [torch.zeros(s, dtype=torch.int64) for s in shapes]
    for step in waves(shapes):
        parts = [(i, idx) for i, idx in reversed(list(enumerate(step))) if len(idx)]
        feats = torch.cat([gather(grids, i, idx) for i, idx in parts])
        mean, log_scale = arm(feats, reference)
        values = decode(mean, log_scale)
        at = 0
        for i, idx in parts:
            grids[i].view(-1)[idx] = values[at : at + len(idx)]
            at += len(idx)
    return grids


def encode_order(grids: list[Tensor], arm: IntARM, reference: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """(values, mean_q8, log_scale_q8) of every latent in decoding order: what the encoder codes.

    The parameters come from one pass over each whole grid (`features`), not wave by wave; the tests check
    that both give the same numbers.
    """
    params = []
    for i, g in enumerate(grids):
        mean, log_scale = arm(features(g, grids[i + 1] if i + 1 < len(grids) else None), reference)
        params.append((g.reshape(-1), mean, log_scale))
    values, means, scales = [], [], []
    for step in waves([tuple(g.shape) for g in grids]):
        for i, idx in reversed(list(enumerate(step))):
            if len(idx):
                v, m, s = params[i]
                values.append(v[idx])
                means.append(m[idx])
                scales.append(s[idx])
    return torch.cat(values), torch.cat(means), torch.cat(scales)
