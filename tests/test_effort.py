"""Encode effort: refined latents lower the coded cost and decode with the ordinary decoder."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import nic

import neurocodec
from neurocodec import ratecontrol
from neurocodec.api import decode_symbols
from neurocodec.autoencoder import refine as refine_module
from neurocodec.autoencoder.codec import analyse
from neurocodec.autoencoder.gains import lambda_for
from neurocodec.autoencoder.refine import coded_cost, distortion_grad, local_lambda, refine
from neurocodec.autoencoder.weights import load_weights
from neurocodec.errors import NicError
from neurocodec.format import parse
from neurocodec.settings import FIRST_FITTED, MAX_EFFORT, quality_x100

QUALITY = 60.0
SHORT = (0, 3, 6, 12)  # fewer steps per level than settings.REFINE_STEPS, to keep the tests fast


@pytest.fixture
def short_levels(monkeypatch):
    monkeypatch.setattr(refine_module, "REFINE_STEPS", SHORT)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def actual_cost(data: bytes, image: np.ndarray, lam: float) -> float:
    """File bits per pixel + lambda * MSE of what the decoder shows."""
    return 8 * len(data) / (image.shape[0] * image.shape[1]) + lam * mse(np.asarray(neurocodec.decode(data)), image)


def test_effort_0_is_the_plain_encoder(example_crop):
    """Effort 0 runs neither refinement nor a second search: the codec core's own file, called directly."""
    a = analyse(example_crop)
    direct = a.code(quality_x100(QUALITY))
    assert neurocodec.encode(example_crop, quality=QUALITY, effort=0) == direct
    size = len(direct) - 40
    _, searched = ratecontrol.search(a, ratecontrol.Target(size=size))
    assert len(searched) <= size
    assert neurocodec.encode(example_crop, target_size=size, effort=0) == searched


def test_higher_effort_never_raises_the_cost(example_crop):
    a = analyse(example_crop)
    q100 = quality_x100(QUALITY)
    results = [refine(a, q100, effort, schedule=SHORT) for effort in range(FIRST_FITTED)]
    costs = [r.cost for r in results]
    assert all(later <= earlier for earlier, later in itertools.pairwise(costs)), costs
    assert costs[-1] < costs[0]
    assert results[0].analysis is a and results[0].cost == results[0].start_cost
    for r, steps in zip(results, SHORT):
        assert r.start_cost == costs[0] and 0 <= r.best_step <= steps and r.lam == results[0].lam
        assert r.cost == pytest.approx(coded_cost(r.analysis, q100, r.lam), rel=1e-12)


def test_lambda_follows_the_ladder():
    lambdas = load_weights().model.cfg.lambdas
    assert lambda_for(lambdas, 0) == pytest.approx(lambdas[0])
    assert lambda_for(lambdas, 10000) == pytest.approx(lambdas[-1])
    mids = [lambda_for(lambdas, q) for q in range(0, 10001, 250)]
    assert all(b > a for a, b in itertools.pairwise(mids))


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bfloat16"])
def test_refined_files_decode_and_cost_less(example_crop, short_levels, monkeypatch, bf16):
    """Whichever precision the gradient takes (bfloat16 where it is native), refinement pays."""
    monkeypatch.setattr(refine_module, "native_bf16", lambda dev: bf16)
    plain = neurocodec.encode(example_crop, quality=QUALITY)
    refined = neurocodec.encode(example_crop, quality=QUALITY, effort=FIRST_FITTED - 1)
    assert refined != plain
    assert parse(refined).quality == QUALITY
    q100 = quality_x100(QUALITY)
    a = analyse(example_crop)
    lam = local_lambda(a, q100, lambda_for(a.w.model.cfg.lambdas, q100))
    assert actual_cost(refined, example_crop, lam) < actual_cost(plain, example_crop, lam)
    z1, y1 = decode_symbols(refined)
    z2, y2 = decode_symbols(refined, exact_path="int64")
    assert np.array_equal(z1, z2) and np.array_equal(y1, y2)


def test_effort_with_rate_control(example_crop, short_levels):
    limit = len(neurocodec.encode(example_crop, quality=QUALITY))
    data = neurocodec.encode(example_crop, target_size=limit, effort=1)
    assert len(data) <= limit
    out = np.asarray(neurocodec.decode(data))
    plain = np.asarray(neurocodec.decode(neurocodec.encode(example_crop, target_size=limit)))
    assert mse(out, example_crop) <= mse(plain, example_crop)


def test_bad_effort_is_refused(example_crop):
    for effort in (-1, MAX_EFFORT + 1, 1.5):
        with pytest.raises(NicError, match="effort"):
            neurocodec.encode(example_crop, effort=effort)


def test_pillow_save_takes_effort(example_crop, short_levels, monkeypatch):
    """The plugin passes effort through: its bytes are the API's at that effort (whether or not
    refinement found cheaper latents for this crop, which depends on the machine's arithmetic)."""
    calls = []
    original = refine_module.refine
    monkeypatch.setattr(refine_module, "refine", lambda a, q, e, **kw: calls.append(e) or original(a, q, e, **kw))
    buf = io.BytesIO()
    Image.fromarray(example_crop).save(buf, format="NIC", quality=QUALITY, effort=1)
    assert calls == [1]
    assert buf.getvalue() == neurocodec.encode(example_crop, quality=QUALITY, effort=1)
    assert Image.open(io.BytesIO(buf.getvalue())).convert("RGB").size == (96, 80)


def test_cli_effort_with_size(tmp_path, example_crop):
    src = tmp_path / "crop.png"
    Image.fromarray(example_crop).save(src)
    limit = len(neurocodec.encode(example_crop, quality=QUALITY))
    r = nic("encode", src, "--effort", "1", "--size", str(limit), "-o", tmp_path / "crop.nic")
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "crop.nic").read_bytes()
    assert len(data) <= limit
    assert np.asarray(neurocodec.decode(data)).shape == example_crop.shape
    r = nic("encode", src, "--effort", str(MAX_EFFORT + 1), "-o", tmp_path / "bad.nic")
    assert r.returncode != 0 and not (tmp_path / "bad.nic").exists()


def test_tiled_distortion_gradient_matches_one_pass(monkeypatch):
    model = load_weights().model
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(1, model.cfg.m, 10, 14, generator=gen) * 2
    x = torch.rand(1, 3, 150, 220, generator=gen) * 255
    sse_one, grad_one = distortion_grad(model, y, x)
    monkeypatch.setattr(refine_module, "TILE", 64)  # 3 x 4 tiles with 64-pixel margins
    sse_tiled, grad_tiled = distortion_grad(model, y, x)
    assert sse_tiled == pytest.approx(sse_one, rel=1e-5)
    assert (grad_tiled - grad_one).norm() <= 1e-4 * grad_one.norm()
