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
import torch.nn.functional as F
from torch import Tensor, nn

from .entropy_models import SCALE_MIN, FactorizedDensity, gaussian_likelihood
from .layers import GDN, conv, deconv

# Rate-distortion trade-offs of the quality ladder: loss = bpp + lambda * MSE(0..255).
# Neighbours differ by 10^0.25; the ends are chosen so that the ladder spans
# about 0.1 to 1.5 bits per pixel on photos.
DEFAULT_LAMBDAS = tuple(round(0.1 * 10 ** (k / 4), 7) for k in range(-11, 4))


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
        return cls(**d)


# Scale the hyperprior predicts for grown latent channels before it learns them:
# about the spread of a trained channel's (un-gained) latents.
NEW_CHANNEL_SCALE = 0.4

# Total downsampling of the image to z; inputs are padded to a multiple of it.
STRIDE = 64


# Where the entries of a smaller model's tensors sit in a grown model's tensors:
# per tensor name, (dimension, old positions) for each dimension that grew.
Placement = dict[str, tuple[tuple[int, Tensor], ...]]


def embed(old: Tensor, shape: torch.Size, spec: tuple[tuple[int, Tensor], ...], fill: float = 0.0) -> Tensor:
    """A tensor of `shape` filled with `fill`, holding `old` at the positions `spec` gives."""
    out = old
    for dim, idx in spec:
        size = list(out.shape)
        size[dim] = shape[dim]
        out = torch.full(size, fill, dtype=old.dtype).index_copy_(dim, idx, out)
    return out


def _placed(fresh: dict[str, Tensor], old: dict[str, Tensor], place: Placement) -> dict[str, Tensor]:
    """The grown model's state: old tensors moved into place, the rest of each from `fresh`."""
    state = {}
    for k, v in old.items():
        if k in place:
            mask = embed(torch.ones_like(v, dtype=torch.bool), fresh[k].shape, place[k], fill=False)
            state[k] = torch.where(mask, embed(v, fresh[k].shape, place[k]), fresh[k])
        else:
            state[k] = v.clone()
    return state


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
            deconv(cfg.nz, cfg.nh0, 5, 2),
            nn.ReLU(),
            deconv(cfg.nh0, cfg.nh, 5, 2),
            nn.ReLU(),
            conv(cfg.nh, 2 * cfg.m, 3, 1),
        )


def anchor_mask(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """(1, 1, height, width) bool: the checkerboard's anchors, coded first ((row + column) even)."""
    rows = torch.arange(height, device=device).view(-1, 1)
    cols = torch.arange(width, device=device).view(1, -1)
    return ((rows + cols) % 2 == 0).view(1, 1, height, width)


class CheckerboardContext(nn.Module):
    """Checkerboard context (He et al. 2021): the decoded anchors refine the rest's mean and scale.

    y is coded in two passes: the anchors with the hyperprior's parameters
    alone, then the other half with those plus a correction predicted from the
    decoded anchors around it (a 5x5 neighbourhood). Two passes, not one per
    latent, so decoding stays parallel. Mirrored bit-exactly by
    `intnet.IntContext`.
    """

    def __init__(self, m: int, nc: int) -> None:
        super().__init__()
        self.conv = conv(m, nc, 5, 1)
        self.out = conv(nc, 2 * m, 1, 1)

    def forward(self, y_anchors: Tensor) -> Tensor:
        """Un-gained decoded anchors (zero elsewhere) -> (mean, scale) corrections, every position."""
        return self.out(F.relu(self.conv(y_anchors)))


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
        self.h_s = HyperSynthesis(cfg)
        self.context = CheckerboardContext(m, cfg.nc) if cfg.nc else None
        self.z_density = FactorizedDensity(nz)
        # log-gains per quality level: spread so that level 0 is coarse, the last fine.
        spread = 0.5 * math.log(cfg.lambdas[-1] / cfg.lambdas[0])
        init = torch.linspace(-spread / 2, spread / 2, cfg.levels)
        self.log_gain = nn.Parameter(init[:, None].repeat(1, m))

    @classmethod
    def from_state(cls, config: dict, state: dict[str, Tensor]) -> NicModel:
        """The model a stored configuration and state dict describe (weights files, checkpoints)."""
        model = cls(ModelConfig.from_dict(config))
        model.load_state_dict(state)
        return model

    def with_ladder(self, lambdas: tuple[float, ...]) -> tuple[NicModel, Tensor]:
        """This model with another quality ladder, its gains carried over.

        Levels whose lambda exists already keep their learned gains; new ones
        are interpolated (or extrapolated from the nearest two) in log-gain
        over log-lambda, per channel. Returns the new model and, per new
        level, the index of the old level nearest to it (for optimizer state).
        """
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

    def with_context(self, nc: int) -> NicModel:
        """This model with a checkerboard context model of `nc` channels, the same function.

        The context's output layer starts at zero, so it predicts no
        correction until training teaches it one; its first layer starts
        random so that the output layer gets gradients at once.
        """
        if self.context is not None:
            raise ValueError(f"the model has a context model already ({self.cfg.nc} channels)")
        return self._with_new_modules("nc", nc, zeroed=("context.out",))

    def _with_new_modules(self, field_name: str, value: int, zeroed: tuple[str, ...]) -> NicModel:
        """The model with config `field_name` set to `value`, which adds modules, the same function.

        Every tensor this model has keeps its values; of the new modules, the
        layers named in `zeroed` start at zero (weight and bias) so their
        output adds nothing, and the rest start random.
        """
        model = NicModel(ModelConfig.from_dict({**self.cfg.to_dict(), field_name: value}))
        state = model.state_dict()
        state.update(self.state_dict())
        with torch.no_grad():
            for name in zeroed:
                state[f"{name}.weight"].zero_()
                state[f"{name}.bias"].zero_()
        model.load_state_dict(state)
        return model

    def with_encoder_blocks(self, ne: int) -> NicModel:
        """This model with `ne` residual blocks on y in the analysis, the same function.

        New blocks' output layers start at zero (identity blocks); their first
        layers start random, so the output layers get gradients at once.
        """
        if ne <= self.cfg.ne:
            raise ValueError(f"can only add residual blocks to the analysis ({self.cfg.ne} -> {ne})")
        return self._with_new_modules("ne", ne, zeroed=tuple(f"g_a_res.{i}.conv2" for i in range(self.cfg.ne, ne)))

    def trainable(self, encoder_only: bool = False) -> list[nn.Parameter]:
        """The parameters to train, the others frozen (no weight gradients).

        encoder_only: only what the encoder runs, the analysis (with its blocks
        on y) and the hyper-analysis; training them improves the latents a file
        holds while the decoder's networks stay as they are (the synthesis
        still passes gradients on to y).
        """
        if not encoder_only:
            params = list(self.parameters())
        else:
            params = [*self.g_a.parameters(), *self.g_a_res.parameters(), *self.h_a.parameters()]
        ids = {id(p) for p in params}
        for p in self.parameters():
            p.requires_grad_(id(p) in ids)
        return params

    def widened(self, m: int) -> tuple[NicModel, Placement]:
        """This model with `m` latent channels instead of cfg.m, nearly the same function.

        y's channel count caps the fidelity a model can reach at any rate (a
        128-channel y holds 1/6 of the values of its 16x16x3 block), so a model
        grows it and keeps training. New channels must start *alive*: their
        analysis filters and synthesis weights are random with the typical norm
        of the old ones (half of it for the synthesis), so their latents survive
        rounding and the synthesis gets gradients from them; tiny ones are
        rounded to zero, get no gradient and die under the rate penalty (seen
        here). The hyperprior ignores them at first and predicts mean 0 and a
        fixed scale; their gains are the per-level mean of the old ones.
        Returns the model and where the old entries went (`Placement`).
        """
        old_m = self.cfg.m
        if m <= old_m:
            raise ValueError(f"can only grow the latent channels ({old_m} -> {m})")
        model = NicModel(ModelConfig.from_dict({**self.cfg.to_dict(), "m": m}))
        keep = torch.arange(old_m)
        hs_keep = torch.cat([keep, keep + m])  # h_s outputs are [means | scales]
        place: Placement = {
            "log_gain": ((1, keep),),
            "g_a.6.weight": ((0, keep),),
            "g_a.6.bias": ((0, keep),),
            "g_s.0.weight": ((0, keep),),
            "h_a.0.weight": ((1, keep),),
            "h_s.4.weight": ((0, hs_keep),),
            "h_s.4.bias": ((0, hs_keep),),
        }
        state = _placed(model.state_dict(), self.state_dict(), place)
        with torch.no_grad():
            new = slice(old_m, m)
            for key, share in (("g_a.6.weight", 1.0), ("g_s.0.weight", 0.25)):
                w = state[key]
                norms = w[:old_m].flatten(1).norm(dim=1).mean()
                fresh = w[new] / w[new].flatten(1).norm(dim=1).view(-1, *[1] * (w.dim() - 1))
                state[key][new] = fresh * norms * share
            state["h_a.0.weight"][:, new] = 0
            state["h_s.4.weight"][new] = 0
            state["h_s.4.weight"][m + old_m :] = 0
            state["h_s.4.bias"][new] = 0
            state["h_s.4.bias"][m + old_m :] = NEW_CHANNEL_SCALE
            state["log_gain"][:, new] = self.log_gain.mean(dim=1, keepdim=True)
        model.load_state_dict(state)
        return model, place

    def deepened(self, n_deep: int) -> tuple[NicModel, Placement]:
        """This model with `n_deep` channels in its 1/8-resolution layers, the same function.

        Those layers hold about one value per pixel at n_deep=64, a bottleneck
        next to the 16 per pixel at 1/2 resolution, and they are cheap to widen
        because they run on 1/64 of the pixels. See `_with_more_channels`.
        """
        if n_deep <= self.cfg.n_deep:
            raise ValueError(f"can only widen the 1/8-resolution layers ({self.cfg.n_deep} -> {n_deep})")
        return self._with_more_channels(
            "n_deep", n_deep, producers=("g_a.4", "g_s.0"), consumers=("g_a.6", "g_s.2"), gdns=("g_a.5", "g_s.1")
        )

    def broadened(self, n: int) -> tuple[NicModel, Placement]:
        """This model with `n` channels in its 1/2- and 1/4-resolution layers, the same function.

        Their width caps how much fine texture the transforms can reproduce at
        any rate (measured: benchmarks/ceiling.py); they are the expensive
        layers, so they grow last. See `_with_more_channels`.
        """
        if n <= self.cfg.n:
            raise ValueError(f"can only widen the 1/2- and 1/4-resolution layers ({self.cfg.n} -> {n})")
        return self._with_more_channels(
            "n",
            n,
            producers=("g_a.0", "g_a.2", "g_s.2", "g_s.4"),
            consumers=("g_a.2", "g_a.4", "g_s.4", "g_s.6"),
            gdns=("g_a.1", "g_a.3", "g_s.3", "g_s.5"),
        )

    def _with_more_channels(
        self, field_name: str, count: int, producers: tuple, consumers: tuple, gdns: tuple
    ) -> tuple[NicModel, Placement]:
        """The model with `count` channels where `field_name` of the config had fewer, the same function.

        producers: convolutions whose outputs grow; consumers: those whose
        inputs grow (one may be both); gdns: the (inverse) GDNs between them.
        New channels get random filters at the old ones' typical norm (so they
        carry signal and learn), their own divisive normalisation only, and
        zero weights into the next layer, so the output is unchanged until
        training puts them to use.
        """
        old = getattr(self.cfg, field_name)
        model = NicModel(ModelConfig.from_dict({**self.cfg.to_dict(), field_name: count}))
        keep = torch.arange(old)
        convs = dict(model.named_modules())

        def out_dim(name: str) -> int:  # a transposed convolution's weight is (in, out, k, k)
            return 1 if isinstance(convs[name], nn.ConvTranspose2d) else 0

        place: Placement = {}
        for name in set(producers) | set(consumers):
            spec = []
            if name in producers:
                spec.append((out_dim(name), keep))
                place[f"{name}.bias"] = ((0, keep),)
            if name in consumers:
                spec.append((1 - out_dim(name), keep))
            place[f"{name}.weight"] = tuple(spec)
        for gdn in gdns:
            place |= {f"{gdn}.beta_sqrt": ((0, keep),), f"{gdn}.gamma_sqrt": ((0, keep), (1, keep))}
        state = _placed(model.state_dict(), self.state_dict(), place)
        new = slice(old, count)
        with torch.no_grad():
            for name in producers:
                w = state[f"{name}.weight"].movedim(out_dim(name), 0)  # (out, in, k, k), a view into the state
                norm = w[:old].flatten(1).norm(dim=1).mean()
                fresh = w[new] / w[new].flatten(1).norm(dim=1).view(-1, *[1] * (w.dim() - 1))
                w[new] = fresh * norm
                state[f"{name}.bias"][new] = 0
            for name in consumers:  # old outputs ignore the new inputs (new outputs may read them)
                w = state[f"{name}.weight"].movedim(out_dim(name), 0)
                w[: old if name in producers else None, new] = 0
            for gdn in gdns:
                beta, gamma = state[f"{gdn}.beta_sqrt"], state[f"{gdn}.gamma_sqrt"]
                beta[new] = beta[:old].mean()
                gamma[new, :] = 0
                gamma[:, new] = 0
                gamma[new, new] = torch.eye(count - old) * gamma[:old, :old].diagonal().mean()
        model.load_state_dict(state)
        return model, place

    # -- pieces shared by training and coding -------------------------------------------

    # Under bfloat16 autocast (training), the layers that produce y and read y_hat
    # stay float32: bfloat16's 8-bit mantissa would blur y_hat by a third of a
    # quantization step at the finest levels. They run at 1/16 resolution, so
    # this costs little.

    def analysis(self, x: Tensor) -> Tensor:
        """Pixels in [0, 255] (B, 3, H, W) -> y."""
        h = self.g_a[:-1](x / 255.0 - 0.5)
        with torch.autocast(h.device.type, enabled=False):
            return self.g_a_res(self.g_a[-1](h.float()))

    def synthesis(self, y_hat: Tensor) -> Tensor:
        """y_hat -> pixels in about [0, 255] (unclamped)."""
        with torch.autocast(y_hat.device.type, enabled=False):
            h = self.g_s[0](y_hat.float())
        return (self.g_s[1:](h).float() + 0.5) * 255.0

    def split_params(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mean, scale = params.chunk(2, dim=1)
        return mean, scale

    def with_anchors(self, mean: Tensor, scale: Tensor, y_hat: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and scale of y once the anchors of y_hat (un-gained, decoded) are known.

        The anchors keep the hyperprior's; the others add the context's
        correction. Without a context model, the hyperprior's alone.
        """
        if self.context is None:
            return mean, scale
        anchors = anchor_mask(y_hat.shape[2], y_hat.shape[3], y_hat.device)
        # Under bfloat16 autocast like h_s: it predicts, it does not reconstruct.
        d_mean, d_scale = self.context(y_hat * anchors).chunk(2, dim=1)
        rest = ~anchors
        return mean + d_mean * rest, scale + d_scale * rest

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
        y_g = y * gain
        if self.context is not None:
            mean_g = mean * gain
            mean, scale = self.with_anchors(mean, scale, (ste_round(y_g - mean_g) + mean_g) / gain)
        mean_g = mean * gain
        scale_g = _LowerBound.apply(scale * gain, SCALE_MIN)
        noisy = y_g + torch.empty_like(y_g).uniform_(-0.5, 0.5) - mean_g
        y_bits = -torch.log2(gaussian_likelihood(noisy, scale_g)).sum(dim=(1, 2, 3))
        y_hat = (ste_round(y_g - mean_g) + mean_g) / gain
        x_hat = self.synthesis(y_hat)
        return {"x_hat": x_hat, "y_bits": y_bits, "z_bits": z_bits}
