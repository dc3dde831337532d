"""A float-only screen of the fitted mode's upsampling: Cool-chic-style separable symmetric filters
(an 8-tap 2x upsampling per stage, bicubic at start, and a 7-tap pre-filter on each finer grid,
identity at start) against today's free 4x4 transposed convolutions. Not yet in the codec or the format.

    python benchmarks/fitted_upsampling_screen.py VARIANT SEED CROP PHOTO... >> results.jsonl

VARIANT: default, up8 (the separable filters), lr2 / lr05 (the learning rate at 2e-2 / 5e-3).
Each fit is `fit.fit` at lambda 0.003 for 1,000 iterations on 1 thread; what is printed is the
fit's own estimate with truly rounded latents (the decoder's MSE and the context model's bits,
no networks, no file), one JSON line per photo. Results: benchmarks/results/fitted_upsampling_screen.jsonl
(256x256 centre crops of 4 training photos, seeds 0 and 1; 768x512 crops of 2, seed 0), fitted with
a first version of these filters (1D convolutions: same outputs within 6e-7 relative, 78 ms an upsampling
forward and backward at 768x512 on 2 cores where this one takes 38 and today's 4x4 kernels 13).
"""

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import fitted_grid as g

from neurocodec.fitted import fit as fit_module
from neurocodec.fitted import model as M

BICUBIC = torch.tensor([-0.0234375, -0.0703125, 0.2265625, 0.8671875])


def _offset() -> int:
    """Where the transposed convolution's output lines up with the 2x grid: a ramp comes out as o / 2 - 1/4."""
    k = torch.cat([BICUBIC, BICUBIC.flip(0)]).view(1, 1, 1, 8)
    x = torch.arange(20.0).view(1, 1, 1, 20)
    y = F.conv_transpose2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k, stride=(1, 2))[0, 0, 0]
    want = torch.arange(40.0) / 2 - 0.25
    for off in range(len(y) - 40):
        if torch.allclose(y[off + 8 : off + 32], want[8:32], atol=1e-4):
            return off
    raise RuntimeError


OFF = _offset()


class Up8(nn.Module):
    """`model.Upsampling` with separable symmetric filters: 4 + 4 parameters per stage instead of 16."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.up = nn.Parameter(BICUBIC.repeat(max(levels - 1, 0), 1))
        pre = torch.zeros(max(levels - 1, 0), 4)
        pre[:, 3] = 1
        self.pre = nn.Parameter(pre)

    def _up(self, x, half):
        """2x: one transposed convolution by the 8x8 outer product, channels-last (13 ms forward and backward
        for the last stage at 768x512 on 2 cores; two 1D passes took 27 ms, polyphase shifted sums 31)."""
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        k = torch.cat([half, half.flip(0)])
        k2 = (k[:, None] * k[None, :]).view(1, 1, 8, 8).repeat(c, 1, 1, 1)
        y = F.conv_transpose2d(
            M.pad_edges(x, 2, 2).contiguous(memory_format=torch.channels_last), k2, stride=2, groups=c
        )
        return y[:, :, OFF : OFF + 2 * h, OFF : OFF + 2 * w]

    def _pre(self, x, half):
        """7-tap symmetric, rows then columns, as shifted sums (7 ms at full size; a 1-channel conv2d took 29)."""
        h, w = x.shape[2], x.shape[3]
        p = M.pad_edges(x, 0, 3)
        y = half[3] * p[:, :, :, 3 : 3 + w] + sum(
            half[i] * (p[:, :, :, i : i + w] + p[:, :, :, 6 - i : 6 - i + w]) for i in range(3)
        )
        p = M.pad_edges(y, 3, 0)
        return half[3] * p[:, :, 3 : 3 + h, :] + sum(
            half[i] * (p[:, :, i : i + h, :] + p[:, :, 6 - i : 6 - i + h, :]) for i in range(3)
        )

    def forward(self, grids):
        x = grids[-1]
        for stage in range(len(grids) - 2, -1, -1):
            x = self._up(x, self.up[stage])
            t = self._pre(grids[stage], self.pre[stage])
            x = torch.cat([t, x[:, :, : t.shape[2], : t.shape[3]]], dim=1)
        return x


def main() -> None:
    variant, seed, crop = sys.argv[1], int(sys.argv[2]), g.crop_key(sys.argv[3])
    lam = 0.003
    torch.set_num_threads(1)
    if variant == "up8":
        M.Upsampling = Up8
    if variant == "lr2":
        fit_module.LR = 2e-2
    if variant == "lr05":
        fit_module.LR = 5e-3
    for path in sys.argv[4:]:
        im = np.asarray(g.centre_crop(path, crop)).astype(np.float32) / 255
        x = torch.from_numpy(im).permute(2, 0, 1)[None]
        s = time.perf_counter()
        m = fit_module.fit(x, lam, 1000, seed=seed)
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
