"""Differentiable stand-ins for rounding, used where gradients must cross it (training, refinement).

Coding itself always rounds exactly (`latent_codecs`); these only shape the gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

_EPS = 1e-5


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def uniform_noise(x: Tensor) -> Tensor:
    """x plus uniform noise in [-1/2, 1/2): the training proxy of rounding for the rate."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


def sga_round(v: Tensor, tau: float, gen: torch.Generator) -> Tensor:
    """Stochastic Gumbel annealing (Yang et al. 2020): floor(v) + a relaxed Bernoulli 'round up'.

    Rounding up is more likely the closer v is to its ceiling, and the choice
    sharpens as tau falls; the difference of the two Gumbel draws of the
    two-way Gumbel-softmax is one logistic draw.
    """
    low = torch.floor(v)
    r = (v - low).clamp(_EPS, 1 - _EPS)
    u = torch.rand(v.shape, generator=gen, device=v.device).clamp(_EPS, 1 - _EPS)
    logistic = torch.log(u) - torch.log1p(-u)
    up = torch.sigmoid((torch.atanh(r) - torch.atanh(1 - r)) / tau + logistic)
    return low + up


class _LowerBound(torch.autograd.Function):
    """max(x, bound), but lets gradients through that push x up."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through, None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    """max(x, bound) whose gradient still lifts x when it sits below the bound."""
    return _LowerBound.apply(x, bound)
