"""The learned transform codec: analysis/synthesis, mean-scale hyperprior, gain units.

One network serves every quality: a learned per-channel gain vector per
quality level scales y before rounding (Cui et al. 2021), and its inverse
after. The hyperprior predicts mean and scale of the *un-gained* y, so the
gained mean and scale are simple products with the gain, which keeps the
exact integer path (`intnet.py`) independent of the quality.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .entropy_models import SCALE_MIN, FactorizedDensity, gaussian_likelihood
from .layers import GDN, conv, deconv

# Rate-distortion trade-offs of the quality ladder: loss = bpp + lambda * MSE(0..255).
DEFAULT_LAMBDAS = (0.0018, 0.0032, 0.0056, 0.01, 0.018, 0.032, 0.056, 0.1)


@dataclass
class ModelConfig:
    """Shape of the network; stored with the weights so they rebuild it."""

    n: int = 64  # channels of the transforms' hidden layers
    m: int = 128  # latent channels of y
    nz: int = 64  # channels of the hyper-latent z
    nh: int = 96  # hidden channels of the hyper-synthesis
    lambdas: tuple[float, ...] = field(default=DEFAULT_LAMBDAS)

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)


# Total downsampling of the image to z; inputs are padded to a multiple of it.
STRIDE = 64


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


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


class HyperSynthesis(nn.Sequential):
    """h_s: z -> (mean, scale) of y. Mirrored bit-exactly by `intnet.IntHyperSynthesis`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(
            deconv(cfg.nz, cfg.n, 5, 2),
            nn.ReLU(),
            deconv(cfg.n, cfg.nh, 5, 2),
            nn.ReLU(),
            conv(cfg.nh, 2 * cfg.m, 3, 1),
        )


class NicModel(nn.Module):
    """Analysis g_a, synthesis g_s, hyper-analysis h_a, hyper-synthesis h_s, gains."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        n, m, nz = cfg.n, cfg.m, cfg.nz
        self.g_a = nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))
        self.g_s = nn.Sequential(
            deconv(m, n),
            GDN(n, inverse=True),
            deconv(n, n),
            GDN(n, inverse=True),
            deconv(n, n),
            GDN(n, inverse=True),
            deconv(n, 3),
        )
        self.h_a = nn.Sequential(conv(m, nz, 3, 1), nn.ReLU(), conv(nz, nz, 5, 2), nn.ReLU(), conv(nz, nz, 5, 2))
        self.h_s = HyperSynthesis(cfg)
        self.z_density = FactorizedDensity(nz)
        # log-gains per quality level: spread so that level 0 is coarse, the last fine.
        spread = 0.5 * math.log(cfg.lambdas[-1] / cfg.lambdas[0])
        init = torch.linspace(-spread / 2, spread / 2, cfg.levels)
        self.log_gain = nn.Parameter(init[:, None].repeat(1, m))

    # -- pieces shared by training and coding -------------------------------------------

    def analysis(self, x: Tensor) -> Tensor:
        """Pixels in [0, 255] (B, 3, H, W) -> y."""
        return self.g_a(x / 255.0 - 0.5)

    def synthesis(self, y_hat: Tensor) -> Tensor:
        """y_hat -> pixels in about [0, 255] (unclamped)."""
        return (self.g_s(y_hat) + 0.5) * 255.0

    def split_params(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mean, scale = params.chunk(2, dim=1)
        return mean, scale

    # -- training ------------------------------------------------------------------------

    def forward(self, x: Tensor, level: Tensor) -> dict[str, Tensor]:
        """Noisy/straight-through forward pass for training.

        level: (B,) long tensor, the quality level of each sample.
        Returns the reconstruction and the bits of y and z per image.
        """
        y = self.analysis(x)
        z = self.h_a(y)
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        z_bits = -torch.log2(self.z_density.likelihood(z_noisy)).sum(dim=(1, 2, 3))
        mean, scale = self.split_params(self.h_s(ste_round(z)))

        gain = self.log_gain[level].exp()[:, :, None, None]
        y_g, mean_g = y * gain, mean * gain
        scale_g = _LowerBound.apply(scale * gain, SCALE_MIN)
        noisy = y_g + torch.empty_like(y_g).uniform_(-0.5, 0.5) - mean_g
        y_bits = -torch.log2(gaussian_likelihood(noisy, scale_g)).sum(dim=(1, 2, 3))
        y_hat = (ste_round(y_g - mean_g) + mean_g) / gain
        x_hat = self.synthesis(y_hat)
        return {"x_hat": x_hat, "y_bits": y_bits, "z_bits": z_bits}
