"""--tune ssim: weights trained for MS-SSIM, picked by a name, trained, refined and decoded like the PSNR ones."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT
from helpers import smooth_image
from PIL import Image
from test_cli import nic

import neurocodec
from neurocodec import distortion
from neurocodec.api import encode_with_info
from neurocodec.autoencoder import modelfiles
from neurocodec.autoencoder.codec import analyse
from neurocodec.autoencoder.model import DEFAULT_LAMBDAS, MSSSIM_LAMBDAS
from neurocodec.autoencoder.refine import coded_cost, distortion_grad, rate_distortion, refine
from neurocodec.autoencoder.weights import export_weights, load_float_model, load_weights
from neurocodec.errors import NicError
from neurocodec.metrics import ms_ssim, psnr
from neurocodec.settings import FIRST_FITTED, quality_x100
from neurocodec.training import export, loop
from neurocodec.training.checkpoints import load_start


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> tuple[Path, Path]:
    """The shipped weights retuned for MS-SSIM (untrained: the plumbing is under test here), exported as shipped
    (floats in float16) and whole."""
    model, progress = load_float_model(ROOT / "weights" / "nic.pt")
    folder = tmp_path_factory.mktemp("tuned")
    calib = torch.from_numpy(np.stack([smooth_image(128, 128, seed=s) for s in range(2)])).permute(0, 3, 1, 2)
    for name, half in (("nic-ssim.pt", True), ("whole.pt", False)):
        export_weights(model.retuned("msssim"), folder / name, progress, calib.float(), half=half)
    return folder / "nic-ssim.pt", folder / "whole.pt"


@pytest.fixture(scope="module")
def ssim_file(exports) -> Path:
    return exports[0]


@pytest.fixture
def ssim_weights(ssim_file, monkeypatch) -> Path:
    monkeypatch.setitem(modelfiles.TUNED_WEIGHTS, "ssim", ssim_file)
    return ssim_file


@pytest.mark.parametrize("shape", [(192, 192), (64, 80), (23, 31), (11, 40)])
def test_the_training_ms_ssim_is_the_benchmarks(shape):
    rng = np.random.default_rng(sum(shape))
    a = smooth_image(*shape, seed=1)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    t = [torch.from_numpy(v).permute(2, 0, 1)[None].double() for v in (b, a)]
    assert distortion.ms_ssim(*t).item() == pytest.approx(ms_ssim(b, a), abs=1e-9)
    assert distortion.per_image("msssim", *t).item() == pytest.approx(1 - ms_ssim(b, a), abs=1e-9)
    with pytest.raises(ValueError):
        distortion.per_image("ssim", *t)


def test_retuning_keeps_the_networks_and_moves_each_level_to_the_ms_ssim_ladder(tmp_path, capsys):
    base = ROOT / "weights" / "nic.pt"
    model, _, _ = load_start(tmp_path / "none.pt", tmp_path / "nic-ssim.pt", distortion="msssim", base=base)
    assert "retuning the model from mse to msssim" in capsys.readouterr().out
    shipped, _ = load_float_model(base)
    assert model.cfg.distortion == "msssim" and model.cfg.lambdas == MSSSIM_LAMBDAS
    assert len(MSSSIM_LAMBDAS) == len(DEFAULT_LAMBDAS) and all(np.diff(MSSSIM_LAMBDAS) > 0)
    assert all(torch.equal(v, shipped.state_dict()[k]) for k, v in model.state_dict().items())


def test_training_for_ssim_starts_from_the_psnr_weights_and_exports_ssim_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the photos' cache goes to .cache here (export calibrates on 256x256 crops)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(256, 264, seed=i)).save(photos / f"{i}.png")
    out = tmp_path / "w" / "nic-ssim.pt"
    args = ["--tune", "ssim", "--data", str(photos), "--valid", "", "--weights", str(out), "--ckpt", "c/ckpt.pt"]
    args += ["--crop", "64", "--batch", "2", "--threads", "2", "--log-every", "0"]
    r = CliRunner().invoke(loop.main, [*args, "--steps", "2", "--export"])
    assert r.exit_code == 0, r.output
    assert "1-msssim" in r.output and "retuning the model from mse to msssim" in r.output
    w = load_weights(out)
    assert w.model.cfg.distortion == "msssim" and w.identity != load_weights().identity
    r = CliRunner().invoke(loop.main, [*args, "--steps", "1"])  # resumes its own checkpoint, already tuned
    assert r.exit_code == 0, r.output
    assert "retuning" not in r.output
    shipped = tmp_path / "w" / "nic.pt"
    r = CliRunner().invoke(export.main, ["--ckpt", "c/ckpt.pt", "--out", str(shipped), "--data", str(photos)])
    assert r.exit_code != 0 and "tuned for ssim" in r.output and not shipped.exists()
    r = CliRunner().invoke(export.main, ["--ckpt", "c/ckpt.pt", "--out", str(out), "--data", str(photos), "--half"])
    assert r.exit_code == 0, r.output
    assert load_weights(out).model.cfg.distortion == "msssim" and (tmp_path / "w" / "retired").is_dir()


def test_tune_ssim_encodes_with_its_weights_and_any_decoder_finds_them(ssim_weights, example_crop):
    data, info = encode_with_info(example_crop, quality=60, tune="ssim")
    assert info.model == load_weights(ssim_weights).identity.hex() != load_weights().identity.hex()
    out = np.asarray(neurocodec.decode(data))  # no weights named: the tuned ones are among the candidates
    assert out.shape == example_crop.shape
    identity = bytes.fromhex(info.model)
    assert modelfiles.availability(identity) == "the shipped weights tuned for ssim"
    saved = io.BytesIO()
    Image.fromarray(example_crop).save(saved, format="NIC", quality=60, tune="ssim")  # Pillow's save
    assert saved.getvalue() == data


def test_weights_stored_in_float16_take_half_the_bytes_and_code_as_the_whole_ones(exports, example_crop):
    half, whole = exports
    assert half.stat().st_size < 0.6 * whole.stat().st_size
    stored = torch.load(half, weights_only=True)["state"]
    assert {v.dtype for v in stored.values()} == {torch.float16, torch.float32}
    for q in (20, 80):
        files = [neurocodec.encode(example_crop, quality=q, weights=w) for w in (half, whole)]
        shown = [np.asarray(neurocodec.decode(f, weights=w)) for f, w in zip(files, (half, whole), strict=True)]
        assert abs(len(files[0]) - len(files[1])) <= 0.01 * len(files[1])
        assert abs(psnr(shown[0], example_crop) - psnr(shown[1], example_crop)) < 0.05


def test_a_tuning_that_cannot_apply_fails_before_any_work(ssim_weights, example_crop, tmp_path):
    for kwargs, words in [
        ({"tune": "ssim", "weights": ROOT / "weights" / "nic.pt"}, "not both"),
        ({"tune": "ssim", "effort": FIRST_FITTED}, "tuned for PSNR"),
        ({"tune": "butteraugli"}, "tune must be one of psnr, ssim"),
    ]:
        with pytest.raises(NicError, match=words):
            encode_with_info(example_crop, **kwargs)
    with pytest.MonkeyPatch.context() as m:
        m.setitem(modelfiles.TUNED_WEIGHTS, "ssim", tmp_path / "gone.pt")
        with pytest.raises(NicError, match="not installed"):
            encode_with_info(example_crop, tune="ssim")
    with pytest.raises(NicError, match="fits for PSNR"):  # the tuned weights named as one's own
        encode_with_info(example_crop, weights=ssim_weights, effort=FIRST_FITTED)
    src = tmp_path / "crop.png"
    Image.fromarray(example_crop).save(src)
    # $NIC_WEIGHTS (one's PSNR weights) does not count as --weights under --tune ssim
    r = nic("encode", src, "--tune", "ssim", "--effort", str(FIRST_FITTED), "-o", tmp_path / "x.nic",
            env={"NIC_WEIGHTS": str(ROOT / "weights" / "nic.pt")})  # fmt: skip
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "tuned for PSNR" in r.stderr
    assert not (tmp_path / "x.nic").exists()


def test_refinement_of_ssim_weights_lowers_bits_plus_lambda_times_one_minus_ms_ssim(ssim_weights, example_crop):
    w = load_weights(ssim_weights)
    a = analyse(example_crop, weights=ssim_weights)
    assert a.w.model.cfg.distortion == "msssim"
    q100 = quality_x100(60)
    rate, d = rate_distortion(a, q100)
    assert rate == 8 * len(a.code(q100)) / a.pixels
    assert d == pytest.approx(1 - ms_ssim(a.reconstruct(q100), example_crop), abs=1e-12)
    r = refine(a, q100, 1, schedule=(0, 10))
    assert r.best_step > 0 and r.cost < r.start_cost  # the steps found a cheaper file than the plain pass
    assert r.cost == pytest.approx(coded_cost(r.analysis, q100, r.lam), rel=1e-12)
    tiny = analyse(example_crop[:8, :9], weights=ssim_weights)  # no MS-SSIM under 11 pixels: nothing refined
    r = refine(tiny, q100, 1, schedule=(0, 6))
    assert r.analysis is tiny and math.isnan(r.cost)
    assert w.model.cfg.lambdas == MSSSIM_LAMBDAS


def test_the_ms_ssim_gradient_of_the_synthesis_points_downhill(ssim_weights, example_crop):
    a = analyse(example_crop, weights=ssim_weights)
    model = a.w.model
    x = torch.from_numpy(example_crop.astype(np.float32)).permute(2, 0, 1)[None]
    y = a.y.detach()
    with torch.no_grad():
        gain = model.log_gain[5].exp().view(1, -1, 1, 1)
        y_hat = torch.round(y * gain) / gain
    d0, g = distortion_grad(model, y_hat, x, "msssim")
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as refinement takes it where bfloat16 is native
        _, g16 = distortion_grad(model, y_hat, x, "msssim")
    assert torch.nn.functional.cosine_similarity(g.flatten(), g16.flatten(), dim=0) > 0.9
    with torch.no_grad():
        d1 = 1 - distortion.ms_ssim(model.synthesis(y_hat - 1e-3 * g / g.norm()).clamp(0, 255), x).item()
    assert d0 == pytest.approx(1 - distortion.ms_ssim(model.synthesis(y_hat).clamp(0, 255), x).item(), rel=1e-5)
    assert d1 < d0
