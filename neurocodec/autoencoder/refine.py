"""Encode effort: refine one image's latents for its rate-distortion cost.

The analysis transform g_a is amortised: one network guesses the latents of
every image in a single pass, and a small model trained on little compute
guesses well short of the best. The decoder only ever sees integer symbols,
so the encoder may write any others: here gradient steps on this image's y
and z lower bits + lambda * D (the loss the model was trained for: D is the MSE,
or 1 - MS-SSIM for weights tuned for it, with the lambda of this image's own
rate-distortion curve at the chosen quality; see
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
will be coded and decoded: file bits per pixel + lambda * D of the decoded
pixels. Hence a higher effort never raises that cost. (Weights tuned for
MS-SSIM refine nothing on images under 11 pixels a side, where MS-SSIM is
not defined.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import distortion
from ..devices import native_bf16
from ..metrics import ms_ssim, msssim_scales
from ..progress import Progress, report
from ..settings import Q100_MAX, REFINE_STEPS, check_effort
from .codec import Analysis
from .gains import GAIN_FRAC_BITS, gains_for, lambda_for
from .model import Y_STRIDE, NicModel
from .rounding import sga_round
from .tiling import MARGIN, TILE, tiles

# A step runs the synthesis forwards and backwards (~0.3 s for 768x512 on one
# CPU thread); the steps per effort level are `settings.REFINE_STEPS`.
CHECK_EVERY = 20  # steps between checkpoints, besides each level's last step
LEARNING_RATE = 0.05  # Adam, in quantisation bins of the gained y and of z; falls with the temperature
TAU_START, TAU_DECAY, TAU_MIN = 0.5, 0.03, 0.05  # temperature: TAU_START * exp(-TAU_DECAY * step)
SEED = 0
SLOPE_SPAN = 500  # quality x 100 on each side of the target, for the image's own lambda


def steps_for(effort: int, schedule: Sequence[int] = REFINE_STEPS) -> int:
    """The gradient steps of an effort level (a bad level fails here, before any work)."""
    return int(schedule[check_effort(effort, len(schedule))])


def temperature(step: int) -> float:
    return max(TAU_START * math.exp(-TAU_DECAY * step), TAU_MIN)


def rate_distortion(a: Analysis, q100: int) -> tuple[float, float]:
    """Bits per pixel of the .nic file and the distortion its weights were trained for, of the pixels the decoder
    shows: MSE (0..255) or 1 - MS-SSIM."""
    bits = 8 * len(a.code(q100))
    out = a.reconstruct(q100)
    if a.w.model.cfg.distortion == "msssim":
        return bits / a.pixels, 1 - ms_ssim(out, a.img.rgb)
    err = out.astype(np.float64) - a.img.rgb.astype(np.float64)
    return bits / a.pixels, float(np.mean(err**2))


def coded_cost(a: Analysis, q100: int, lam: float) -> float:
    """Bits per pixel + lambda * D, as coded and decoded."""
    rate, d = rate_distortion(a, q100)
    return rate + lam * d


def local_lambda(a: Analysis, q100: int, ladder: float) -> float:
    """-dR/dD of this image's own coded curve around q100, within 8x of the ladder's lambda.

    The ladder's lambdas are the trade-offs the levels were trained for, but the
    coded curve's slope can differ (by 2-3x at low qualities): optimising for
    them would slide the image along its curve, to another quality. With the
    local slope, refinement lowers the curve and stays near the requested
    quality: fewer bits for about the same PSNR.
    """
    r_lo, d_lo = rate_distortion(a, max(0, q100 - SLOPE_SPAN))
    r_hi, d_hi = rate_distortion(a, min(Q100_MAX, q100 + SLOPE_SPAN))
    if not (r_hi > r_lo and d_lo > d_hi):
        return ladder
    return min(max((r_hi - r_lo) / (d_lo - d_hi), ladder / 8), ladder * 8)


@dataclass
class Refined:
    """Refined latents, ready for `Analysis.code`, and what the refinement measured."""

    analysis: Analysis
    cost: float  # coded_cost of `analysis` (the lowest seen)
    start_cost: float  # coded_cost of the unrefined latents
    best_step: int  # the step that gave `analysis` (0: unrefined)
    trace: list[tuple[int, float]]  # (step, coded_cost) at every checkpoint
    lam: float  # the lambda of the cost


def distortion_grad(
    model: NicModel, y_hat: torch.Tensor, x: torch.Tensor, kind: str = "mse"
) -> tuple[float, torch.Tensor]:
    """The distortion of the synthesis of y_hat against x (MSE, or 1 - MS-SSIM), and its gradient.

    Tile by tile, as `codec.synthesis_tiled` decodes, so memory stays bounded:
    every pixel comes from its tile's window, and the window's gradient is
    added into the whole. MS-SSIM is not a sum over pixels: images larger
    than one tile (1024 pixels a side) get the tiles' own 1 - MS-SSIM
    weighted by their pixels, a stand-in for the gradient's direction (the
    candidates are costed with the whole image's), and strips under 11
    pixels none.
    """
    grad = torch.zeros_like(y_hat)
    total = 0.0
    pixels = x.shape[2] * x.shape[3]
    for t in tiles(tuple(y_hat.shape[2:]), tuple(x.shape[2:]), (Y_STRIDE, 1), TILE // Y_STRIDE, MARGIN // Y_STRIDE):
        ref = x[(..., *t.write)]
        if kind == "msssim" and not msssim_scales(*ref.shape[2:]):
            continue
        window = y_hat[(..., *t.read)].detach().clone().requires_grad_(True)
        out = model.synthesis(window.contiguous(memory_format=torch.channels_last))[(..., *t.keep)].clamp(0, 255)
        # the tile's own distortion, weighted by its share of the pixels: for MSE, exactly the whole image's
        d = distortion.per_image(kind, out, ref).sum() * (ref.shape[2] * ref.shape[3] / pixels)
        (g,) = torch.autograd.grad(d, window)
        grad[(..., *t.read)] += g
        total += d.item()
    return total, grad


def refine(
    a: Analysis, q100: int, effort: int, schedule: Sequence[int] | None = None, progress: Progress | None = None
) -> Refined:
    """Latents of the analysed image refined for quality q100 with `schedule[effort]` steps.

    `schedule` (rising step counts per level; default `settings.REFINE_STEPS`) is for tests and experiments.
    """
    schedule = REFINE_STEPS if schedule is None else tuple(schedule)
    steps = steps_for(effort, schedule)
    w, dev = a.w, a.dev
    model = w.model.to(dev)
    kind = model.cfg.distortion
    if kind == "msssim" and not msssim_scales(*a.img.rgb.shape[:2]):
        return Refined(a, math.nan, math.nan, 0, [], math.nan)  # MS-SSIM is not defined here: nothing to refine for
    lam = local_lambda(a, q100, lambda_for(model.cfg.lambdas, q100))
    start = coded_cost(a, q100, lam)
    trace = [(0, start)]
    best = Refined(a, start, start, 0, trace, lam)
    if steps == 0:
        return best
    checks = {s for s in schedule if 0 < s <= steps} | set(range(CHECK_EVERY, steps + 1, CHECK_EVERY))

    gain = (gains_for(w.gains, q100).to(torch.float64) / 2.0**GAIN_FRAC_BITS).float().view(1, -1, 1, 1).to(dev)
    hy, wy = a.y.shape[2], a.y.shape[3]
    n = a.pixels
    x = torch.from_numpy(np.array(a.img.rgb, dtype=np.float32)).to(dev).permute(2, 0, 1)[None]
    y = a.y.to(dev)
    with torch.no_grad():
        z0 = model.hyper_analysis(y)
    u = (y * gain).requires_grad_(True)  # gained y: its quantisation bins are 1 wide
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([u, z], lr=LEARNING_RATE)
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
            z_soft = sga_round(z, tau, gen)
            z_bits = w.z.bits(z_soft).sum()
            # the anchors as rounded, then (with a context) the rest around refined means
            v_soft, mean_g, scale_g = w.y.forward(z_soft, gain, lambda m, tau=tau: sga_round(u - m, tau, gen), (hy, wy))
            y_bits = w.y.bits(v_soft, scale_g).sum()
            y_hat = (v_soft + mean_g) / gain
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                _, d_grad = distortion_grad(model, y_hat, x, kind)
            rate = (y_bits + z_bits) / n
            grads = torch.autograd.grad([rate, y_hat], [u, z], [torch.ones_like(rate), d_grad * lam])
            u.grad, z.grad = grads
            opt.step()
            report(progress, "refinement", step, steps)
            if step in checks:
                cand = a.with_latents(u / gain, z)
                cost = coded_cost(cand, q100, lam)
                trace.append((step, cost))
                if cost < best.cost:
                    best = Refined(cand, cost, start, step, trace, lam)
    return best
