"""The fidelity ceiling of the transforms: PSNR of g_s(g_a(x)) with no quantization at all.

    python benchmarks/ceiling.py [--weights weights/nic.pt | --ckpt wip/ckpt.pt] [--images DIR]

No quality setting can decode a photo better than its transforms reproduce it
unquantized, so when the top quality level sits just under this ceiling, more
rate cannot buy fidelity: the transforms (their width, their training) limit
it, not the entropy model. For comparison, the same 768x512 centre crops
reconstructed from their 256 strongest principal components per 16x16 block
(the linear bound of a 256-channel latent, fitted on the crops themselves).
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np
import torch
from default_quality import centre_crop

from neurocodec.autoencoder.weights import load_float_model
from neurocodec.training.checkpoints import read_checkpoint
from neurocodec.training.data import list_images, load_rgb


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / max(mse, 1e-10))


def _blocks(a: np.ndarray) -> np.ndarray:
    h, w, _ = a.shape
    return a.reshape(h // 16, 16, w // 16, 16, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 768).astype(np.float64)


@click.command()
@click.option("--weights", default="weights/nic.pt", show_default=True, help="Shipped weights to measure.")
@click.option("--ckpt", default=None, help="A training checkpoint to measure instead.")
@click.option("--images", default="../shared/data/valid", show_default=True)
@click.option(
    "--components", default=256, show_default=True, help="Principal components per block, for the linear bound."
)
def main(weights: str, ckpt: str | None, images: str, components: int) -> None:
    torch.set_num_threads(2)
    model = read_checkpoint(Path(ckpt))[0] if ckpt else load_float_model(weights)[0]
    model.eval()
    crops = [(p.name, centre_crop(load_rgb(p))) for p in list_images(images)]
    blocks = np.concatenate([_blocks(a) for _, a in crops])
    mu = blocks.mean(0)
    _, vecs = np.linalg.eigh(np.cov((blocks - mu).T))
    basis = vecs[:, ::-1][:, :components]
    ae, lin = [], []
    for name, a in crops:
        with torch.no_grad():
            x = torch.from_numpy(a).permute(2, 0, 1)[None].float()
            out = model.synthesis(model.analysis(x)).clamp(0, 255).round()[0].permute(1, 2, 0).numpy()
        b = _blocks(a)
        r = np.clip(np.round((b - mu) @ basis @ basis.T + mu), 0, 255)
        ae.append(_psnr(out, a))
        lin.append(_psnr(r, b))
        print(f"{name}: transforms {ae[-1]:.2f} dB | linear {components}-component bound {lin[-1]:.2f} dB")
    print(
        f"\nmean over {len(ae)} crops: transforms {np.mean(ae):.2f} dB (min {np.min(ae):.2f}), "
        f"linear bound {np.mean(lin):.2f} dB; below 30 dB even unquantized: {sum(p < 30 for p in ae)}, "
        f"below 31 dB: {sum(p < 31 for p in ae)}"
    )


if __name__ == "__main__":
    main()
