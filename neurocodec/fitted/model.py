"""The fitted mode's networks in float, as the encoder fits them to one image.

A latent pyramid (one channel per level, 1/1 to 1/2**(levels-1) of the image)
is decoded by a `Decoder`: learned 2x upsampling of every level to full
resolution (`SeparableUpsampling`, Cool-chic's symmetric 8-tap filters, bicubic
at start; version 1 files have `Upsampling4x4`), then a small synthesis (1x1
levels -> width -> 3, two residual 3x3 layers). The
latents' rate comes from the `ARM`, a residual MLP over each latent's causal
neighbours and its coarser parent (`context.CONTEXT`) with a Laplace output:
its integer twin (`context.IntARM`) is what the file's decoder runs.

During the fit the latents are fitted at 1/GAIN scale (Adam's steps stay small,
Cool-chic's encoder gain) and pass through C3's rounding proxy: soft rounding,
Gaussian noise, soft rounding again, annealed towards true rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .context import CONTEXT, FEATURES, MAX_WIDTH
from .laplace import bits as laplace_bits

GAIN = 16.0
MAX_LEVELS = 12
MAX_HIDDEN = 4
MAX_NET_WIDTH = 255  # widths are a byte of the file's header
UPSAMPLING_4X4, UPSAMPLING_SEPARABLE = 0, 1  # the upsampling kinds (the header's byte U)


@dataclass(frozen=True)
class Architecture:
    """The shape of the fitted networks: stored in each file, so a decoder builds the same ones."""

    levels: int = 7
    arm_width: int = 16
    arm_hidden: int = 1
    syn_width: int = 16
    upsampling: int = UPSAMPLING_SEPARABLE

    def check(self) -> None:
        ok = 1 <= self.levels <= MAX_LEVELS and 0 <= self.arm_hidden <= MAX_HIDDEN
        ok = ok and self.upsampling in UPSAMPLINGS
        widths = (self.arm_width, self.syn_width)
        if not (ok and all(1 <= w <= min(MAX_WIDTH, MAX_NET_WIDTH) for w in widths)):
            raise ValueError(f"unsupported fitted architecture {self}")

    def shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The latent grids' (rows, columns), finest first."""
        return [(-(-height // 2**i), -(-width // 2**i)) for i in range(self.levels)]


DEFAULT = Architecture()


def pad_edges(x: Tensor, p: int, cols_p: int | None = None) -> Tensor:
    """Replicate padding by p on every side (by cols_p left and right, if given), by indexing (torch.compile's
    inductor fails on replication_pad2d's backward, torch 2.13)."""
    h, w, q = x.shape[2], x.shape[3], p if cols_p is None else cols_p
    rows = torch.arange(-p, h + p, device=x.device).clamp(0, h - 1)
    cols = torch.arange(-q, w + q, device=x.device).clamp(0, w - 1)
    return x.index_select(2, rows).index_select(3, cols)


def soft_round(x: Tensor, t: Tensor) -> Tensor:
    """Agustsson & Theis (2020): a differentiable rounding that hardens as t falls."""
    m = torch.floor(x) + 0.5
    return m + torch.tanh((x - m) / t) / (2 * torch.tanh(0.5 / t))


def quantize(x: Tensor, t: Tensor, noise: Tensor, hard: bool) -> Tensor:
    """C3's proxy: soft rounding, Gaussian noise of standard deviation `noise`, soft rounding again;
    `hard`: true rounding (no gradient reaches the latents: the last phase fits the networks only)."""
    if hard:
        return torch.round(x).detach()
    return soft_round(soft_round(x, t) + noise * torch.randn_like(x), t)


class ARM(nn.Module):
    """The context model in float: features -> (mean, log-scale) of each latent's Laplace."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.first = nn.Linear(FEATURES, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(hidden))
        self.last = nn.Linear(width, 2)
        nn.init.zeros_(self.last.weight)
        with torch.no_grad():
            self.last.bias.copy_(torch.tensor([0.0, 1.0]))  # b = e at the start

    @staticmethod
    def features(q: Tensor, coarser: Tensor | None) -> Tensor:
        """(H*W, FEATURES): the causal neighbours (zero outside the grid) and the coarser grid's co-located latent,
        as `context.Schedule` gathers them for the decoder."""
        h, w = q.shape[2], q.shape[3]
        up, side = max(-dr for dr, _ in CONTEXT), max(abs(dc) for _, dc in CONTEXT)
        pad = F.pad(q, (side, side, up, 0))
        feats = [pad[:, :, up + dr : up + dr + h, side + dc : side + dc + w] for dr, dc in CONTEXT]
        if coarser is None:
            feats.append(torch.zeros_like(q))
        else:
            feats.append(coarser.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)[:, :, :h, :w])
        return torch.cat(feats, dim=1).permute(0, 2, 3, 1).reshape(-1, FEATURES)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        # 11 inputs padded with zeros to 16: skinny matrix products of width 11 run 2-3x slower than of 16 on
        # the CPU (MKL), and the first layer of the finest grid is a third of an iteration.
        pad = -FEATURES % 16
        x = F.relu_(F.linear(F.pad(features, (0, pad)), F.pad(self.first.weight, (0, pad)), self.first.bias))
        for layer in self.hidden:
            x = x + F.relu_(layer(x))
        mean, log_scale = self.last(x).float().unbind(dim=1)
        return mean, log_scale

    def bits(self, q: list[Tensor]) -> Tensor:
        """The bits of a pyramid of (rounded or proxy) latents, finest first."""
        total = q[0].new_zeros(())
        for i, g in enumerate(q):
            mean, log_scale = self(self.features(g, q[i + 1] if i + 1 < len(q) else None))
            total = total + laplace_bits(g.reshape(-1), mean, log_scale).sum()
        return total

    def layers(self) -> list[nn.Linear]:
        return [self.first, *self.hidden, self.last]


class Upsampling4x4(nn.Module):
    """Learned 2x upsampling, one free 4x4 transposed convolution per stage (bilinear at start), shared by the
    grids passing through: fitted mode version 1."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 4
        self.kernels = nn.Parameter((k[:, None] * k[None, :]).repeat(max(levels - 1, 0), 1, 1))

    def forward(self, grids: list[Tensor]) -> Tensor:
        """Grids finest first -> (1, levels, H, W): every grid at full resolution."""
        x = grids[-1]
        for stage in range(len(grids) - 2, -1, -1):
            c = x.shape[1]
            w = self.kernels[stage].view(1, 1, 4, 4).repeat(c, 1, 1, 1)
            x = F.conv_transpose2d(padded_channels_last(x), w, stride=2, padding=3, groups=c)
            target = grids[stage]
            x = torch.cat([target, x[:, :, : target.shape[2], : target.shape[3]]], dim=1)
        return x


BICUBIC = (-0.0234375, -0.0703125, 0.2265625, 0.8671875)  # half of the 8-tap kernel that upsamples as bicubic does
IDENTITY = (0.0, 0.0, 0.0, 1.0)  # half (and the centre) of the 7-tap pre-filter that changes nothing
UP_CROP = 7  # the first output of the transposed convolution (after padding by 2) that is on the 2x grid


class SeparableUpsampling(nn.Module):
    """Learned 2x upsampling with separable symmetric filters per stage, as Cool-chic's: an 8-tap transposed
    filter (4 parameters, bicubic at start) after a 7-tap pre-filter of the finer grid joining there (4, the
    identity at start). On 256x256 crops of 4 training photos (2 seeds, 1,000 iterations) they lowered the fit's
    cost in 7 of 8 fits, by 3.0 % in geometric mean, and by 2.2 and 6.2 % on 768x512 crops of 2 more
    (`benchmarks/fitted_screen.py`), with 8 parameters a stage where `Upsampling4x4` has 16.

    The parameters (and the file) hold each filter's difference from its start: small numbers, cheap to code
    (the pre-filters' centre taps near 1 cost 9 bits each as themselves)."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        stages = max(levels - 1, 0)
        self.up = nn.Parameter(torch.zeros(stages, 4))
        self.pre = nn.Parameter(torch.zeros(stages, 4))
        self.register_buffer("up_start", torch.tensor(BICUBIC), persistent=False)
        self.register_buffer("pre_start", torch.tensor(IDENTITY), persistent=False)

    def forward(self, grids: list[Tensor]) -> Tensor:
        """Grids finest first -> (1, levels, H, W): every grid at full resolution."""
        x = grids[-1]
        for stage in range(len(grids) - 2, -1, -1):
            x = _upsample(x, self.up_start + self.up[stage])
            target = _prefilter(grids[stage], self.pre_start + self.pre[stage])
            x = torch.cat([target, x[:, :, : target.shape[2], : target.shape[3]]], dim=1)
        return x


def _upsample(x: Tensor, half: Tensor) -> Tensor:
    """2x by the symmetric 8-tap filter `half` + its mirror, as one transposed convolution by the 8x8 outer
    product, channels-last: 13 ms forward and backward for the last stage at 768x512 on 2 CPU cores, where two
    1D passes took 27 ms and polyphase shifted sums 31."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    k = torch.cat([half, half.flip(0)])
    kernel = (k[:, None] * k[None, :]).view(1, 1, 8, 8).repeat(c, 1, 1, 1)
    y = F.conv_transpose2d(pad_edges(x, 2).contiguous(memory_format=torch.channels_last), kernel, stride=2, groups=c)
    return y[:, :, UP_CROP : UP_CROP + 2 * h, UP_CROP : UP_CROP + 2 * w]


def _prefilter(x: Tensor, half: Tensor) -> Tensor:
    """The symmetric 7-tap filter `half` (taps 3 to 0 from the centre, then mirrored) along each row, then column,
    edges replicated, as shifted sums (7 ms at 768x512; a 1-channel conv2d took 29)."""
    h, w = x.shape[2], x.shape[3]
    p = pad_edges(x, 0, 3)
    y = half[3] * p[:, :, :, 3 : 3 + w] + sum(
        half[i] * (p[:, :, :, i : i + w] + p[:, :, :, 6 - i : 6 - i + w]) for i in range(3)
    )
    p = pad_edges(y, 3, 0)
    return half[3] * p[:, :, 3 : 3 + h, :] + sum(
        half[i] * (p[:, :, i : i + h, :] + p[:, :, 6 - i : 6 - i + h, :]) for i in range(3)
    )


UPSAMPLINGS = {UPSAMPLING_4X4: Upsampling4x4, UPSAMPLING_SEPARABLE: SeparableUpsampling}


# The first residual layer's weights start small and random: at zero, as they once started, relu(r1(x)) is 0
# with a zero gradient, so r1 never learned (every fit's r1 was coded as zeros).
R1_INIT_STD = 0.01


class Synthesis(nn.Module):
    def __init__(self, levels: int, width: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(levels, width, 1)
        self.b = nn.Conv2d(width, 3, 1)
        self.r1 = nn.Conv2d(3, 3, 3)  # replicate-padded in forward
        self.r2 = nn.Conv2d(3, 3, 3)
        for layer in (self.r1, self.r2):  # r2 starts as the identity, r1 near it
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.r1.weight, std=R1_INIT_STD)

    def forward(self, x: Tensor) -> Tensor:
        x = pointwise(pointwise(x, self.a).relu_(), self.b)
        x = x + F.relu(self.r1(padded_channels_last(x)))
        return x + self.r2(padded_channels_last(x))


def pointwise(x: Tensor, layer: nn.Conv2d) -> Tensor:
    """A 1x1 convolution of one image as one matrix product over its pixels: (out, in) x (in, H*W).
    On 2 CPU cores at 768x512 the synthesis' two 1x1 layers took 21 ms forward and backward this way, 45 ms
    as convolutions."""
    _, c, h, w = x.shape
    out = torch.addmm(layer.bias[:, None], layer.weight.view(-1, c), x.reshape(c, h * w))
    return out.view(1, -1, h, w)


def padded_channels_last(x: Tensor) -> Tensor:
    """Replicate-padded by 1 for a 3x3 convolution, in channels-last order: a 3-channel 3x3 convolution ran
    2x faster so (oneDNN; 16 vs 36 ms forward and backward at 768x512 on 2 CPU cores)."""
    return pad_edges(x, 1).contiguous(memory_format=torch.channels_last)


class Decoder(nn.Module):
    """Latent pyramid (integer-valued, finest first) -> picture (1, 3, H, W), 0..1 nominal."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.up = UPSAMPLINGS[arch.upsampling](arch.levels)
        self.syn = Synthesis(arch.levels, arch.syn_width)

    def forward(self, q: list[Tensor]) -> Tensor:
        h, w = q[0].shape[2], q[0].shape[3]
        return self.syn(self.up([g / GAIN for g in q]))[:, :, :h, :w]


class Fitted(nn.Module):
    """Everything the encoder fits: latents, context model and decoder."""

    def __init__(self, arch: Architecture, height: int, width: int) -> None:
        super().__init__()
        self.arch = arch
        self.latents = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, h, w)) for h, w in arch.shapes(height, width))
        self.arm = ARM(arch.arm_width, arch.arm_hidden)
        self.decoder = Decoder(arch)

    def forward(self, t: Tensor, noise: Tensor, hard: bool) -> tuple[Tensor, Tensor]:
        """The picture and the latents' bits under the rounding proxy (true rounding if `hard`)."""
        q = [quantize(p * GAIN, t, noise, hard) for p in self.latents]
        return self.decoder(q), self.arm.bits(q)

    def rounded(self) -> list[Tensor]:
        """The latents as the file codes them: integers (int64, (rows, columns) each), finest first."""
        return [torch.round(p.detach() * GAIN)[0, 0].cpu().to(torch.int64) for p in self.latents]
