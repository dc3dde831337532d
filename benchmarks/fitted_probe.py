"""Probe for issue 17: how far does a per-image fitted codec (Cool-chic family) get on these CPUs?

    python benchmarks/fitted_probe.py IMAGES... [--crop 256] [--iterations 4000] [--lambdas 0.004,0.001]

A measurement, not the codec: for each crop and lambda it fits a 7-level latent
pyramid (one channel per level, 1/1 to 1/64), a causal context model (ARM: a
small MLP on 10 causal neighbours of the same level plus the co-located value of
the next coarser level, Laplace output), learned 2x upsampling (one separable-free
4x4 transposed convolution per stage, bilinear at start) and a small synthesis
(1x1 7->16->3, two residual 3x3 layers), after the published recipe
(Cool-chic 4.2/5.0, C3): Adam at 1e-2 with cosine decay. The rounding proxy
(`--proxy soft`, the default) is C3's: soft rounding, Gaussian noise, soft
rounding again, annealed, then a last phase of true rounding in which the
latents stay as rounded and the networks learn them; `--proxy noise` is the
autoencoder's (straight-through rounding for what the decoder sees, uniform
noise for the rate). Rates are the context
model's own estimate of the rounded latents (what an ideal arithmetic coder
would write) plus the network parameters, quantised with the power-of-two step
that costs least (their bits from a per-tensor Laplace estimate). Nothing here
is exact integer arithmetic yet, and nothing is written to a file: the numbers
say what the recipe can reach, not what a .nic file of it costs.

Prints bpp / PSNR per crop and lambda, and the bits JPEG, WebP and AVIF (Pillow)
and nic's autoencoder need for the same PSNR on the same crop.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

# What `fit` does with its defaults, for results files: change it whenever the defaults change.
RECIPE = (
    "c3x-soft-2: 7 levels, ARM 16 (10 causal + coarser), 4x4 learned up, syn 16; softround+gauss, "
    "last 10% hard, latents frozen, networks at 1e-3 cosine"
)
LEVELS = 7
GAIN = 16.0  # latents are fitted at 1/GAIN scale (Cool-chic's encoder gain): Adam's steps stay small
# Causal neighbours of the same level, nearest first: (row, column) offsets.
CONTEXT = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-1, -2), (-1, 2), (-2, -1), (-2, 1))


def soft_round(x: Tensor, t: float | Tensor) -> Tensor:
    """Agustsson & Theis (2020): a differentiable rounding that hardens as t falls."""
    t = torch.as_tensor(t)
    m = torch.floor(x) + 0.5
    return m + torch.tanh((x - m) / t) / (2 * torch.tanh(0.5 / t))


def quantize(x: Tensor, t: float, noise: float, hard: bool) -> Tensor:
    """Soft rounding, Gaussian noise of standard deviation `noise`, soft rounding again (C3, Cool-chic's
    c3x preset); `hard`: true rounding, straight through."""
    if hard:
        return x + (torch.round(x) - x).detach()
    return soft_round(soft_round(x, t) + noise * torch.randn_like(x), t)


def laplace_bits(x: Tensor, mu: Tensor, b: Tensor, floor: float = 2.0**-16) -> Tensor:
    """-log2 P(x) of integers x under a Laplace (mean mu, scale b) integrated over [x - 1/2, x + 1/2]."""

    def cdf(v: Tensor) -> Tensor:
        z = (v - mu) / b
        return 0.5 + 0.5 * torch.sign(z) * (1 - torch.exp(-z.abs()))

    return -torch.log2((cdf(x + 0.5) - cdf(x - 0.5)).clamp_min(floor))


class ARM(nn.Module):
    """The context model: a residual MLP over causal neighbours, shared by all levels."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        n = len(CONTEXT) + 1
        self.inp = nn.Linear(n, width)
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def context(self, q: Tensor, coarser: Tensor | None) -> Tensor:
        """(H*W, len(CONTEXT) + 1) features: the causal neighbours (zero outside) and the coarser level."""
        pad = F.pad(q, (2, 2, 2, 0))
        h, w = q.shape[2], q.shape[3]
        feats = [pad[:, :, 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w] for dy, dx in CONTEXT]
        feats.append(torch.zeros_like(q) if coarser is None else F.interpolate(coarser, size=(h, w), mode="nearest"))
        return torch.cat(feats, dim=1).permute(0, 2, 3, 1).reshape(-1, len(feats))

    def forward(self, q: Tensor, coarser: Tensor | None, at: Tensor) -> Tensor:
        """Bits of `at` (q itself, or q's noisy stand-in) given the context of the decoded values q."""
        x = F.relu(self.inp(self.context(q, coarser)))
        x = x + F.relu(self.hidden(x))
        mu, log_scale = self.out(x).float().unbind(dim=1)  # rates in float32, also under bfloat16 autocast
        return laplace_bits(at.reshape(-1), mu, torch.exp((log_scale + 1.0).clamp(-5, 5))).sum()  # at most 16 bits


class Upsampling(nn.Module):
    """Learned 2x upsampling, one 4x4 transposed convolution per stage (bilinear at start), for every grid."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 4
        self.kernels = nn.Parameter((k[:, None] * k[None, :]).repeat(LEVELS - 1, 1, 1))

    def forward(self, grids: list[Tensor]) -> Tensor:
        """Grids finest first -> (1, LEVELS, H, W): every grid at full resolution."""
        x = grids[-1]
        for stage in range(LEVELS - 2, -1, -1):
            c = x.shape[1]
            w = self.kernels[stage].view(1, 1, 4, 4).repeat(c, 1, 1, 1)
            x = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w, stride=2, padding=3, groups=c)
            target = grids[stage]
            x = torch.cat([target, x[:, :, : target.shape[2], : target.shape[3]]], dim=1)
        return x


class Synthesis(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.a = nn.Conv2d(LEVELS, width, 1)
        self.b = nn.Conv2d(width, 3, 1)
        self.r1 = nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate")
        self.r2 = nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate")
        for layer in (self.r1, self.r2):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.b(F.relu(self.a(x)))
        x = x + F.relu(self.r1(x))
        return x + self.r2(x)


class Fitted(nn.Module):
    def __init__(self, height: int, width: int, arm_width: int = 16, syn_width: int = 16) -> None:
        super().__init__()
        self.latents = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, -(-height // 2**i), -(-width // 2**i))) for i in range(LEVELS)
        )
        self.arm, self.up, self.syn = ARM(arm_width), Upsampling(), Synthesis(syn_width)

    def forward(self, t: float, noise: float, hard: bool, proxy: str = "noise") -> tuple[Tensor, Tensor]:
        """The picture and the latents' bits. proxy "noise": the decoder's values (context and synthesis) are
        rounded straight-through and the rate is taken at y + U(-1/2, 1/2); "soft": soft rounding with
        annealed noise for both (Cool-chic's proxy, as read from its code); hard: true rounding everywhere."""
        raw = [p * GAIN for p in self.latents]
        if hard or proxy == "noise":
            q = [quantize(r, t, noise, hard=True) for r in raw]
            at = q if hard else [r + torch.rand_like(r) - 0.5 for r in raw]
        else:
            q = at = [quantize(r, t, noise, hard=False) for r in raw]
        bits = sum(self.arm(q[i], q[i + 1] if i + 1 < LEVELS else None, at[i]) for i in range(LEVELS))
        h, w = q[0].shape[2], q[0].shape[3]
        x = self.syn(self.up([g / GAIN for g in q]))[:, :, :h, :w]
        return x, bits


def network_bits(model: Fitted, lam: float, x: Tensor) -> tuple[float, float]:
    """Quantise every network tensor with the power-of-two step that costs least (D + lambda R, one tensor
    at a time); returns (bits of the parameters, MSE of the picture with them) and leaves them quantised."""
    total = 0.0
    with torch.no_grad():
        for module in (model.arm, model.up, model.syn):
            for p in module.parameters():
                original = p.detach().clone()
                best = None
                for k in range(4, 17):
                    step = 2.0**-k
                    v = torch.round(original / step)
                    scale = max(float(v.std()) / math.sqrt(2), 0.1) if v.numel() > 1 else max(float(v.abs()), 0.1)
                    bits = float(laplace_bits(v, torch.zeros_like(v), torch.full_like(v, scale), 2.0**-40).sum())
                    bits += 8  # the step and the scale, coded beside the tensor
                    p.copy_(v * step)
                    out, _ = model(0.1, 0.0, hard=True)
                    mse = float((out.clamp(0, 1) - x).square().mean())
                    cost = mse + lam * bits / (x.shape[2] * x.shape[3])
                    if best is None or cost < best[0]:
                        best = (cost, bits, v * step)
                p.copy_(best[2])
                total += best[1]
        out, _ = model(0.1, 0.0, hard=True)
    return total, float((out.clamp(0, 1) - x).square().mean())


def fit(
    x: Tensor,
    lam: float,
    iterations: int,
    log_every: int = 0,
    proxy: str = "soft",
    widths: tuple[int, int] = (16, 16),
    hard_lr: float = 1e-3,
    hard_fraction: float = 0.1,
    bf16: bool = False,
    compiled: bool = False,
) -> dict:
    """Fit one crop (1, 3, H, W in [0, 1]) for the published loss, MSE (0..1) + lambda * bits per pixel."""
    torch.manual_seed(0)
    h, w = x.shape[2], x.shape[3]
    model = Fitted(h, w, *widths)
    nets = [p for m in (model.arm, model.up, model.syn) for p in m.parameters()]
    opt = torch.optim.Adam([{"params": list(model.latents)}, {"params": nets}], lr=1e-2)
    # Soft rounding ends with true rounding (c3x: 1,500 of 100,000 iterations): latents fixed, networks at hard_lr.
    main = iterations if proxy == "noise" else iterations - min(1500, int(iterations * hard_fraction))

    def objective(t: Tensor, noise: Tensor, hard: bool) -> tuple[Tensor, Tensor, Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, bits = model(t, noise, hard, proxy)
        mse = (out.float() - x).square().mean()
        return mse + lam * bits / (h * w), bits, mse

    step = torch.compile(objective) if compiled else objective
    start = time.perf_counter()
    soft_phase = (math.nan, math.nan)  # the rate estimate at the end of the soft phase, and the true one then
    bits = torch.zeros(())
    for it in range(iterations):
        hard = it >= main
        frac = min(it / max(main, 1), 1.0)
        t = 0.3 - 0.2 * frac  # soft rounding 0.3 -> 0.1 (Cool-chic 4.2)
        noise = 0.25 - 0.15 * frac  # noise 0.25 -> 0.1
        if hard:  # the latents stay as rounded; the networks learn them as they are, hard_lr cosine to 1/10
            tail = (it - main) / max(iterations - main, 1)
            lrs = (0.0, hard_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * tail))))
            if it == main:
                with torch.no_grad():
                    _, estimate = model(0.1, 0.0, hard=True)
                soft_phase = (float(bits.detach()) / (h * w), float(estimate) / (h * w))
        else:
            lrs = (1e-5 + (1e-2 - 1e-5) * 0.5 * (1 + math.cos(math.pi * frac)),) * 2
        for g, lr in zip(opt.param_groups, lrs, strict=True):
            g["lr"] = lr
        loss, bits, mse = step(torch.tensor(t), torch.tensor(noise), hard)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if log_every and it % log_every == 0:
            print(f"  it {it} loss {loss.item():.5f} bpp {bits.item() / (h * w):.3f} mse {mse.item():.6f}", flush=True)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        _, latent_bits = model(0.1, 0.0, hard=True)
    net_bits, mse = network_bits(model, lam, x)
    return {
        "bpp": (float(latent_bits) + net_bits) / (h * w),
        "latent_bpp": float(latent_bits) / (h * w),
        "net_bpp": net_bits / (h * w),
        "psnr": 10 * math.log10(1 / mse),
        "seconds": seconds,
        "ms_per_iteration": 1000 * seconds / iterations,
        "soft_estimate_bpp": soft_phase[0],
        "rounded_bpp_after_soft": soft_phase[1],
    }


def centre_crop(path: str | Path, crop: int | str) -> Image.Image:
    """The centre crop of a photo, RGB: N (a square) or 'WxH' (upright for an upright photo)."""
    cw, ch = (int(v) for v in crop.split("x")) if isinstance(crop, str) else (crop, crop)
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if h > w:
            cw, ch = ch, cw
        left, top = (w - cw) // 2, (h - ch) // 2
        return im.crop((left, top, left + cw, top + ch))


def to_tensor(image: Image.Image) -> Tensor:
    """(1, 3, H, W) in [0, 1]: what `fit` takes."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def reference_curve(codec: str, image: Image.Image) -> list[tuple[float, float]]:
    """(bpp, PSNR) points of a Pillow codec (jpeg, webp, avif: `nic bench`'s settings) or of nic's autoencoder
    at an effort (nic-e0, nic-e3) on this image, real file sizes."""
    from neurocodec.bench import SWEEPS, reference_decode, reference_encode
    from neurocodec.metrics import psnr

    a = np.asarray(image)
    pixels = a.shape[0] * a.shape[1]
    curve = []
    if codec.startswith("nic"):
        import neurocodec

        effort = int(codec[-1])
        for q in np.linspace(0, 100, 15 if effort == 0 else 8):
            data = neurocodec.encode(a, quality=float(q), effort=effort)
            curve.append((8 * len(data) / pixels, psnr(np.asarray(neurocodec.decode(data)), a)))
    else:
        for v in SWEEPS[codec]:
            data = reference_encode(codec, image, v)
            curve.append((8 * len(data) / pixels, psnr(np.asarray(reference_decode(data)), a)))
    return curve


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--crop", default=256, show_default=True, help="Centre crop size (pixels).")
@click.option("--iterations", default=4000, show_default=True)
@click.option("--lambdas", default="0.004,0.001", show_default=True, help="Lambdas of MSE (0..1 scale) + lambda bpp.")
@click.option("--threads", default=2, show_default=True)
@click.option("--log-every", default=0, help="Print the loss every N iterations.")
@click.option(
    "--proxy", type=click.Choice(["noise", "soft"]), default="soft", show_default=True, help="Rounding proxy."
)
@click.option("--arm-width", default=16, show_default=True, help="Hidden width of the context model.")
@click.option("--bf16", is_flag=True, help="bfloat16 autocast for the networks (rates stay float32).")
@click.option("--compile", "compiled", is_flag=True, help="torch.compile the loss.")
@click.option("--hard-lr", default=1e-3, show_default=True, help="Learning rate of the last, truly rounded phase.")
@click.option("--hard-fraction", default=0.1, show_default=True, help="Share of the iterations truly rounded (soft).")
@click.option("--syn-width", default=16, show_default=True, help="Hidden width of the synthesis' 1x1 layer.")
def main(
    images: tuple[str, ...],
    bf16: bool,
    compiled: bool,
    hard_lr: float,
    hard_fraction: float,
    crop: int,
    iterations: int,
    lambdas: str,
    threads: int,
    log_every: int,
    proxy: str,
    arm_width: int,
    syn_width: int,
) -> None:
    torch.set_num_threads(threads)
    print("| crop | lambda | bpp (latents + networks) | PSNR | ms/it | JPEG bpp | WebP bpp | AVIF bpp | nic bpp |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    from neurocodec.bench import rate_at_psnr

    for path in images:
        im = centre_crop(path, crop)
        x = to_tensor(im)
        curves = {c: reference_curve(c, im) for c in ("jpeg", "webp", "avif", "nic-e0")}  # once per crop
        for lam in (float(v) for v in lambdas.split(",")):
            r = fit(
                x, lam, iterations, log_every, proxy, (arm_width, syn_width), hard_lr, hard_fraction, bf16, compiled
            )
            refs = [rate_at_psnr(curve, r["psnr"]) for curve in curves.values()]
            cells = " | ".join("-" if not math.isfinite(v) else f"{v:.3f}" for v in refs)
            print(
                f"| {Path(path).stem} | {lam:g} | {r['bpp']:.3f} ({r['latent_bpp']:.3f} + {r['net_bpp']:.3f}) | "
                f"{r['psnr']:.2f} | {r['ms_per_iteration']:.0f} | {cells} |",
                flush=True,
            )
            print(
                f"  end of the soft phase: estimate {r['soft_estimate_bpp']:.3f} bpp, truly rounded "
                f"{r['rounded_bpp_after_soft']:.3f}; after the hard phase {r['latent_bpp']:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
