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
Each fit is `fit.fit` at lambda 0.003 for 1,000 iterations on 1 thread; what is printed is the
fit's own estimate with truly rounded latents (the decoder's MSE and the context model's bits,
no networks, no file), one JSON line per photo. The up8 rows were fitted with a first version of
these filters (1D convolutions: the same outputs within 6e-7 relative).
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


def main() -> None:
    variant, seed, crop = sys.argv[1], int(sys.argv[2]), g.crop_key(sys.argv[3])
    lam = 0.003
    torch.set_num_threads(1)
    separable = variant in ("up8", "r1")
    arch = M.Architecture(upsampling=M.UPSAMPLING_SEPARABLE if separable else M.UPSAMPLING_4X4)
    if variant != "r1":
        M.R1_INIT_STD = 0.0
    fit_module.LR = {"lr2": 2e-2, "lr05": 5e-3}.get(variant, fit_module.LR)
    for path in sys.argv[4:]:
        im = np.asarray(g.centre_crop(path, crop)).astype(np.float32) / 255
        x = torch.from_numpy(im).permute(2, 0, 1)[None]
        s = time.perf_counter()
        m = fit_module.fit(x, lam, 1000, arch, seed=seed)
        with torch.no_grad():
            q = [torch.round(p * M.GAIN) for p in m.latents]
            out = m.decoder(q).clamp(0, 1)
            mse = float((out - x).square().mean())
            bits = float(m.arm.bits(q))
        n = x.shape[2] * x.shape[3]
        print(
            json.dumps(
                {
                    "variant": variant,
                    "seed": seed,
                    "image": path.split("/")[-1][:24],
                    "psnr": -10 * math.log10(mse),
                    "latent_bpp": bits / n,
                    "cost": mse + lam * bits / n,
                    "s": time.perf_counter() - s,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
