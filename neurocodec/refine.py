"""Encode effort: refine one image's latents for its rate-distortion cost.

The analysis transform g_a is amortised: one network guesses the latents of
every image in a single pass, and a small model trained on little compute
guesses well short of the best. The decoder only ever sees integer symbols,
so the encoder may write any others: here gradient steps on this image's y
and z lower bits + lambda * MSE (the loss the model was trained for, with the
lambda of this image's own rate-distortion curve at the chosen quality; see
`local_lambda`), with stochastic Gumbel annealing (Yang et al. 2020) as the
rounding: a random, differentiable choice between the two nearest integers
that hardens into plain rounding as its temperature falls. z is optimised
through the float hyper-synthesis, then rounded; the chosen latents are coded
exactly as usual with the integer one, so neither the format nor the decoder
changes.

An effort level is a number of steps along one trajectory whose temperature
and learning rate depend only on the step index, so a higher level continues
a lower one. The result is the best candidate seen at a few checkpoints (the
unrefined latents and every level's last step among them), each costed as it
will be coded and decoded: file bits per pixel + lambda * MSE of the decoded
pixels. Hence a higher effort never raises that cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .codec import MARGIN, TILE, Y_STRIDE, Z_STRIDE, Analysis, _hyper_params, _tiles, code, gains_for, reconstruct
from .entropy_models import gaussian_likelihood
from .errors import NicError
from .model import anchor_mask
from .weights import GAIN_FRAC_BITS

# Optimisation steps of each effort level; level 0 is the plain single pass.
# A step runs the synthesis forwards and backwards (~0.3 s for 768x512 on one
# CPU thread). Gains flatten by ~60 steps, once the temperature nears TAU_MIN;
# 30 steps give most of them. Measured: benchmarks/effort.py.
EFFORT_STEPS = (0, 15, 30, 80)
MAX_EFFORT = len(EFFORT_STEPS) - 1
CHECK_EVERY = 20  # steps between checkpoints, besides each level's last step
LEARNING_RATE = 0.05  # Adam, in quantisation bins of the gained y and of z; falls with the temperature
TAU_START, TAU_DECAY, TAU_MIN = 0.5, 0.03, 0.05  # temperature: TAU_START * exp(-TAU_DECAY * step)
SEED = 0
SLOPE_SPAN = 500  # quality x 100 on each side of the target, for the image's own lambda
_EPS = 1e-5


def lambda_for(lambdas: Sequence[float], q100: int) -> float:
    """The rate-distortion trade-off at quality q100: log-lambda interpolated like the gains."""
    levels = len(lambdas)
    i, frac = divmod(q100 * (levels - 1), 10000)
    if i >= levels - 1:
        return float(lambdas[-1])
    t = frac / 10000
    return math.exp((1 - t) * math.log(lambdas[i]) + t * math.log(lambdas[i + 1]))


def steps_for(effort: int, schedule: Sequence[int] | None = None) -> int:
    schedule = EFFORT_STEPS if schedule is None else schedule
    if isinstance(effort, bool) or not isinstance(effort, (int, np.integer)) or not 0 <= effort < len(schedule):
        raise NicError(f"effort must be an integer from 0 to {len(schedule) - 1}, not {effort!r}")
    return int(schedule[effort])


def temperature(step: int) -> float:
    return max(TAU_START * math.exp(-TAU_DECAY * step), TAU_MIN)


def rate_mse(a: Analysis, q100: int) -> tuple[float, float]:
    """Bits per pixel of the .nic file and MSE (0..255) of the pixels the decoder shows."""
    bits = 8 * len(code(a, q100))
    err = reconstruct(a, q100).astype(np.float64) - a.img.rgb.astype(np.float64)
    return bits / a.pixels, float(np.mean(err**2))


def coded_cost(a: Analysis, q100: int, lam: float) -> float:
    """Bits per pixel + lambda * MSE, as coded and decoded."""
    rate, mse = rate_mse(a, q100)
    return rate + lam * mse


def local_lambda(a: Analysis, q100: int, ladder: float) -> float:
    """-dR/dD of this image's own coded curve around q100, within 8x of the ladder's lambda.

    The ladder's lambdas are the trade-offs the levels were trained for, but the
    coded curve's slope can differ (by 2-3x at low qualities): optimising for
    them would slide the image along its curve, to another quality. With the
    local slope, refinement lowers the curve and stays near the requested
    quality: fewer bits for about the same PSNR.
    """
    r_lo, d_lo = rate_mse(a, max(0, q100 - SLOPE_SPAN))
    r_hi, d_hi = rate_mse(a, min(10000, q100 + SLOPE_SPAN))
    if not (r_hi > r_lo and d_lo > d_hi):
        return ladder
    return min(max((r_hi - r_lo) / (d_lo - d_hi), ladder / 8), ladder * 8)


@dataclass
class Refined:
    """Refined latents, ready for `codec.code`, and what the refinement measured."""

    analysis: Analysis
    cost: float  # coded_cost of `analysis` (the lowest seen)
    start_cost: float  # coded_cost of the unrefined latents
    best_step: int  # the step that gave `analysis` (0: unrefined)
    trace: list[tuple[int, float]]  # (step, coded_cost) at every checkpoint
    lam: float  # the lambda of the cost


def _sga_round(v: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """Stochastic Gumbel annealing: floor(v) + a relaxed Bernoulli 'round up'.

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


def native_bf16(dev: torch.device) -> bool:
    """Whether bfloat16 convolutions run natively here (GPUs that have them; CPUs with AMX or AVX512-BF16).

    Elsewhere they are emulated and slower than float32.
    """
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch API: absent means no
    return dev.type == "cpu" and any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _candidate(a: Analysis, y: torch.Tensor, z: torch.Tensor) -> Analysis:
    """An Analysis for other latents: z rounded, its exact integer entropy parameters."""
    z_int = z.detach().round().to(torch.int64).cpu()
    mean_q, scale_q = _hyper_params(a.w, z_int, (y.shape[2], y.shape[3]))
    return Analysis(a.img, a.w, a.dev, y.detach().float().cpu().clone(), z_int, mean_q, scale_q)


def _distortion_grad(model, y_hat: torch.Tensor, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Sum of squared errors of the synthesis of y_hat against x, and its gradient.

    Tile by tile, as `codec.synthesis_tiled` decodes, so memory stays bounded:
    every pixel comes from its tile's window, and the window's gradient is
    added into the whole.
    """
    ty, my = TILE // Y_STRIDE, MARGIN // Y_STRIDE
    _, _, hy, wy = y_hat.shape
    height, width = x.shape[2], x.shape[3]
    grad = torch.zeros_like(y_hat)
    total = 0.0
    for top in _tiles(hy, ty):
        for left in _tiles(wy, ty):
            t0, l0 = max(0, top - my), max(0, left - my)
            b1, r1 = min(hy, top + ty + my), min(wy, left + ty + my)
            window = y_hat[:, :, t0:b1, l0:r1].detach().clone().requires_grad_(True)
            out = model.synthesis(window.contiguous(memory_format=torch.channels_last))
            py, px = top * Y_STRIDE, left * Y_STRIDE
            bh, bw = min(ty * Y_STRIDE, height - py), min(ty * Y_STRIDE, width - px)
            dy, dx = (top - t0) * Y_STRIDE, (left - l0) * Y_STRIDE
            part = out[:, :, dy : dy + bh, dx : dx + bw].clamp(0, 255)
            se = (part - x[:, :, py : py + bh, px : px + bw]).square().sum()
            (g,) = torch.autograd.grad(se, window)
            grad[:, :, t0:b1, l0:r1] += g
            total += se.item()
    return total, grad


def refine(a: Analysis, q100: int, effort: int, schedule: Sequence[int] | None = None) -> Refined:
    """Latents of the analysed image refined for quality q100 with `schedule[effort]` steps.

    `schedule` (rising step counts per level; default EFFORT_STEPS) is for tests and experiments.
    """
    schedule = EFFORT_STEPS if schedule is None else tuple(schedule)
    steps = steps_for(effort, schedule)
    w, dev = a.w, a.dev
    model = w.model.to(dev)
    lam = local_lambda(a, q100, lambda_for(model.cfg.lambdas, q100))
    start = coded_cost(a, q100, lam)
    trace = [(0, start)]
    best = Refined(a, start, start, 0, trace, lam)
    if steps == 0:
        return best
    checks = {s for s in schedule if 0 < s <= steps} | set(range(CHECK_EVERY, steps + 1, CHECK_EVERY))

    gain = (gains_for(w.gains, q100).to(torch.float64) / 2.0**GAIN_FRAC_BITS).float().view(1, -1, 1, 1).to(dev)
    hy, wy = a.y.shape[2], a.y.shape[3]
    hz, wz = a.z.shape[2], a.z.shape[3]
    n = a.pixels  # MSE is over 3 * n values
    x = torch.from_numpy(np.array(a.img.rgb, dtype=np.float32)).to(dev).permute(2, 0, 1)[None]
    y = a.y.to(dev)
    with torch.no_grad():
        z0 = model.h_a(F.pad(y, (0, wz * Z_STRIDE - wy, 0, hz * Z_STRIDE - hy)))
    u = (y * gain).requires_grad_(True)  # gained y: its quantisation bins are 1 wide
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([u, z], lr=LEARNING_RATE)
    anchors = anchor_mask(hy, wy, dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(SEED)
    # Only the gradient's direction runs in bfloat16 (the synthesis, ~90 % of a
    # step: 1.9x faster on AMX); every candidate is still costed as coded.
    bf16 = native_bf16(dev)

    with torch.enable_grad():
        for step in range(1, steps + 1):
            tau = temperature(step)
            for group in opt.param_groups:
                group["lr"] = LEARNING_RATE * tau / TAU_START
            z_soft = _sga_round(z, tau, gen)
            z_bits = -torch.log2(model.z_density.likelihood(z_soft)).sum()
            mean, scale = model.split_params(model.h_s(z_soft))
            mean, scale = mean[:, :, :hy, :wy], scale[:, :, :hy, :wy]
            v_soft = _sga_round(u - mean * gain, tau, gen)
            if model.context is not None:  # the anchors as rounded, then the rest around refined means
                mean, scale = model.with_anchors(mean, scale, v_soft / gain + mean)
                v_soft = torch.where(anchors, v_soft, _sga_round(u - mean * gain, tau, gen))
            mean_g, scale_g = mean * gain, scale * gain
            y_bits = -torch.log2(gaussian_likelihood(v_soft, scale_g)).sum()
            y_hat = (v_soft + mean_g) / gain
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                _, d_grad = _distortion_grad(model, y_hat, x)
            rate = (y_bits + z_bits) / n
            grads = torch.autograd.grad([rate, y_hat], [u, z], [torch.ones_like(rate), d_grad * (lam / (3 * n))])
            u.grad, z.grad = grads
            opt.step()
            if step in checks:
                cand = _candidate(a, u / gain, z)
                cost = coded_cost(cand, q100, lam)
                trace.append((step, cost))
                if cost < best.cost:
                    best = Refined(cand, cost, start, step, trace, lam)
    return best
