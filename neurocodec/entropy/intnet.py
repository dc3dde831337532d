"""Integer-exact networks: the parts of a decoder the entropy coder depends on.

Encoder and decoder must derive the very same mean and scale for every
latent, on any machine, thread count or device; a float network does not
(its sums are reordered by BLAS and oneDNN). So such a network (the
autoencoder's hyper-synthesis h_s and its context model) is exported with 8-bit
weights and 16-bit activations, all integers, and evaluated either

* as float64 convolutions on integer-valued tensors: every product and every
  partial sum is an integer below 2**53, hence exact in any summation order
  (fast: the ordinary torch kernels), or
* with int64 arithmetic only (`reference=True`), a slow path used by the
  tests to prove the first one exact.

Each layer: acc = conv(x, w) + bias (integers), then requantisation
out = (acc * mult + 2**(shift-1)) >> shift per output channel, then ReLU and
clamping to int16 for hidden layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

ACT_MAX = 2**15 - 1  # hidden activations are int16
OUT_MAX = 2**20  # final outputs (Q8 mean and scale) are clamped to +-2**20
WEIGHT_MAX = 127  # weights are int8
OUT_FRAC_BITS = 8  # final layer: mean and scale in units of 1/256
MULT_BITS = 22  # requantisation multipliers stay below 2**22


@dataclass
class IntLayer:
    """One integer convolution (or transposed convolution) with requantisation."""

    weight: Tensor  # int64; conv: (cout, cin, k, k); deconv: (cin, cout, k, k)
    bias: Tensor  # int64 (cout,), in accumulator units
    mult: Tensor  # int64 (cout,)
    shift: int
    stride: int
    transposed: bool
    relu: bool

    def to_dict(self) -> dict:
        return {
            "weight": self.weight.to(torch.int8),
            "bias": self.bias,
            "mult": self.mult,
            "shift": self.shift,
            "stride": self.stride,
            "transposed": self.transposed,
            "relu": self.relu,
        }

    @classmethod
    def from_dict(cls, d: dict) -> IntLayer:
        return cls(
            d["weight"].to(torch.int64),
            d["bias"].to(torch.int64),
            d["mult"].to(torch.int64),
            int(d["shift"]),
            int(d["stride"]),
            bool(d["transposed"]),
            bool(d["relu"]),
        )

    @property
    def kernel(self) -> int:
        return self.weight.shape[-1]

    def accumulate(self, x: Tensor, reference: bool = False) -> Tensor:
        """Integer conv(x, w) + bias, as int64."""
        if reference:
            acc = _int64_conv(x, self.weight, self.stride, self.transposed)
        else:
            acc = _float64_conv(x, self.weight, self.stride, self.transposed)
        return acc + self.bias.view(1, -1, 1, 1)

    def __call__(self, x: Tensor, reference: bool = False) -> Tensor:
        acc = self.accumulate(x, reference)
        out = (acc * self.mult.view(1, -1, 1, 1) + (1 << (self.shift - 1))) >> self.shift
        if self.relu:
            return out.clamp(0, ACT_MAX)
        return out.clamp(-OUT_MAX, OUT_MAX)


def _float64_conv(x: Tensor, w: Tensor, stride: int, transposed: bool) -> Tensor:
    k = w.shape[-1]
    xd, wd = x.to(torch.float64), w.to(torch.float64)
    if transposed:
        y = F.conv_transpose2d(xd, wd, stride=stride, padding=k // 2, output_padding=stride - 1)
    else:
        y = F.conv2d(xd, wd, stride=stride, padding=k // 2)
    return y.to(torch.int64)  # exact: integer values below 2**53


def _int64_conv(x: Tensor, w: Tensor, stride: int, transposed: bool) -> Tensor:
    """Direct integer convolution, one kernel tap at a time (slow, obviously exact)."""
    k = w.shape[-1]
    p = k // 2
    if transposed:
        # A transposed conv is a conv of the zero-stuffed input with the flipped,
        # channel-swapped kernel, padded by k-1-p (plus output_padding on the far side).
        b, c, h, wd = x.shape
        up = torch.zeros((b, c, (h - 1) * stride + 1, (wd - 1) * stride + 1), dtype=torch.int64)
        up[:, :, ::stride, ::stride] = x
        w = w.flip(-1, -2).transpose(0, 1)
        lo, hi = k - 1 - p, k - 1 - p + stride - 1
        x = F.pad(up, (lo, hi, lo, hi))
        stride = 1
    else:
        x = F.pad(x, (p, p, p, p))
    b, _, h, wd = x.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    out = torch.zeros((b, w.shape[0], oh, ow), dtype=torch.int64)
    for dy in range(k):
        for dx in range(k):
            patch = x[:, :, dy : dy + stride * (oh - 1) + 1 : stride, dx : dx + stride * (ow - 1) + 1 : stride]
            out += torch.einsum("bchw,oc->bohw", patch, w[:, :, dy, dx])
    return out


BAND_ROWS = 32


def _in_bands(layers: list[IntLayer], x: Tensor, reference: bool, rows: int = BAND_ROWS) -> Tensor:
    """Stride-1 convolutions over x, `rows` output rows at a time, identical to one pass.

    Each band reads as many extra rows on either side as the layers' kernels
    reach, so the rows it keeps saw exactly the neighbours (or, at the
    image's own edges, the zero padding) that a single pass sees.
    """
    if not layers:
        return x
    halo = sum(layer.kernel // 2 for layer in layers)
    height = x.shape[2]
    out = None
    for top in range(0, height, rows):
        lo, hi = max(0, top - halo), min(height, top + rows + halo)
        band = x[:, :, lo:hi]
        for layer in layers:
            band = layer(band, reference)
        if out is None:
            out = torch.empty((x.shape[0], band.shape[1], height, x.shape[3]), dtype=band.dtype)
        out[:, :, top : min(height, top + rows)] = band[:, :, top - lo : top - lo + min(rows, height - top)]
    return out


class IntChain:
    """Integer layers in a row whose output splits into two halves: means and scales (Q8)."""

    def __init__(self, layers: list[IntLayer]) -> None:
        self.layers = layers

    def __call__(self, x: Tensor, reference: bool = False) -> tuple[Tensor, Tensor]:
        x = x.to(torch.int64).clamp(-ACT_MAX, ACT_MAX)
        # The trailing stride-1 convolutions (the whole context; h_s's last layer)
        # run in bands of rows: their full-size float64 and int64 temporaries
        # would take gigabytes on a large photo.
        split = len(self.layers)
        while split and self.layers[split - 1].stride == 1 and not self.layers[split - 1].transposed:
            split -= 1
        for layer in self.layers[:split]:
            x = layer(x, reference)
        x = _in_bands(self.layers[split:], x, reference)
        first, second = x.chunk(2, dim=1)
        return first, second

    def to_list(self) -> list[dict]:
        return [layer.to_dict() for layer in self.layers]


class IntHyperSynthesis(IntChain):
    """h_s evaluated exactly: integer z (B, nz, h, w) -> Q8 mean and scale (B, m, 4h, 4w)."""

    @classmethod
    def from_list(cls, items: list[dict]) -> IntHyperSynthesis:
        return cls([IntLayer.from_dict(d) for d in items])


class IntContext(IntChain):
    """The checkerboard context evaluated exactly: fixed-point anchors -> Q8 mean and scale corrections.

    Input: the decoded anchors, un-gained, as integers in units of
    2**-frac_bits, zero at the other positions (see `autoencoder.latent_codecs`). Output: Q8
    corrections of every position's mean and scale; the caller keeps those of
    the non-anchors.
    """

    def __init__(self, layers: list[IntLayer], frac_bits: int) -> None:
        super().__init__(layers)
        self.frac_bits = frac_bits

    def to_dict(self) -> dict:
        return {"frac_bits": self.frac_bits, "layers": self.to_list()}

    @classmethod
    def from_dict(cls, d: dict) -> IntContext:
        return cls([IntLayer.from_dict(x) for x in d["layers"]], int(d["frac_bits"]))


def _quantize_convs(convs: list, x_float: Tensor, s_in: float) -> list[IntLayer]:
    """Fixed-point layers for a chain of float convolutions (ReLU between them).

    x_float: typical real inputs of the first layer; s_in: the real value of
    one unit of its integer input. Per-output-channel int8 weight scales;
    hidden activation scales from the largest activation seen, with headroom;
    the last layer outputs Q8 (`OUT_FRAC_BITS`).
    """
    layers: list[IntLayer] = []
    for i, m in enumerate(convs):
        last = i == len(convs) - 1
        transposed = isinstance(m, torch.nn.ConvTranspose2d)
        w = m.weight.detach().double()
        b = m.bias.detach().double()
        # Output channel axis: 0 for conv, 1 for transposed conv.
        per_out = w.abs().amax(dim=(1, 2, 3) if not transposed else (0, 2, 3))
        # A channel with tiny (or no) weights borrows a coarser scale, so that its
        # bias and requantisation multiplier stay in range (a grown model has such rows).
        per_out = per_out.clamp_min(max(float(per_out.max()), 1e-12) * 2.0**-8)
        sw = per_out / WEIGHT_MAX
        shape = (-1, 1, 1, 1) if not transposed else (1, -1, 1, 1)
        w_int = torch.round(w / sw.view(shape)).to(torch.int64)
        acc_scale = s_in * sw  # real value of one accumulator unit, per output channel
        b_int = torch.round(b / acc_scale).to(torch.int64)
        # Float reference activations of this layer decide the output scale.
        stride = m.stride[0]
        if transposed:
            y = F.conv_transpose2d(x_float, w, b, stride=stride, padding=m.padding, output_padding=m.output_padding)
        else:
            y = F.conv2d(x_float, w, b, stride=stride, padding=m.padding)
        if last:
            s_out = 2.0**-OUT_FRAC_BITS
        else:
            y = y.clamp_min(0)
            s_out = max(float(y.max()) * 1.5, 1e-3) / ACT_MAX
        ratio = acc_scale / s_out
        shift = int(MULT_BITS - 1 - torch.ceil(torch.log2(ratio.max())).item())
        shift = max(1, min(shift, 62))
        mult = torch.round(ratio * 2.0**shift).to(torch.int64).clamp_min(1)
        layers.append(IntLayer(w_int, b_int, mult, shift, stride, transposed, relu=not last))
        x_float = y
        s_in = s_out
    return layers


def _convs(module: torch.nn.Module) -> list:
    return [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]


@torch.no_grad()
def quantize_hyper_synthesis(h_s: torch.nn.Sequential, z_samples: Tensor) -> IntHyperSynthesis:
    """Fixed-point version of a float h_s, calibrated on typical z (integers)."""
    return IntHyperSynthesis(_quantize_convs(_convs(h_s), z_samples.double(), 1.0))


CONTEXT_MAX_FRAC_BITS = 12


@torch.no_grad()
def quantize_context(context: torch.nn.Module, anchor_samples: Tensor) -> IntContext:
    """Fixed-point version of a float context model, calibrated on typical decoded anchors (un-gained).

    The input's fixed-point precision is the finest that keeps the largest
    sample, with headroom, inside int16.
    """
    peak = max(float(anchor_samples.abs().max()) * 1.5, 1e-3)
    frac_bits = int(min(max(int(torch.floor(torch.log2(torch.tensor(ACT_MAX / peak)))), 0), CONTEXT_MAX_FRAC_BITS))
    x = torch.round(anchor_samples.double() * 2.0**frac_bits) * 2.0**-frac_bits
    return IntContext(_quantize_convs(_convs(context), x, 2.0**-frac_bits), frac_bits)
