"""The fit's truly rounded last phase, screened without the seeds' noise: every variant goes on from the same
soft-phase state.

    python benchmarks/fitted_hard_phase.py SEED PHOTO... >> benchmarks/results/fitted_hard_phase.jsonl

For each photo (256x256 centre crop, lambda 0.003, 1,000 iterations) the soft phase runs once (`fit._Run`);
then each variant runs the last 100 iterations from that state, and the row gives the cost with truly rounded
latents (`fitted_screen.measure`) at the soft phase's end and after each variant:
  base      the recipe's: latents frozen as rounded, the networks at `fit.HARD_LR`, cosine
  ste1e-4, ste1e-3, ste3e-3  the latents rounded straight through (the gradient passes rounding as if it were
            not there) and learning too, at that rate (cosine), the networks as in base
"""

import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fitted_grid as g
from fitted_screen import measure

from neurocodec.fitted import fit as fit_module
from neurocodec.fitted import model as M

LAMBDA = 0.003
VARIANTS = {"base": 0.0, "ste1e-4": 1e-4, "ste1e-3": 1e-3, "ste3e-3": 3e-3}  # the latents' learning rate


def straight_through(x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, hard: bool) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class LatentsLearn(fit_module._Run):
    """The fit, whose last phase also moves the latents, at latent_lr times the networks' cosine."""

    latent_lr = 0.0

    def lrs(self, it: int) -> tuple[float, float]:
        latents, networks = super().lrs(it)
        return (self.latent_lr * networks / fit_module.HARD_LR if it >= self.soft else latents), networks


def hard_phase(run: LatentsLearn, latent_lr: float) -> None:
    """`fit._Run.step`'s last phase, with the latents learning at latent_lr (straight through) if it is not 0."""
    run.latent_lr = latent_lr
    quantize, M.quantize = M.quantize, straight_through if latent_lr else M.quantize
    try:
        for it in range(run.soft, run.iterations):
            run.step(it)
    finally:
        M.quantize = quantize


def main() -> None:
    seed = int(sys.argv[1])
    torch.set_num_threads(1)
    for path in sys.argv[2:]:
        x = torch.from_numpy(np.asarray(g.centre_crop(path, 256)).astype(np.float32) / 255).permute(2, 0, 1)[None]
        run = LatentsLearn(x, LAMBDA, 1000, M.DEFAULT, seed)
        for it in range(run.soft):
            run.step(it)
        row = {"seed": seed, "soft_end": measure(run.model, x, LAMBDA, path)}
        saved = copy.deepcopy((run.model.state_dict(), run.opt.state_dict()))
        for name, latent_lr in VARIANTS.items():
            run.model.load_state_dict(saved[0])
            run.opt.load_state_dict(saved[1])
            hard_phase(run, latent_lr)
            row[name] = measure(run.model, x, LAMBDA, path)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
