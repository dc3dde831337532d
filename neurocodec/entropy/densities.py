"""Probability models of the latents, as used in training.

`FactorizedDensity` is the learned per-channel density of the hyper-latent z
(Balle et al. 2018, appendix 6.1); `gaussian_likelihood` is the discretised
Gaussian of y given the hyperprior's mean and scale. The integer tables that
the entropy coder uses are derived from these in `tables`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SCALE_MIN = 0.11
LIKELIHOOD_MIN = 1e-9


def _std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def gaussian_likelihood(v: Tensor, scale: Tensor) -> Tensor:
    """P(v) of a zero-mean Gaussian integrated over [v-1/2, v+1/2].

    Computed from the upper tail (|v|) because erfc is accurate there.
    """
    scale = scale.clamp_min(SCALE_MIN)
    a = v.abs()
    upper = _std_normal_cdf((0.5 - a) / scale)
    lower = _std_normal_cdf((-0.5 - a) / scale)
    return (upper - lower).clamp_min(LIKELIHOOD_MIN)


class FactorizedDensity(nn.Module):
    """A learned, flexible univariate density per channel.

    Its cumulative is a small monotone network, so P(integer bin) is a
    difference of two cumulatives, exact to integrate.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, x: Tensor) -> Tensor:
        """x: (channels, 1, n) -> logit of the cumulative, same shape."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: Tensor) -> Tensor:
        """P of each element of z (B, C, H, W) under its channel's density."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lo = self.logits_cdf(v - 0.5)
        hi = self.logits_cdf(v + 0.5)
        # Evaluate in the tail away from 1 for accuracy (sign trick).
        sign = -torch.sign(lo + hi).detach()
        p = (torch.sigmoid(sign * hi) - torch.sigmoid(sign * lo)).abs()
        p = p.clamp_min(LIKELIHOOD_MIN)
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def cdf(self, x: Tensor) -> Tensor:
        """Cumulative at points x (C, n) in float64, for building tables."""
        v = x.to(torch.float64).unsqueeze(1)
        for i, (mat, b) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(F.softplus(mat.double()), v) + b.double()
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i].double()) * torch.tanh(v)
        return torch.sigmoid(v).squeeze(1)
