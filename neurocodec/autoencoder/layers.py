"""Building blocks of the transforms: strided convolutions and a cheap GDN.

The transforms run in float (decoded pixels may differ by rounding between
machines, like JPEG's IDCT); only what feeds the entropy coder must be exact,
and that runs as `entropy.intnet` networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    """'Same' convolution that downsamples by `stride`."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that upsamples by exactly `stride`."""
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


class GDN(nn.Module):
    """Simplified generalized divisive normalization (Johnston et al. 2019).

    y_i = x_i / (beta_i + sum_j gamma_ij |x_j|), or its inverse (multiply)
    on the synthesis side. It needs no square root and no squares, so it costs
    one 1x1 convolution, which matters on 2 CPU cores, and it keeps most of
    GDN's rate-distortion benefit over ReLU.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        # Parametrised by square roots so that beta, gamma stay non-negative.
        self.beta_sqrt = nn.Parameter(torch.ones(channels))
        self.gamma_sqrt = nn.Parameter(torch.eye(channels) * 0.1**0.5)

    def forward(self, x: Tensor) -> Tensor:
        # Under bfloat16 autocast only the 1x1 convolution runs in bfloat16;
        # beta is added and x scaled in float32. With all of it in bfloat16 the
        # transforms' gradients were markedly noisier (measured: cosine 0.88
        # to the float32 gradient, against 0.97 this way).
        c = x.shape[1]
        beta = self.beta_sqrt.square() + 1e-6
        gamma = self.gamma_sqrt.square().view(c, c, 1, 1)
        norm = F.conv2d(x.abs(), gamma).float() + beta.view(1, c, 1, 1)
        x = x.float()
        return x * norm if self.inverse else x / norm
