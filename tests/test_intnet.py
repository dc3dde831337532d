"""The integer hyper-synthesis is exact: float64 path == int64 reference, any threads."""

from __future__ import annotations

import torch
from helpers import torch_settings

from neurocodec.autoencoder.latent_codecs import HyperSynthesis
from neurocodec.autoencoder.model import ModelConfig
from neurocodec.autoencoder.weights import load_weights
from neurocodec.entropy.intnet import IntLayer, quantize_hyper_synthesis


def test_float64_path_equals_int64_reference_on_random_network():
    torch.manual_seed(1)
    cfg = ModelConfig(n=16, m=12, nz=8, nh=20)
    hyper = quantize_hyper_synthesis(
        HyperSynthesis(cfg.nz, cfg.nh0, cfg.nh, cfg.m), torch.randint(-20, 21, (4, 8, 4, 4))
    )
    z = torch.randint(-30, 31, (2, 8, 3, 5))
    fast, ref = hyper(z), hyper(z, reference=True)
    assert fast[0].shape == (2, 12, 12, 20)
    assert torch.equal(fast[0], ref[0]) and torch.equal(fast[1], ref[1])
    assert fast[0].abs().sum() > 0  # not trivially zero


def test_channels_without_weights_output_their_bias():
    """A grown model's new output rows are all zero: they must give their bias, not overflow."""
    torch.manual_seed(3)
    cfg = ModelConfig(n=16, m=12, nz=8, nh=20)
    h_s = HyperSynthesis(cfg.nz, cfg.nh0, cfg.nh, cfg.m)
    with torch.no_grad():
        h_s[4].weight[5:12] = 0
        h_s[4].weight[17:] = 0
        h_s[4].bias[5:12] = 0
        h_s[4].bias[17:] = 0.03
    hyper = quantize_hyper_synthesis(h_s, torch.randint(-20, 21, (4, 8, 4, 4)))
    mean, scale = hyper(torch.randint(-30, 31, (1, 8, 3, 5)))
    assert torch.equal(mean[:, 5:], torch.zeros_like(mean[:, 5:]))
    assert (scale[:, 5:] - round(0.03 * 256)).abs().max() <= 1
    assert mean[:, :5].abs().sum() > 0


def test_extreme_activations_stay_exact():
    """Largest weights and activations: sums stay below 2**53, so still exact."""
    torch.manual_seed(2)
    w = torch.randint(-127, 128, (64, 96, 5, 5))
    w[:, :, 2, 2] = 127
    layer = IntLayer(
        w,
        torch.zeros(96, dtype=torch.int64),
        torch.ones(96, dtype=torch.int64),
        shift=1,
        stride=2,
        transposed=True,
        relu=True,
    )
    x = torch.full((1, 64, 3, 3), 2**15 - 1, dtype=torch.int64)
    x[0, ::2] = -(2**15) + 1
    assert torch.equal(layer.accumulate(x), layer.accumulate(x, reference=True))


def test_shipped_hyper_synthesis_is_thread_count_independent():
    hyper = load_weights().y.exact.hyper
    z = torch.randint(-6, 7, (1, hyper.layers[0].weight.shape[0], 5, 7))
    with torch_settings(2):
        two = hyper(z)
    with torch_settings(1):
        one = hyper(z)
    ref = hyper(z, reference=True)
    for a, b, c in zip(two, one, ref):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_banded_evaluation_equals_one_pass():
    """Large images run the trailing stride-1 layers in bands of rows; the result must not change."""
    from neurocodec.entropy.intnet import _in_bands

    torch.manual_seed(5)
    cfg = ModelConfig(n=16, m=12, nz=8, nh=20)
    hyper = quantize_hyper_synthesis(
        HyperSynthesis(cfg.nz, cfg.nh0, cfg.nh, cfg.m), torch.randint(-20, 21, (4, 8, 4, 4))
    )
    layers = [layer for layer in hyper.layers if layer.stride == 1 and not layer.transposed]
    assert layers, "the hyper-synthesis should end in a stride-1 convolution"
    x = torch.randint(0, 3000, (1, layers[0].weight.shape[1], 29, 7))
    whole = x
    for layer in layers:
        whole = layer(whole)
    for rows in (1, 4, 10):
        assert torch.equal(_in_bands(layers, x, False, rows=rows), whole)
    assert torch.equal(_in_bands(layers, x, True, rows=4), whole)
    assert whole.abs().sum() > 0
