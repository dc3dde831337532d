"""The autoencoder's latent stages, each one unit for training, refinement, encoding and decoding.

As in CompressAI's latent codecs, every stage keeps its float side (`forward`,
`bits`: relaxed or rounded values and their estimated bits, for training and
refinement) beside its exact side (`quantize` / `compress` on the encoder,
`decompress` / `dequantize` on the decoder: integer symbols, integer
parameters, the coder's sections), so that the two cannot drift apart.

- `FactorizedZ`: the hyper-latent z under a learned per-channel density.
- `HyperpriorY`: y given z: mean and scale from the hyper-synthesis h_s, and,
  when the model has one, the checkerboard context's correction after the
  anchors (`two_passes`, the one place the checkerboard is written).

The exact side works in fixed point: means and scales are Q8 integers (before
the gain) from the integer networks, gains are Q16 (`gains`), and the table
of each y symbol is chosen by comparing the exact Q24 product scale x gain
with integer thresholds. Only the symbols' float reconstruction for the
synthesis (`dequantize`) leaves the integers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..entropy.coder import SectionDecoder
from ..entropy.densities import FactorizedDensity, gaussian_likelihood
from ..entropy.intnet import OUT_FRAC_BITS, OUT_MAX, IntContext, IntHyperSynthesis
from ..entropy.tables import SCALE_FRAC_BITS, TableSet
from .gains import GAIN_FRAC_BITS
from .layers import conv, deconv

Section = tuple[np.ndarray, np.ndarray, TableSet]  # symbols, table ids, tables: one `encode_sections` item
# A pass of the checkerboard: (mean, scale, positions it must produce, None: all) -> values
Quantize = Callable[[Tensor, Tensor, Tensor | None], Tensor]
# The context: (mean, scale, values whose anchors are known) -> mean and scale of every position
Correct = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def anchor_mask(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """(1, 1, height, width) bool: the checkerboard's anchors, coded first ((row + column) even)."""
    rows = torch.arange(height, device=device).view(-1, 1)
    cols = torch.arange(width, device=device).view(1, -1)
    return ((rows + cols) % 2 == 0).view(1, 1, height, width)


def two_passes(
    mean: Tensor, scale: Tensor, quantize: Quantize, correct: Correct | None
) -> tuple[Tensor, Tensor, Tensor]:
    """The checkerboard (He et al. 2021), the same for training, refinement, encoding and decoding.

    The anchors are quantized (rounded, relaxed or entropy-decoded) with the
    hyperprior's mean and scale; from them the context corrects the mean and
    scale of the other half, which is quantized second. Two passes, not one
    per latent, so decoding stays parallel. Without a context (correct=None),
    one pass over every position. Returns the mean and scale each latent is
    coded with and the quantized values.
    """
    if correct is None:
        return mean, scale, quantize(mean, scale, None)
    anchors = anchor_mask(mean.shape[2], mean.shape[3], mean.device)
    first = quantize(mean, scale, anchors)
    new_mean, new_scale = correct(mean, scale, first)
    mean, scale = torch.where(anchors, mean, new_mean), torch.where(anchors, scale, new_scale)
    del new_mean, new_scale  # a large photo's full-size arrays: free them before the second pass
    return mean, scale, torch.where(anchors, first, quantize(mean, scale, ~anchors))


def _parts(shape: tuple[int, ...], context: bool) -> list[np.ndarray | None]:
    """The positions of y each coded section holds, in order: all of them, or anchors then the rest."""
    if not context:
        return [None]
    anchors = np.broadcast_to(anchor_mask(shape[2], shape[3]).numpy(), shape)
    return [anchors, ~anchors]


class HyperSynthesis(nn.Sequential):
    """h_s: z -> (mean, scale) of y. Mirrored bit-exactly by `entropy.intnet.IntHyperSynthesis`."""

    def __init__(self, nz: int, nh0: int, nh: int, m: int) -> None:
        super().__init__(deconv(nz, nh0, 5, 2), nn.ReLU(), deconv(nh0, nh, 5, 2), nn.ReLU(), conv(nh, 2 * m, 3, 1))


class CheckerboardContext(nn.Module):
    """From the decoded anchors (a 5x5 neighbourhood), corrections of the other latents' mean and scale.

    Mirrored bit-exactly by `entropy.intnet.IntContext`.
    """

    def __init__(self, m: int, nc: int) -> None:
        super().__init__()
        self.conv = conv(m, nc, 5, 1)
        self.out = conv(nc, 2 * m, 1, 1)

    def forward(self, y_anchors: Tensor) -> Tensor:
        """Un-gained decoded anchors (zero elsewhere) -> (mean, scale) corrections, every position."""
        return self.out(F.relu(self.conv(y_anchors)))


@dataclass
class FactorizedZ:
    """The hyper-latent z under its learned per-channel density (Balle et al. 2018); no parameters to predict."""

    density: FactorizedDensity
    tables: TableSet | None = None  # one integer table per channel; None: training only

    # -- float: training and refinement --
    def bits(self, z: Tensor) -> Tensor:
        """Estimated bits of each (relaxed or rounded) z."""
        return -torch.log2(self.density.likelihood(z))

    # -- exact: encoding and decoding --
    @staticmethod
    def _channel(shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[1]).reshape(1, -1, 1, 1), shape)

    def compress(self, z: Tensor) -> Section:
        """Integer z -> its section: each channel coded with its own table."""
        assert self.tables is not None
        return z.numpy(), self._channel(tuple(z.shape)), self.tables

    def decompress(self, dec: SectionDecoder, height: int, width: int) -> Tensor:
        """The mirror of `compress`: z (1, channels, height, width) as int64."""
        assert self.tables is not None
        shape = (1, int(self.tables.lengths.shape[0]), height, width)
        return torch.from_numpy(dec.decode(self._channel(shape), self.tables))


@dataclass
class ExactY:
    """What the exact side of `HyperpriorY` needs: the integer networks and the Gaussian tables."""

    hyper: IntHyperSynthesis
    context: IntContext | None  # None: y is coded in one pass, from the hyperprior alone
    tables: TableSet
    thresholds: Tensor  # int64 Q24 boundaries between the tables' scales


@dataclass
class HyperpriorY:
    """y as a quantized Gaussian around a mean, with mean and scale from z (Minnen et al. 2018),
    refined by the checkerboard context after the anchors when the model has one.

    Symbols are the gained y rounded around its gained mean: v = round(y * gain - mean * gain).
    """

    h_s: nn.Module
    context: nn.Module | None
    exact: ExactY | None = None  # None: training only

    # -- float: training and refinement --
    def forward(
        self, z_hat: Tensor, gain: Tensor, quantize: Callable[[Tensor], Tensor], size: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Symbols of y and the gained mean and scale they are coded with.

        quantize(mean_g) -> the gained y's residual around mean_g, rounded or
        relaxed (straight-through rounding in training, annealed stochastic
        rounding in refinement); size: y's (rows, columns), to which h_s's output is cut.
        """
        mean, scale = self.h_s(z_hat).chunk(2, dim=1)
        mean, scale = mean[:, :, : size[0], : size[1]], scale[:, :, : size[0], : size[1]]

        def step(m: Tensor, s: Tensor, part: Tensor | None) -> Tensor:
            return quantize(m * gain)

        correct = None
        if self.context is not None:
            context = self.context

            def correct(m: Tensor, s: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
                d_mean, d_scale = context(self.decoded_anchors(v, m, gain)).chunk(2, dim=1)
                return m + d_mean, s + d_scale

        mean, scale, v = two_passes(mean, scale, step, correct)
        return v, mean * gain, scale * gain

    @staticmethod
    def decoded_anchors(v: Tensor, mean: Tensor, gain: Tensor) -> Tensor:
        """What the float context reads: the anchors of symbols v decoded and un-gained, zero elsewhere."""
        return (v / gain + mean) * anchor_mask(v.shape[2], v.shape[3], v.device)

    @staticmethod
    def bits(v: Tensor, scale_g: Tensor) -> Tensor:
        """Estimated bits of each (relaxed or rounded) symbol v under its gained scale."""
        return -torch.log2(gaussian_likelihood(v, scale_g))

    # -- exact: encoding and decoding --
    def params(self, z: Tensor, height: int, width: int, reference: bool = False) -> tuple[Tensor, Tensor]:
        """Exact Q8 mean and scale of every y latent (before gains) from integer z, cut to y's size."""
        assert self.exact is not None
        mean_q, scale_q = self.exact.hyper(z, reference=reference)
        return mean_q[:, :, :height, :width], scale_q[:, :, :height, :width]

    def _exact_correct(self, gain_q: Tensor, reference: bool) -> Correct | None:
        """The integer context: decoded anchors (fixed point, un-gained) -> corrected Q8 mean and scale."""
        assert self.exact is not None
        context = self.exact.context
        if context is None:
            return None

        def correct(mean_q: Tensor, scale_q: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
            anchors = anchor_mask(v.shape[2], v.shape[3])
            decoded = torch.where(anchors, ungained(v, mean_q, gain_q, context.frac_bits), 0)
            d_mean, d_scale = context(decoded, reference=reference)
            return (mean_q + d_mean).clamp(-OUT_MAX, OUT_MAX), (scale_q + d_scale).clamp(-OUT_MAX, OUT_MAX)

        return correct

    def quantize(self, y: Tensor, mean_q: Tensor, scale_q: Tensor, gain_q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The encoder's symbols of float y at the gains gain_q, with the Q8 mean and scale they are coded with."""
        gain = _gain(gain_q)

        def step(m: Tensor, s: Tensor, part: Tensor | None) -> Tensor:  # float64 y only while it is rounded
            return torch.round(y.to(torch.float64) * gain - gained_mean(m, gain_q)).to(torch.int64)

        mean_q, scale_q, v = two_passes(mean_q, scale_q, step, self._exact_correct(gain_q, reference=False))
        return v, mean_q, scale_q

    def compress(self, v: Tensor, scale_q: Tensor, gain_q: Tensor) -> list[Section]:
        """Symbols -> their sections (one, or the anchors' and the rest's)."""
        assert self.exact is not None
        idx = self.table_index(scale_q, gain_q)
        v_np = v.numpy()
        parts = _parts(v_np.shape, self.exact.context is not None)
        return [(v_np if p is None else v_np[p], idx if p is None else idx[p], self.exact.tables) for p in parts]

    def decompress(
        self, dec: SectionDecoder, mean_q: Tensor, scale_q: Tensor, gain_q: Tensor, reference: bool = False
    ) -> tuple[Tensor, Tensor]:
        """The mirror of `quantize` + `compress`: symbols and the Q8 mean they were coded around."""
        assert self.exact is not None
        tables = self.exact.tables

        def step(m: Tensor, s: Tensor, part: Tensor | None) -> Tensor:
            idx = self.table_index(s, gain_q)
            out = np.zeros(idx.shape, dtype=np.int64)
            if part is None:
                out[...] = dec.decode(idx, tables)
            else:
                mask = np.broadcast_to(part.numpy(), idx.shape)
                out[mask] = dec.decode(idx[mask], tables)
            return torch.from_numpy(out)

        mean_q, _, v = two_passes(mean_q, scale_q, step, self._exact_correct(gain_q, reference))
        return v, mean_q

    @staticmethod
    def dequantize(v: Tensor, mean_q: Tensor, gain_q: Tensor) -> Tensor:
        """Symbols -> float32 y_hat = (v + mean * gain) / gain, the synthesis' input."""
        return ((v.to(torch.float64) + gained_mean(mean_q, gain_q)) / _gain(gain_q)).float()

    def table_index(self, scale_q: Tensor, gain_q: Tensor) -> np.ndarray:
        """The table of every y symbol: the exact gained scale (Q24) against the integer thresholds."""
        assert self.exact is not None
        g = gain_q.view(1, -1, 1, 1)
        return torch.searchsorted(self.exact.thresholds, (scale_q.clamp_min(0) * g).contiguous(), right=True).numpy()


def _gain(gain_q: Tensor) -> Tensor:
    """The Q16 gains as float64, shaped to broadcast over y."""
    return gain_q.view(1, -1, 1, 1).to(torch.float64) / 2.0**GAIN_FRAC_BITS


def gained_mean(mean_q: Tensor, gain_q: Tensor) -> Tensor:
    """mean * gain in float64, exactly (a Q24 integer product below 2**53, scaled by a power of two)."""
    return (mean_q * gain_q.view(1, -1, 1, 1)).to(torch.float64) / 2.0**SCALE_FRAC_BITS


def ungained(v: Tensor, mean_q: Tensor, gain_q: Tensor, frac_bits: int) -> Tensor:
    """Decoded y before the gain, v / gain + mean, exactly, in units of 2**-frac_bits (rounded)."""
    g = gain_q.view(1, -1, 1, 1)
    num = v.to(torch.int64) << (GAIN_FRAC_BITS + frac_bits)
    y_q = torch.div(2 * num + g, 2 * g, rounding_mode="floor")
    if frac_bits >= OUT_FRAC_BITS:
        return y_q + (mean_q << (frac_bits - OUT_FRAC_BITS))
    return y_q + ((mean_q + (1 << (OUT_FRAC_BITS - 1 - frac_bits))) >> (OUT_FRAC_BITS - frac_bits))
