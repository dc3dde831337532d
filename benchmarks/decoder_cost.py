"""Multiply-accumulates per pixel of the decoder, against a 128/192-channel hyperprior.

    python benchmarks/decoder_cost.py [--weights weights/nic.pt]

Issue 3 caps the decoder at twice the cost of a Balle-style 128/192 mean-scale
hyperprior. Counts come from forward hooks on a 768x512 image (convolutions,
transposed convolutions and GDN's 1x1 mixing), so they follow the real layers;
elementwise work (bias, ReLU, the GDN's division) is left out, as is usual.
"""

from __future__ import annotations

import click
import torch
from torch import nn

from neurocodec.autoencoder.layers import GDN
from neurocodec.autoencoder.model import ModelConfig, NicModel

H, W = 512, 768


def _macs(module: nn.Module, run) -> int:
    total = 0

    def hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal total
        x = inputs[0]
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += out.numel() * (m.in_channels // m.groups) * k
        elif isinstance(m, nn.ConvTranspose2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += x.numel() * m.out_channels * k
        elif isinstance(m, GDN):
            total += x.numel() * x.shape[1]

    handles = [
        m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, GDN))
    ]
    with torch.no_grad():
        run()
    for h in handles:
        h.remove()
    return total


def costs(cfg: ModelConfig) -> dict[str, float]:
    """MACs per image pixel of g_s, h_s with the context model (the decoder) and g_a, h_a (the encoder)."""
    model = NicModel(cfg).eval()
    x = torch.zeros(1, 3, H, W)
    y = model.analysis(x)
    z = model.h_a(y)
    px = H * W
    return {
        "g_s": _macs(model.g_s, lambda: model.g_s(y)) / px,
        "h_s": (
            _macs(model.h_s, lambda: model.h_s(z))
            + (_macs(model.context, lambda: model.context(y)) if model.context else 0)
        )
        / px,
        "g_a": _macs(model.g_a, lambda: model.g_a(x)) / px,
        "h_a": _macs(model.h_a, lambda: model.h_a(y)) / px,
    }


@click.command()
@click.option("--weights", default=None, help="Weights whose configuration to count [default: the shipped ones].")
def main(weights: str | None) -> None:
    from neurocodec.autoencoder.modelfiles import DEFAULT_WEIGHTS
    from neurocodec.autoencoder.weights import load_weights

    cfg = load_weights(weights or DEFAULT_WEIGHTS).model.cfg
    ours = costs(cfg)
    ref = costs(ModelConfig(n=128, m=192, nz=128, nh=192))
    print("| network | g_s | h_s (+ context) | decoder | g_a + h_a |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, c in (
        (f"nic n={cfg.n}, m={cfg.m}" + (f", context {cfg.nc}" if cfg.nc else ""), ours),
        ("hyperprior 128/192 (reference)", ref),
    ):
        print(
            f"| {name} | {c['g_s']:,.0f} | {c['h_s']:,.0f} | {c['g_s'] + c['h_s']:,.0f} | {c['g_a'] + c['h_a']:,.0f} |"
        )
    ratio = (ours["g_s"] + ours["h_s"]) / (ref["g_s"] + ref["h_s"])
    print(f"\ndecoder cost relative to the 128/192 hyperprior: {ratio:.2f}x (limit: 2x)")


if __name__ == "__main__":
    main()
