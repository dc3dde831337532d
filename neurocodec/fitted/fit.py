"""Fitting the networks and latents to one image: the recipe of Cool-chic's c3x preset, in short.

Loss: MSE (pixels 0..1) + lambda * bits per pixel. Adam at 1e-2, cosine decay, the gradients' norm
clipped at 0.1.
The rounding proxy is C3's (`model.quantize`): soft rounding with temperature
0.3 -> 0.1 and Gaussian noise 0.25 -> 0.1 around it; the last 10 % of the
iterations (at most 1,500) are truly rounded, with the latents fixed as
rounded and the networks learning them at 1e-3 cosine to 1e-4 (rounding the
latents straight through with rate gradients made 3,000 iterations worse than
1,000: benchmarks/results/fitted_grid.jsonl, recipe c3x-soft-1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import torch
from torch import Tensor

from ..atomic import save_atomic
from ..heap import keeping
from ..progress import Progress, report
from .model import DEFAULT, Architecture, Fitted

# What `fit` and the quantisation do, for results files: change it whenever the recipe changes.
RECIPE = (
    "c3x-soft-7: 7 levels, ARM 16 (10 causal + coarser), separable 8-tap up + 7-tap pre, syn 16 (r1 starts "
    "random); softround+gauss, last 10% hard, latents frozen, networks at 1e-3 cosine; ln b in [-4, 3.875]; "
    "p >= 2^-20; clip 0.1; ARM step per layer; real files"
)
LR = 1e-2
HARD_LR = 1e-3
HARD_FRACTION = 0.1
HARD_MAX = 1500
# The gradients' global norm is clipped to this (Cool-chic's 0.1): at 1,000 iterations on 256x256 crops of 3
# training photos, 17 % fewer bits than with 1.0 at equal PSNR (geometric mean; +184/+12/+66 % -> +76/+3/+69 %
# against AVIF).
GRAD_CLIP = 0.1
RESUME_EVERY = 250  # iterations between the states a resumable fit writes


def _resume_key(x: Tensor, lam: float, iterations: int, arch: Architecture, seed: int, warmup: tuple[int, int]) -> dict:
    """What a saved state must match to be resumed: the recipe, the image's bytes and the fit's settings."""
    image = hashlib.sha256(x.detach().cpu().numpy().tobytes()).hexdigest()
    return {"recipe": RECIPE, "image": image, "lambda": lam, "iterations": iterations, "seed": seed,
            "arch": list(dataclasses.astuple(arch)), **({"warmup": list(warmup)} if warmup[0] > 1 else {})}  # fmt: skip


class _Run:
    """One candidate fit: its model, its optimiser, and one iteration of the schedule at a time."""

    def __init__(self, x: Tensor, lam: float, iterations: int, arch: Architecture, seed: int) -> None:
        torch.manual_seed(seed)
        self.x, self.lam, self.iterations = x, lam, iterations
        self.model = Fitted(arch, x.shape[2], x.shape[3]).to(x.device)
        nets = [p for m in (self.model.arm, self.model.decoder) for p in m.parameters()]
        self.opt = torch.optim.Adam([{"params": list(self.model.latents)}, {"params": nets}], lr=LR)
        self.soft = iterations - min(HARD_MAX, int(iterations * HARD_FRACTION))

    def lrs(self, it: int) -> tuple[float, float]:
        """The learning rates of the latents and of the networks at iteration `it`."""
        if it < self.soft:
            return (1e-5 + (LR - 1e-5) * 0.5 * (1 + math.cos(math.pi * it / max(self.soft, 1))),) * 2
        tail = (it - self.soft) / max(self.iterations - self.soft, 1)
        return 0.0, HARD_LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * tail)))

    def step(self, it: int) -> Tensor:
        """Iteration `it` of the schedule; its loss (a tensor: reading it would wait for a GPU)."""
        hard = it >= self.soft
        frac = min(it / max(self.soft, 1), 1.0)
        for g, lr in zip(self.opt.param_groups, self.lrs(it), strict=True):
            g["lr"] = lr
        dev = self.x.device
        out, bits = self.model(
            torch.tensor(0.3 - 0.2 * frac, device=dev), torch.tensor(0.25 - 0.15 * frac, device=dev), hard
        )
        loss = (out - self.x).square().mean() + self.lam * bits / (self.x.shape[2] * self.x.shape[3])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.opt.step()
        return loss.detach()


@keeping
def fit(
    x: Tensor,
    lam: float,
    iterations: int,
    arch: Architecture = DEFAULT,
    progress: Progress | None = None,
    seed: int = 0,
    resume: Path | None = None,
    warmup: tuple[int, int] = (1, 0),
) -> Fitted:
    """Fit a model to x (1, 3, H, W) in 0..1 on x's device for MSE + lam * bits per pixel.

    warmup: (candidates, iterations): that many fits from different random starts (seeds seed, seed + 1, ...)
    run the schedule's first iterations; the one with the lowest loss over its last quarter of them goes on
    (Cool-chic's warm-up: it spares a fit the bad starts; the others' iterations come on top of the budget).
    resume: a file where the fit keeps its state every RESUME_EVERY iterations
    and from which it goes on if it holds the state of this same fit (long
    fits in benchmarks outlive a machine); a resumed fit reports the iteration it
    goes on from as stage "resumed". The random stream is resumed on the CPU only.
    """
    candidates, warm = warmup
    if candidates < 1 or not 0 <= warm < iterations or (candidates > 1 and warm == 0):
        raise ValueError(f"bad warm-up {warmup} for {iterations} iterations")
    run, start = _Run(x, lam, iterations, arch, seed), 0
    key = _resume_key(x, lam, iterations, arch, seed, warmup) if resume is not None else None
    if resume is not None and Path(resume).is_file():
        state = torch.load(resume, map_location=x.device, weights_only=True)
        if state.get("key") == key:
            run.model.load_state_dict(state["model"])
            run.opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"].cpu())
            start = state["iteration"]
            report(progress, "resumed", start, iterations)
    if start == 0 and candidates > 1:
        best = None
        for c in range(candidates):
            run = run if c == 0 else _Run(x, lam, iterations, arch, seed + c)
            losses = [run.step(it) for it in range(warm)]
            score = float(sum(losses[len(losses) - math.ceil(warm / 4) :]))  # the last quarter's
            best = (score, run) if best is None or score < best[0] else best
            report(progress, "warm-up", c + 1, candidates)
        run, start = best[1], warm
    for it in range(start, iterations):
        run.step(it)
        if it % 10 == 9 or it == iterations - 1:
            report(progress, "fitting", it + 1, iterations)
        if resume is not None and (it + 1) % RESUME_EVERY == 0 and it + 1 < iterations:
            state = {"model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "rng": torch.get_rng_state()}
            save_atomic({"key": key, "iteration": it + 1, **state}, resume)
    return run.model.eval()
