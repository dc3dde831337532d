"""A float-only screen of the fitted mode's upsampling: Cool-chic-style separable symmetric filters
(`model.SeparableUpsampling`: an 8-tap 2x upsampling per stage, bicubic at start, and a 7-tap
pre-filter on each finer grid, identity at start) against version 1's free 4x4 transposed convolutions.

    python benchmarks/fitted_upsampling_screen.py VARIANT SEED CROP PHOTO... >> results.jsonl

VARIANT: default (the 4x4 kernels, the default when this screen ran), up8 (the separable filters),
lr2 / lr05 (4x4, the learning rate at 2e-2 / 5e-3). Each fit is `fit.fit` at lambda 0.003 for
1,000 iterations on 1 thread; what is printed is the fit's own estimate with truly rounded latents
(the decoder's MSE and the context model's bits, no networks, no file), one JSON line per photo.
Results: benchmarks/results/fitted_upsampling_screen.jsonl (256x256 centre crops of 4 training
photos, seeds 0 and 1; 768x512 crops of 2, seed 0), fitted with a first version of these filters
(1D convolutions: same outputs within 6e-7 relative; the model's version, 38 ms an upsampling
forward and backward at 768x512 on 2 cores, against 13 ms for the 4x4 kernels).
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
    arch = M.Architecture(
        upsampling=M.UPSAMPLING_4X4 if variant in ("default", "lr2", "lr05") else M.UPSAMPLING_SEPARABLE
    )
    if variant == "lr2":
        fit_module.LR = 2e-2
    if variant == "lr05":
        fit_module.LR = 5e-3
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
