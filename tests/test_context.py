"""The checkerboard context model on the exact coding path: two y passes, identical symbols everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import psnr

import neurocodec
from neurocodec.api import decode_symbols
from neurocodec.autoencoder.codec import analyse
from neurocodec.autoencoder.gains import gains_for
from neurocodec.autoencoder.latent_codecs import anchor_mask, ungained
from neurocodec.autoencoder.model import NicModel
from neurocodec.autoencoder.modelfiles import DEFAULT_WEIGHTS
from neurocodec.autoencoder.weights import export_weights, load_float_model, load_weights
from neurocodec.training.growth import with_context


def _export_with_context(path, example_crop, trained: bool | None) -> None:
    """The shipped model with its own context model replaced: by none (None), by one that
    predicts nothing (False), or by a trained-looking one (True)."""
    shipped, progress = load_float_model(DEFAULT_WEIGHTS)
    state = {k: v for k, v in shipped.state_dict().items() if not k.startswith("context.")}
    model = NicModel.from_state({**shipped.cfg.to_dict(), "nc": 0}, state).eval()
    if trained is not None:
        model = with_context(model, 16).eval()
    if trained:
        torch.manual_seed(0)
        with torch.no_grad():
            model.context.out.weight.normal_(0, 0.02)
            model.context.out.bias.normal_(0, 0.05)
    calib = torch.from_numpy(np.tile(example_crop[:64, :64], (2, 2, 1))).permute(2, 0, 1)[None].float()
    export_weights(model, path, {**progress, "note": f"context test {trained}"}, calib)


@pytest.fixture(scope="module")
def context_weights(tmp_path_factory, example_crop):
    path = tmp_path_factory.mktemp("ctx") / "nic.pt"
    _export_with_context(path, example_crop, trained=True)
    return path


def test_context_files_decode_to_identical_symbols_on_every_path(context_weights, example_crop):
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        data = neurocodec.encode(example_crop, quality=70, weights=context_weights)
        z2, y2 = decode_symbols(data, weights=context_weights)
        torch.set_num_threads(1)
        z1, y1 = decode_symbols(data, weights=context_weights, exact_path="int64")
    finally:
        torch.set_num_threads(old)
    assert np.array_equal(z1, z2) and np.array_equal(y1, y2) and np.abs(y2).sum() > 0
    out = np.asarray(neurocodec.decode(data, weights=context_weights))
    assert psnr(out, example_crop) > 24


def test_context_changes_only_the_second_pass(context_weights, tmp_path, example_crop):
    silent, plain = tmp_path / "silent.pt", tmp_path / "plain.pt"
    _export_with_context(silent, example_crop, trained=False)
    _export_with_context(plain, example_crop, trained=None)
    q = 70
    # A context that predicts nothing codes exactly what the hyperprior alone codes.
    _, y_base = decode_symbols(neurocodec.encode(example_crop, quality=q, weights=plain), weights=plain)
    _, y_silent = decode_symbols(neurocodec.encode(example_crop, quality=q, weights=silent), weights=silent)
    assert np.array_equal(y_base, y_silent)
    # A working one keeps every anchor's symbol and moves the other half.
    _, y_ctx = decode_symbols(
        neurocodec.encode(example_crop, quality=q, weights=context_weights), weights=context_weights
    )
    anchors = np.broadcast_to(anchor_mask(y_ctx.shape[2], y_ctx.shape[3]).numpy(), y_ctx.shape)
    assert np.array_equal(y_ctx[anchors], y_base[anchors])
    assert not np.array_equal(y_ctx[~anchors], y_base[~anchors])


def test_integer_context_follows_the_float_model(context_weights, example_crop):
    """The exported fixed-point context predicts what the trained float one does (to its precision)."""
    w = load_weights(context_weights)
    a = analyse(example_crop, device="cpu", weights=context_weights)
    gain_q = gains_for(w.gains, 7000)
    gain = gain_q.double().view(1, -1, 1, 1) / 2**16
    mean = a.mean_q.double() / 256
    y_sym = torch.round((a.y.double() - mean) * gain).to(torch.int64)
    # Exact un-gained reconstruction in fixed point, against float.
    fb = w.y.exact.context.frac_bits
    y_hat = y_sym / gain + mean
    assert (ungained(y_sym, a.mean_q, gain_q, fb) - y_hat * 2**fb).abs().max() <= 1
    anchors = anchor_mask(y_sym.shape[2], y_sym.shape[3])
    d_mean_int, _ = w.y.exact.context(torch.where(anchors, ungained(y_sym, a.mean_q, gain_q, fb), 0))
    with torch.no_grad():
        d_mean, _ = w.model.context((y_hat * anchors).float()).chunk(2, dim=1)
    err = (d_mean_int.double() / 256 - d_mean.double()).abs()
    assert err.max() < 0.05 * d_mean.abs().max() and d_mean.abs().max() > 0.1


def test_effort_refines_through_the_context(context_weights, example_crop):
    from neurocodec.autoencoder.refine import refine
    from neurocodec.settings import quality_x100

    a = analyse(example_crop, device="cpu", weights=context_weights)
    q100 = quality_x100(70)
    r = refine(a, q100, 1, schedule=(0, 12))
    assert r.cost < r.start_cost
    data = r.analysis.code(q100)
    z1, y1 = decode_symbols(data, weights=context_weights)
    z2, y2 = decode_symbols(data, weights=context_weights, exact_path="int64")
    assert np.array_equal(z1, z2) and np.array_equal(y1, y2)
