"""Float-only screens of the fitted mode's recipe: one variant of the model or the fit against another,
on the same crops and seeds.

    python benchmarks/fitted_screen.py VARIANT SEED CROP PHOTO... >> benchmarks/results/fitted_screen.jsonl

VARIANT (each as the default was when it was screened; rows in the results file keep these names):
  default  version 1's free 4x4 upsampling kernels, the first residual layer at zero (the default until
           session 14; so "up8" and the others too, but "r1")
  up8      the separable upsampling (`model.SeparableUpsampling`: an 8-tap 2x upsampling per stage,
           bicubic at start, and a 7-tap pre-filter on each finer grid, identity at start)
  lr2, lr05  as default, the learning rate at 2e-2 / 5e-3
  r1       up8, the synthesis' first residual layer started small and random (`model.R1_INIT_STD`):
           started at zero, relu(r1(x)) had no gradient and r1 never learned
From session 15 on, against today's default ("now", the same as r1, rerun on the same machine):
  ctx15    5 more causal neighbours in the context model (15 and the parent: 16 inputs, no padding)
  w4       Cool-chic's warm-up: 4 random starts for 100 iterations, the best goes on (300 more iterations)
  it1300   1,300 iterations instead of 1,000 (what w4's extra iterations alone would give)
  fine01, ramp  the synthesis' first layer starts with smaller weights on the finer levels (x 0.1 on the
           finest / x (level + 1) / levels), so that coarse levels carry the picture first
  hard02   the truly rounded last phase takes 2 % of the iterations instead of 10 %: it gained only
           0.09-0.17 % (`fitted_hard_phase.py`), so the soft phase gets its 80 iterations
Each fit is `fit.fit` at lambda 0.003 for 1,000 iterations on 1 thread; what is printed is the
fit's own estimate with truly rounded latents (the decoder's MSE and the context model's bits,
no networks, no file), one JSON line per photo. The up8 rows were fitted with a first version of
these filters (1D convolutions: the same outputs within 6e-7 relative).

At 1,000 iterations the seed alone moves a fit's cost by up to 13 % (on one photo the two starts had parted
within 100 iterations: one put the detail into the finest level, the other into the next), so a variant needs a
gain of ~6 % to show on 8 fits.
"""

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fitted_grid as g

from neurocodec.fitted import fit as fit_module
from neurocodec.fitted import model as M

OLD = ("default", "up8", "lr2", "lr05")  # screened against version 1's default
NOW = ("now", "r1", "ctx15", "w4", "it1300", "fine01", "ramp", "hard02")  # against today's (r1 is today's default)
EXTRA_CONTEXT = ((-2, -2), (-2, 2), (0, -3), (-3, 0), (-1, -3))  # ctx15's neighbours beyond `context.CONTEXT`


def _finer_levels_start_smaller(ramp: list[float]) -> None:
    init = M.Synthesis.__init__

    def scaled(self: M.Synthesis, levels: int, width: int) -> None:
        init(self, levels, width)
        with torch.no_grad():
            self.a.weight.mul_(torch.tensor(ramp[:levels]).view(1, -1, 1, 1))

    M.Synthesis.__init__ = scaled


def main() -> None:
    variant, seed, crop = sys.argv[1], int(sys.argv[2]), g.crop_key(sys.argv[3])
    lam = 0.003
    torch.set_num_threads(1)
    if variant not in OLD + NOW:
        raise SystemExit(f"unknown variant {variant!r}: one of {', '.join(OLD + NOW)}")
    separable = variant not in ("default", "lr2", "lr05")
    arch = M.Architecture(upsampling=M.UPSAMPLING_SEPARABLE if separable else M.UPSAMPLING_4X4)
    if variant in OLD:
        M.R1_INIT_STD = 0.0
    fit_module.LR = {"lr2": 2e-2, "lr05": 5e-3}.get(variant, fit_module.LR)
    if variant == "ctx15":
        M.CONTEXT = M.CONTEXT + EXTRA_CONTEXT
        M.FEATURES = len(M.CONTEXT) + 1
    if variant == "hard02":
        fit_module.HARD_FRACTION = 0.02
    if variant == "fine01":
        _finer_levels_start_smaller([0.1] + [1.0] * (M.MAX_LEVELS - 1))
    if variant == "ramp":
        _finer_levels_start_smaller([(i + 1) / arch.levels for i in range(M.MAX_LEVELS)])
    iterations = 1300 if variant == "it1300" else 1000
    warmup = (4, 100) if variant == "w4" else (1, 0)
    for path in sys.argv[4:]:
        im = np.asarray(g.centre_crop(path, crop)).astype(np.float32) / 255
        x = torch.from_numpy(im).permute(2, 0, 1)[None]
        s = time.perf_counter()
        m = fit_module.fit(x, lam, iterations, arch, seed=seed, warmup=warmup)
        row = {"variant": variant, "seed": seed, **measure(m, x, lam, path), "s": time.perf_counter() - s}
        print(json.dumps(row), flush=True)


def measure(m: M.Fitted, x: torch.Tensor, lam: float, path: str) -> dict:
    """The fit's own estimate with truly rounded latents: PSNR, the latents' bits per pixel and MSE + lam * bpp."""
    with torch.no_grad():
        q = [torch.round(p * M.GAIN) for p in m.latents]
        mse = float((m.decoder(q).clamp(0, 1) - x).square().mean())
        bpp = float(m.arm.bits(q)) / (x.shape[2] * x.shape[3])
    return {"image": Path(path).name[:24], "psnr": -10 * math.log10(mse), "latent_bpp": bpp, "cost": mse + lam * bpp}


if __name__ == "__main__":
    main()
