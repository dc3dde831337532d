"""The autoencoder's networks: analysis g_a, synthesis g_s, hyper-analysis h_a, and the gains.

One network serves every quality: a learned per-channel gain vector per
quality level scales y before rounding (Cui et al. 2021, see `gains`), and its
inverse after. The hyperprior predicts mean and scale of the *un-gained* y, so
the gained mean and scale are simple products with the gain, which keeps the
exact integer networks (`entropy.intnet`) independent of the quality. The
entropy models of z and y (h_s, the context, z's density) are parts of this
model but belong to their stages in `latent_codecs`; growing a trained model
(more channels, a context, encoder blocks) is training's business (`training.growth`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..entropy.densities import SCALE_MIN, FactorizedDensity
from ..errors import NicError
from .latent_codecs import CheckerboardContext, FactorizedZ, HyperpriorY, HyperSynthesis
from .layers import GDN, conv, deconv
from .rounding import lower_bound, ste_round, uniform_noise

# Rate-distortion trade-offs of the quality ladder: loss = bpp + lambda * MSE(0..255).
# Neighbours differ by 10^0.25; the shipped weights' 15 levels span about 0.06 to
# 2.6 bits per pixel on the validation photos (weights/TRAINING.md).
DEFAULT_LAMBDAS = tuple(round(0.1 * 10 ** (k / 4), 7) for k in range(-11, 4))
# The same ladder for weights tuned for MS-SSIM (`--tune ssim`): loss = bpp + lambda * (1 - MS-SSIM).
# Each level's lambda is the MSE one times -dMSE / d(1 - MS-SSIM) along the MSE weights' own curve
# (measured on 256x256 crops of 8 training photos, 1146 at the top level to 3229), so that a level
# of either tuning lands at about the same rate.
RATIO_MSSSIM = (2897, 3048, 3229, 3147, 2921, 2620, 2331, 2124, 1894, 1691, 1513, 1332, 1240, 1161, 1146)
MSSSIM_LAMBDAS = tuple(float(f"{lam * r:.3g}") for lam, r in zip(DEFAULT_LAMBDAS, RATIO_MSSSIM, strict=True))
LADDERS = {"mse": DEFAULT_LAMBDAS, "msssim": MSSSIM_LAMBDAS}  # distortion -> quality ladder

# Geometry: the analysis takes pixels to y at 1/Y_STRIDE, the hyper-analysis y to
# z at a further 1/Z_STRIDE. Coding pads the pixels to a multiple of Y_STRIDE
# (edges replicated) and y to a multiple of Z_STRIDE (zeros); training crops
# are multiples of STRIDE, so nothing is padded there.
Y_STRIDE = 16
Z_STRIDE = 4
STRIDE = Y_STRIDE * Z_STRIDE

# The float networks a decoder runs: the synthesis alone. z and y are decoded with
# integer tables and the integer hyper-synthesis and context (`entropy.intnet`),
# which the weights file holds beside the float state (`weights`).
DECODER_MODULES = ("g_s",)


@dataclass
class ModelConfig:
    """Shape of the network; stored with the weights so they rebuild it."""

    n: int = 64  # channels of the transforms' hidden layers at 1/2 and 1/4 resolution
    m: int = 256  # latent channels of y
    n_deep: int = 128  # channels of the 1/8-resolution layer of g_a and g_s
    nz: int = 64  # channels of the hyper-latent z
    nh0: int = 64  # channels of the hyper-synthesis' first hidden layer (1/4 of y's resolution)
    nh: int = 96  # channels of its second hidden layer (y's resolution)
    nc: int = 0  # hidden channels of the checkerboard context model (0: hyperprior only)
    ne: int = 0  # residual blocks on y at the end of the analysis (encoder only; 0: none)
    lambdas: tuple[float, ...] = field(default=DEFAULT_LAMBDAS)
    distortion: str = "mse"  # what the ladder's lambdas weigh against the rate: "mse" (0..255) or "msssim"

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
        d.setdefault("n_deep", d["n"])  # weights from before the 1/8 layer had its own width
        d.setdefault("nc", 0)  # weights from before the context model
        d.setdefault("nh0", d["n"])  # weights from before the hyper-synthesis had its own width
        d.setdefault("ne", 0)  # weights from before the analysis had residual blocks on y
        d.setdefault("distortion", "mse")  # weights from before the MS-SSIM tuning
        return cls(**d)


class LatentResBlock(nn.Module):
    """y + conv(relu(conv(y))) at y's resolution: the analysis' last word on each latent.

    Only the encoder runs it, so it adds encoder capacity without touching the
    decoder's cost: a single pass of the analysis leaves the latents ~10 %
    short of the best ones for the same decoder (what `refine` finds by
    gradient steps), and these blocks let it adjust each latent to its
    neighbours' before rounding. 3x3 convolutions on 1/256 of the pixels: about
    a sixth of the analysis' multiply-accumulates per block.
    """

    def __init__(self, m: int) -> None:
        super().__init__()
        self.conv1 = conv(m, m, 3, 1)
        self.conv2 = conv(m, m, 3, 1)

    def forward(self, y: Tensor) -> Tensor:
        return y + self.conv2(F.relu(self.conv1(y)))


class NicModel(nn.Module):
    """Analysis g_a, synthesis g_s, hyper-analysis h_a, hyper-synthesis h_s, gains."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        n, m, nz, nd = cfg.n, cfg.m, cfg.nz, cfg.n_deep
        self.g_a = nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, nd), GDN(nd), conv(nd, m))
        self.g_a_res = nn.Sequential(*(LatentResBlock(m) for _ in range(cfg.ne)))
        self.g_s = nn.Sequential(
            deconv(m, nd),
            GDN(nd, inverse=True),
            deconv(nd, n),
            GDN(n, inverse=True),
            deconv(n, n),
            GDN(n, inverse=True),
            deconv(n, 3),
        )
        self.h_a = nn.Sequential(conv(m, nz, 3, 1), nn.ReLU(), conv(nz, nz, 5, 2), nn.ReLU(), conv(nz, nz, 5, 2))
        self.h_s = HyperSynthesis(nz, cfg.nh0, cfg.nh, m)
        self.context = CheckerboardContext(m, cfg.nc) if cfg.nc else None
        self.z_density = FactorizedDensity(nz)
        # log-gains per quality level: spread so that level 0 is coarse, the last fine.
        spread = 0.5 * math.log(cfg.lambdas[-1] / cfg.lambdas[0])
        init = torch.linspace(-spread / 2, spread / 2, cfg.levels)
        self.log_gain = nn.Parameter(init[:, None].repeat(1, m))
        # The latent stages over the modules above, float side only (plain objects: the state dict
        # keeps its names); `weights.Weights` builds them again with their exact parts for coding.
        self.z_codec = FactorizedZ(self.z_density)
        self.y_codec = HyperpriorY(self.h_s, self.context)
        self.decoder_only = False

    @classmethod
    def from_state(cls, config: dict, state: dict[str, Tensor]) -> NicModel:
        """The model a stored configuration and state dict describe (weights files, checkpoints)."""
        model = cls(ModelConfig.from_dict(config))
        model.load_state_dict(state)
        return model

    @classmethod
    def decoder_from_state(cls, config: dict, state: dict[str, Tensor]) -> NicModel:
        """The synthesis alone, from a state that may hold nothing else (retired weights kept for decoding).

        The other networks are removed, not left at their initial values, so
        nothing can encode or train with random ones: `analysis` and the like refuse.
        """
        model = cls(ModelConfig.from_dict(config))
        for name, module in list(model.named_children()):
            if name in DECODER_MODULES:
                module.load_state_dict(
                    {k.removeprefix(f"{name}."): v for k, v in state.items() if k.startswith(f"{name}.")}
                )
            else:
                setattr(model, name, None)
        model.log_gain = None  # training's float gains: coding uses the weights' integer ones
        model.z_codec = model.y_codec = None
        model.decoder_only = True
        return model

    def _require_encoder(self) -> None:
        if self.decoder_only:
            raise NicError(
                "these weights hold only the decoder (retired, kept so old files decode): they cannot encode or train"
            )

    def with_ladder(self, lambdas: tuple[float, ...]) -> tuple[NicModel, Tensor]:
        """This model with another quality ladder, its gains carried over.

        Levels whose lambda exists already keep their learned gains; new ones
        are interpolated (or extrapolated from the nearest two) in log-gain
        over log-lambda, per channel. Returns the new model and, per new
        level, the index of the old level nearest to it (for optimizer state).
        """
        self._require_encoder()
        old = torch.tensor(self.cfg.lambdas, dtype=torch.float64).log()
        new = torch.tensor(lambdas, dtype=torch.float64).log()
        g = self.log_gain.detach().double()
        i = torch.searchsorted(old, new).clamp(1, len(old) - 1)
        t = ((new - old[i - 1]) / (old[i] - old[i - 1]))[:, None]
        gains = g[i - 1] + t * (g[i] - g[i - 1])
        cfg = ModelConfig.from_dict({**self.cfg.to_dict(), "lambdas": list(lambdas)})
        model = NicModel(cfg)
        state = {k: v for k, v in self.state_dict().items() if k != "log_gain"}
        model.load_state_dict({**state, "log_gain": gains.float()})
        nearest = (new[:, None] - old[None, :]).abs().argmin(dim=1)
        return model, nearest

    def retuned(self, distortion: str) -> NicModel:
        """This model to be trained for another distortion: its ladder's lambdas replaced level by level.

        The levels keep their gains, so training starts from rates close to
        the ones the new lambdas aim at (`LADDERS`).
        """
        self._require_encoder()
        if self.cfg.levels != len(LADDERS[distortion]):
            raise NicError(
                f"a model of {self.cfg.levels} levels cannot take the {len(LADDERS[distortion])}-level ladder"
            )
        cfg = ModelConfig.from_dict(
            {**self.cfg.to_dict(), "lambdas": list(LADDERS[distortion]), "distortion": distortion}
        )
        model = NicModel(cfg)
        model.load_state_dict(self.state_dict())
        return model

    def trainable(self, encoder_only: bool = False) -> list[nn.Parameter]:
        """The parameters to train (in `named_parameters` order), the others frozen (no weight gradients).

        encoder_only: only what the encoder runs, the analysis (with its blocks
        on y) and the hyper-analysis; training them improves the latents a file
        holds while the decoder's networks stay as they are (the synthesis
        still passes gradients on to y). An optimizer's state follows these
        parameters by position: `trainable_names` names them.
        """
        names = set(self.trainable_names(encoder_only))
        params = []
        for name, p in self.named_parameters():
            p.requires_grad_(name in names)
            if name in names:
                params.append(p)
        return params

    def trainable_names(self, encoder_only: bool = False) -> list[str]:
        """Names of the parameters `trainable` returns, in the same order."""
        prefixes = ("g_a.", "g_a_res.", "h_a.") if encoder_only else ("",)
        return [name for name, _ in self.named_parameters() if name.startswith(prefixes)]

    # -- pieces shared by training and coding -------------------------------------------

    # Under bfloat16 autocast (training), the layers that produce y and read y_hat
    # stay float32: bfloat16's 8-bit mantissa would blur y_hat by a third of a
    # quantization step at the finest levels. They run at 1/16 resolution, so
    # this costs little.

    def analysis(self, x: Tensor) -> Tensor:
        """Pixels in [0, 255] (B, 3, H, W) -> y."""
        self._require_encoder()
        h = self.g_a[:-1](x / 255.0 - 0.5)
        with torch.autocast(h.device.type, enabled=False):
            return self.g_a_res(self.g_a[-1](h.float()))

    def hyper_analysis(self, y: Tensor) -> Tensor:
        """y -> z (unrounded), y first padded with zeros to a multiple of Z_STRIDE."""
        self._require_encoder()
        hy, wy = y.shape[2], y.shape[3]
        return self.h_a(F.pad(y, (0, (-wy) % Z_STRIDE, 0, (-hy) % Z_STRIDE)))

    def synthesis(self, y_hat: Tensor) -> Tensor:
        """y_hat -> pixels in about [0, 255] (unclamped)."""
        with torch.autocast(y_hat.device.type, enabled=False):
            h = self.g_s[0](y_hat.float())
        return (self.g_s[1:](h).float() + 0.5) * 255.0

    # -- training ------------------------------------------------------------------------

    def forward(self, x: Tensor, level: Tensor) -> dict[str, Tensor]:
        """Noisy/straight-through forward pass for training.

        level: (B,) long tensor, the quality level of each sample.
        Returns the reconstruction and the bits of y and z per image.
        """
        y = self.analysis(x)
        z = self.h_a(y)
        z_bits = self.z_codec.bits(uniform_noise(z)).sum(dim=(1, 2, 3))
        gain = self.log_gain[level].exp()[:, :, None, None]
        y_g = y * gain
        v, mean_g, scale_g = self.y_codec.forward(ste_round(z), gain, lambda m: ste_round(y_g - m), y.shape[2:])
        y_bits = self.y_codec.bits(uniform_noise(y_g) - mean_g, lower_bound(scale_g, SCALE_MIN)).sum(dim=(1, 2, 3))
        x_hat = self.synthesis((v + mean_g) / gain)
        return {"x_hat": x_hat, "y_bits": y_bits, "z_bits": z_bits}
