"""The fitted mode end to end: tiny images fitted for a few iterations, coded, decoded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import smooth_image, torch_settings
from PIL import Image

import neurocodec
from neurocodec import api
from neurocodec.errors import NicError
from neurocodec.fitted import codec as fitted
from neurocodec.fitted import fit, model
from neurocodec.format import parse
from neurocodec.imageio import prepare
from neurocodec.settings import FIRST_FITTED, MAX_EFFORT

ITERATIONS = 40
LAM = 0.002  # MSE (0..1) + LAM * bits per pixel: a middle rate


def _fit(image, iterations: int = ITERATIONS, q100: int = 5000) -> fitted.FittedImage:
    return fitted.encode(prepare(image), q100, LAM, iterations, torch.device("cpu"))


@pytest.fixture(scope="module")
def odd() -> fitted.FittedImage:
    return _fit(smooth_image(19, 27, seed=3))


def test_round_trip_of_an_odd_sized_image(odd):
    data = odd.code()
    f = parse(data)
    assert (f.width, f.height, f.quality_x100, f.model_id) == (27, 19, 5000, fitted.MODEL_ID)
    out = np.asarray(neurocodec.decode(data))
    assert out.shape == (19, 27, 3)
    # The encoder's pixels are the CPU decoder's: the same float networks on the same symbols, here.
    assert np.array_equal(out, odd.reconstruct())
    nets, latents = api.decode_symbols(data)
    assert np.array_equal(latents, np.concatenate([g.reshape(-1).numpy() for g in odd.grids]))
    assert np.array_equal(nets, np.concatenate([t.values.reshape(-1).numpy() for t in odd.arm + odd.decoder]))


def test_both_upsamplings_round_trip():
    """Files are written in mode version 2, which names its upsampling; version 1's 4x4 kernels stay writable
    there (and version 1 files decode: the golden tests)."""
    img = prepare(smooth_image(11, 14, seed=2))
    for kind in model.UPSAMPLINGS:
        arch = model.Architecture(upsampling=kind)
        f = fitted.encode(img, 5000, LAM, 12, torch.device("cpu"), arch)
        data = f.code()
        head = parse(data).chunks[fitted.CHUNK]
        assert (head[0], head[5]) == (fitted.MODE_VERSION, kind) == (2, kind)
        assert np.array_equal(np.asarray(neurocodec.decode(data)), f.reconstruct())
        assert fitted.decode_latents(parse(data))[0] == arch


def test_fitting_learns_the_image(odd):
    """After a few iterations the picture is nearer the image than a flat grey one."""
    src = odd.source.astype(float)
    assert np.mean((odd.reconstruct() - src) ** 2) < np.mean((src - src.mean()) ** 2)


def test_the_context_models_steps_code_in_no_more_bits_than_any_one_step_for_all(odd):
    """Each layer's own step (`codec._quantise_arm`) starts from the best single step and only ever improves on it."""
    m = fit.fit(torch.from_numpy(odd.source.astype(np.float32) / 255).permute(2, 0, 1)[None], LAM, ITERATIONS)
    grids = m.rounded()

    def bits(tensors):
        values, centre, ids = fitted.latent_symbols(grids, fitted.int_arm(tensors))
        return fitted.table_bits(values, centre, ids) + sum(t.bits() for t in tensors)

    chosen = bits(fitted._quantise_arm(m, grids))
    layers = len(m.arm.layers())
    assert all(chosen <= bits(fitted.arm_tensors(m.arm, [k] * layers)) for k in fitted.ARM_STEPS)


def test_every_synthesis_layer_learns_from_the_start():
    """No layer starts where its gradient is zero (a ReLU branch at zero would never learn)."""
    x = torch.from_numpy(smooth_image(16, 16, seed=4).astype(np.float32) / 255).permute(2, 0, 1)[None]
    m = model.Fitted(model.DEFAULT, 16, 16)
    with torch.no_grad():
        for p in m.latents:
            p.normal_()
    out, bits = m(torch.tensor(0.3), torch.tensor(0.0), False)
    ((out - x).square().mean() + LAM * bits).backward()
    for name, p in m.decoder.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (9, 1)])
def test_tiny_shapes(shape):
    img = smooth_image(*shape, seed=1) if min(shape) > 1 else np.full((*shape, 3), 77, np.uint8)
    f = _fit(img, iterations=12)
    out = np.asarray(neurocodec.decode(f.code()))
    assert out.shape == (*shape, 3)


def test_symbols_do_not_depend_on_threads_onednn_or_the_reference_path(odd):
    data = odd.code()
    expected = api.decode_symbols(data)
    for threads, onednn in ((1, True), (2, True), (2, False)):
        with torch_settings(threads, onednn):
            got = api.decode_symbols(data)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    ref = api.decode_symbols(data, exact_path="int64")
    assert all(np.array_equal(a, b) for a, b in zip(ref, expected))


def test_the_file_is_what_its_parts_cost(odd):
    """The entropy coder writes about the bits the encoder's own cost said (it chose steps by them)."""
    values, centre, ids = fitted.latent_symbols(odd.grids, fitted.int_arm(odd.arm))
    estimate = fitted.table_bits(values, centre, ids) + sum(t.bits() for t in odd.arm + odd.decoder)
    f = parse(odd.code())
    coded = 8 * (len(f.ans) + len(f.overflow))
    # ANS words round up, a few words of coder state; constriction's own quantisation of the counts costs a little
    assert estimate - 64 <= coded <= estimate + 64 + 32 * 2


def test_grey_and_alpha_keep_their_layout():
    rgb = smooth_image(12, 10, seed=5)
    la = Image.fromarray(np.dstack([rgb[:, :, 0], (rgb[:, :, 1] > 120).astype(np.uint8) * 255]), "LA")
    f = _fit(la, iterations=12)
    out = neurocodec.decode(f.code())
    assert out.mode == "LA" and out.size == (10, 12)
    assert np.array_equal(np.asarray(out)[:, :, 1], np.asarray(la)[:, :, 1])  # alpha is lossless


def _corrupt(data: bytes, pos: int, value: int) -> bytes:
    import struct
    import zlib

    body = bytearray(data[:-4])
    body[pos] = value
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def test_bad_fitted_headers_are_refused(odd):
    data = odd.code()
    f = parse(data)
    head = f.chunks[fitted.CHUNK]
    start = data.index(fitted.CHUNK) + 8  # the chunk's data, after its tag and length
    assert data[start : start + len(head)] == head
    for offset, value, message in (
        (0, 9, "fitted mode version"),  # mode version
        (1, 0, "architecture"),  # no levels
        (2, 0, "architecture"),  # ARM width 0
        (5, 200, "architecture"),  # an upsampling kind that does not exist
        (6, 200, "tensor header"),  # a step beyond the format's
        (7, 255, "tensor header"),  # a Laplace table that does not exist
    ):
        with pytest.raises(NicError, match=message):
            neurocodec.decode(_corrupt(data, start + offset, value))


def test_corrupted_payloads_fail_cleanly(odd):
    data = odd.code()
    rng = np.random.default_rng(0)
    failures = 0
    for _ in range(40):
        pos = int(rng.integers(38, len(data) - 4))
        try:
            neurocodec.decode(_corrupt(data, pos, int(data[pos]) ^ (1 << int(rng.integers(8)))))
        except NicError:
            failures += 1
    assert failures > 0


@pytest.fixture
def short_fits(monkeypatch):
    monkeypatch.setattr(api, "FIT_ITERATIONS", (10, 20, 30))


def test_cost_never_rises_with_effort(short_fits):
    """Each fitted level keeps the autoencoder's effort-3 file unless its own costs less (bits per pixel +
    lambda * MSE at the autoencoder's lambda): on a tiny image the networks rarely pay."""
    img = smooth_image(24, 20, seed=2)
    q100 = 5000
    a3 = api.refine.refine(api.codec.analyse(img), q100, FIRST_FITTED - 1).analysis
    lam = api.refine.local_lambda(a3, q100, api.lambda_for(a3.w.model.cfg.lambdas, q100))

    def cost(data: bytes) -> float:
        out = np.asarray(neurocodec.decode(data)).astype(np.float64)
        return 8 * len(data) / (24 * 20) + lam * float(np.mean((out - img) ** 2))

    base = neurocodec.encode(img, quality=50, effort=FIRST_FITTED - 1)
    costs = [cost(base)]
    for effort in range(FIRST_FITTED, MAX_EFFORT + 1):
        data = neurocodec.encode(img, quality=50, effort=effort)
        assert data == base or parse(data).model_id == fitted.MODEL_ID
        costs.append(cost(data))
    assert all(c <= costs[0] for c in costs[1:]), costs


def test_too_large_for_fitting_is_refused_before_the_fit(monkeypatch):
    monkeypatch.setattr(fitted, "MAX_PIXELS", 24 * 20 - 1)
    with pytest.raises(NicError, match="at most 479 pixels .* use effort 3 or lower"):
        neurocodec.encode(smooth_image(24, 20), effort=FIRST_FITTED)


def test_rate_control_holds_at_the_fitted_levels(short_fits):
    """A size limit holds at effort 4: the fit runs at the quality the autoencoder's search found, and of its
    file and the autoencoder's the one that meets the target better is kept."""
    img = smooth_image(24, 20, seed=4)
    limit = len(neurocodec.encode(img, quality=60))
    data = neurocodec.encode(img, target_size=limit, effort=FIRST_FITTED)
    assert len(data) <= limit
    assert np.asarray(neurocodec.decode(data)).shape == img.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_file_fitted_on_cuda_decodes_on_the_cpu_to_the_same_symbols():
    f = fitted.encode(prepare(smooth_image(19, 27, seed=3)), 5000, LAM, ITERATIONS, torch.device("cuda"))
    data = f.code()
    _, latents = api.decode_symbols(data)
    assert np.array_equal(latents, np.concatenate([g.reshape(-1).numpy() for g in f.grids]))
    on_cpu = np.asarray(neurocodec.decode(data, device="cpu")).astype(int)
    assert np.abs(on_cpu - np.asarray(neurocodec.decode(data, device="cuda")).astype(int)).max() <= 2


class _Better(fitted.FittedImage):
    """A fitted result that is perfect and larger than anything: what the API must not keep past a size limit."""

    def __init__(self, img, q100):
        self.img, self.q100 = img, q100

    def code(self, q100=None):
        return b"x" * 10**6

    def reconstruct(self, q100=None):
        return self.img.rgb


def test_a_fitted_file_over_the_size_limit_is_never_kept(monkeypatch):
    monkeypatch.setattr(api.fitted, "encode", lambda img, q100, *a, **k: _Better(img, q100))
    img = smooth_image(24, 20, seed=4)
    limit = len(neurocodec.encode(img, quality=60))
    data = neurocodec.encode(img, target_size=limit, effort=FIRST_FITTED)
    assert len(data) <= limit and parse(data).model_id != fitted.MODEL_ID
    # Without a limit the better picture wins only when it costs less: a megabyte never does.
    assert parse(neurocodec.encode(img, quality=60, effort=FIRST_FITTED)).model_id != fitted.MODEL_ID


def test_a_fit_that_cannot_be_coded_keeps_effort_3s_file(monkeypatch):
    def fail(*args, **kwargs):
        raise NicError("the fitted context model does not fit the exact integer format")

    monkeypatch.setattr(api.fitted, "encode", fail)
    img = smooth_image(24, 20, seed=4)
    with pytest.warns(neurocodec.NicWarning, match="could not be made"):
        data = neurocodec.encode(img, quality=60, effort=FIRST_FITTED)
    assert data == neurocodec.encode(img, quality=60, effort=FIRST_FITTED - 1)


def test_a_hostile_size_is_refused_before_decoding(odd):
    import struct
    import zlib

    body = bytearray(odd.code()[:-4])
    struct.pack_into("<II", body, 8, 1 << 20, 2)  # 2^20 x 2: few pixels, a million steps
    with pytest.raises(NicError, match="exceeds the mode's limits"):
        neurocodec.decode(bytes(body) + struct.pack("<I", zlib.crc32(body)))


def test_a_long_fit_goes_on_from_its_saved_state_and_never_from_another_fits(tmp_path, monkeypatch):
    from neurocodec.fitted import fit as fit_module

    monkeypatch.setattr(fit_module, "RESUME_EVERY", 10)
    x = torch.from_numpy(smooth_image(12, 10, seed=3).astype(np.float32) / 255).permute(2, 0, 1)[None]

    def run(lam: float, resume=None) -> tuple[list[int], list[torch.Tensor]]:
        seen: list[int] = []
        m = fit_module.fit(x, lam, 25, progress=lambda stage, done, total: seen.append((stage, done)), resume=resume)
        return seen, [p.detach().clone() for p in m.parameters()]

    whole = run(0.01)
    state = tmp_path / "fit.pt"
    fresh = [("fitting", 10), ("fitting", 20), ("fitting", 25)]
    assert run(0.01, state)[0] == fresh
    assert torch.load(state, weights_only=True)["iteration"] == 20  # the last state before the end
    seen, resumed = run(0.01, state)
    assert seen == [("resumed", 20), ("fitting", 25)]  # only iterations 21-25 ran
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(whole[1], resumed, strict=True))
    seen, _ = run(0.02, state)  # another fit's state: started afresh
    assert seen == fresh


def test_the_warm_up_goes_on_with_its_best_candidate():
    from neurocodec.fitted import fit as fit_module

    x = torch.from_numpy(smooth_image(12, 10, seed=4).astype(np.float32) / 255).permute(2, 0, 1)[None]
    seen: list[tuple[str, int]] = []
    model = fit_module.fit(x, 0.01, 20, seed=7, warmup=(3, 8), progress=lambda s, d, t: seen.append((s, d)))
    assert seen == [("warm-up", 1), ("warm-up", 2), ("warm-up", 3), ("fitting", 10), ("fitting", 20)]
    # The same by hand: three starts, eight iterations each, the lowest loss over the last two goes on.
    runs, scores = [], []
    for c in range(3):
        runs.append(fit_module._Run(x, 0.01, 20, fit_module.DEFAULT, 7 + c))
        scores.append(float(sum([runs[-1].step(it) for it in range(8)][-2:])))
    best = runs[int(np.argmin(scores))]
    for it in range(8, 20):
        best.step(it)
    assert len(set(scores)) == 3  # different starts
    for a, b in zip(model.parameters(), best.model.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="warm-up"):
        fit_module.fit(x, 0.01, 20, warmup=(2, 0))
