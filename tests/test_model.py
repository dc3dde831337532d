"""Growing a trained model: a longer quality ladder and more latent channels keep what it learned."""

from __future__ import annotations

import pytest
import torch

from neurocodec.autoencoder.latent_codecs import anchor_mask
from neurocodec.autoencoder.model import ModelConfig, NicModel
from neurocodec.training import growth
from neurocodec.training.growth import NamedAdam
from neurocodec.training.loop import RunClock


def moved(opt: torch.optim.Optimizer, old: NicModel, new: NicModel, place=None) -> torch.optim.Optimizer:
    """A whole-model Adam for `new` with `opt`'s state (over `old`) carried across by name."""
    named = NamedAdam.of(opt.state_dict(), old.trainable_names())
    if place is not None:
        named.grow(place, new)
    opt2 = torch.optim.Adam(new.parameters())
    opt2.load_state_dict(named.for_optimizer(new, new.trainable_names()))
    return opt2


def small(m: int = 12, lambdas=(0.01, 0.1)) -> NicModel:
    torch.manual_seed(0)
    return NicModel(ModelConfig(n=8, m=m, nz=6, nh=10, n_deep=8, lambdas=lambdas)).eval()


def test_longer_ladder_keeps_trained_levels_and_interpolates_between():
    model = small(lambdas=(0.01, 0.1))
    with torch.no_grad():
        model.log_gain[1] += 1.0  # a learned spread between the two levels
    longer, nearest = model.with_ladder((0.001, 0.01, 0.0316, 0.1, 1.0))
    g = longer.log_gain.detach()
    assert torch.allclose(g[1], model.log_gain[0]) and torch.allclose(g[3], model.log_gain[1])
    assert torch.all(g[0] < g[1]) and torch.all(g[1] < g[2]) and torch.all(g[2] < g[3]) and torch.all(g[3] < g[4])
    assert nearest.tolist() == [0, 0, 0, 1, 1]
    x = torch.rand(1, 3, 64, 64) * 255
    assert torch.equal(longer.analysis(x), model.analysis(x))


def test_trimmed_ladder_keeps_the_lower_levels_exactly():
    model = small(lambdas=(0.001, 0.01, 0.1, 1.0))
    with torch.no_grad():
        model.log_gain.add_(torch.randn_like(model.log_gain) * 0.1)
    trimmed, nearest = model.with_ladder(model.cfg.lambdas[:3])
    assert trimmed.cfg.levels == 3 and nearest.tolist() == [0, 1, 2]
    assert torch.equal(trimmed.log_gain, model.log_gain[:3])


def test_grown_latents_are_alive_and_old_parts_unchanged():
    model = small(m=12)
    grown, place = growth.widened(model, 20)
    x = torch.rand(2, 3, 128, 128) * 255
    with torch.no_grad():
        y_old, y_new = model.analysis(x), grown.analysis(x)
        assert torch.equal(y_new[:, :12], y_old)
        # New channels carry real values (they survive rounding), not near-zeros.
        assert y_new[:, 12:].abs().mean() > 0.3 * y_old.abs().mean()
        # The hyper-latent ignores them, so z is unchanged.
        assert torch.allclose(grown.h_a(y_new), model.h_a(y_old), atol=1e-5)
    assert torch.allclose(grown.log_gain[:, :12], model.log_gain)
    # Adam's moments follow the tensors they belong to.
    opt = torch.optim.Adam(model.parameters())
    model.train()
    r = model(x, torch.tensor([0, 1]))
    (r["y_bits"].sum() + r["x_hat"].square().mean()).backward()
    opt.step()
    opt2 = moved(opt, model, grown, place)
    params = dict(grown.named_parameters())
    for name in ("log_gain", "g_a.6.weight", "g_s.0.weight", "h_s.4.bias"):
        assert opt2.state[params[name]]["exp_avg"].shape == params[name].shape


def test_deepened_model_is_the_same_function_with_live_new_channels():
    model = small()
    with torch.no_grad():  # a trained-looking GDN: off-diagonal coupling, varied betas
        for gdn in (model.g_a[5], model.g_s[1]):
            gdn.gamma_sqrt.add_(torch.rand_like(gdn.gamma_sqrt) * 0.1)
            gdn.beta_sqrt.mul_(1 + torch.rand_like(gdn.beta_sqrt))
    deep, place = growth.deepened(model, 20)
    assert deep.cfg.n_deep == 20 and deep.g_a[4].out_channels == 20 and deep.g_s[0].out_channels == 20
    x = torch.rand(2, 3, 128, 128) * 255
    with torch.no_grad():
        y = model.analysis(x)
        assert torch.allclose(deep.analysis(x), y, atol=1e-5)
        assert torch.allclose(deep.synthesis(y), model.synthesis(y), atol=1e-3)
        # The new 1/8-resolution channels carry signal like the old ones.
        h = deep.g_a[:6](x / 255.0 - 0.5)
        assert h[:, 8:].abs().mean() > 0.2 * h[:, :8].abs().mean()
    # Training reaches the new channels: their outgoing weights get gradients.
    deep.train()
    r = deep(x, torch.tensor([0, 1]))
    (r["y_bits"].sum() + r["x_hat"].square().mean()).backward()
    assert deep.g_s[2].weight.grad[8:].abs().sum() > 0 and deep.g_a[6].weight.grad[:, 8:].abs().sum() > 0
    # Adam state grows along both dimensions of the GDN matrices.
    opt = torch.optim.Adam(model.parameters())
    model.train()
    r = model(x, torch.tensor([0, 1]))
    (r["y_bits"].sum() + r["x_hat"].square().mean()).backward()
    opt.step()
    old_sq = opt.state[model.g_s[1].gamma_sqrt]["exp_avg_sq"].clone()
    opt2 = moved(opt, model, deep, place)
    sq = opt2.state[deep.g_s[1].gamma_sqrt]["exp_avg_sq"]
    assert sq.shape == (20, 20) and torch.equal(sq[:8, :8], old_sq)
    assert torch.allclose(sq[8:, :], torch.full((12, 20), old_sq.mean().item()))


def test_broadened_model_is_the_same_function_with_live_new_channels():
    model = small()
    with torch.no_grad():  # trained-looking GDNs: off-diagonal coupling, varied betas
        for gdn in (model.g_a[1], model.g_a[3], model.g_s[3], model.g_s[5]):
            gdn.gamma_sqrt.add_(torch.rand_like(gdn.gamma_sqrt) * 0.1)
            gdn.beta_sqrt.mul_(1 + torch.rand_like(gdn.beta_sqrt))
        for layer in model.g_s:  # no bias-dominated activations, as only an untrained model has
            if isinstance(layer, torch.nn.ConvTranspose2d):
                layer.bias.zero_()
    wide, place = growth.broadened(model, 14)
    assert wide.cfg.n == 14 and wide.g_a[2].in_channels == wide.g_a[2].out_channels == 14
    assert wide.g_s[4].in_channels == wide.g_s[6].in_channels == 14
    x = torch.rand(2, 3, 128, 128) * 255
    with torch.no_grad():
        y = model.analysis(x)
        assert torch.allclose(wide.analysis(x), y, atol=1e-4)
        assert torch.allclose(wide.synthesis(y), model.synthesis(y), atol=1e-2)
        # New channels carry signal at 1/2 and 1/4 resolution, on both sides.
        for h in (wide.g_a[:2](x / 255 - 0.5), wide.g_a[:4](x / 255 - 0.5), wide.g_s[:4](y), wide.g_s[:6](y)):
            assert h[:, 8:].abs().mean() > 0.2 * h[:, :8].abs().mean()
    assert set(place) >= {"g_a.2.weight", "g_s.6.weight", "g_a.1.gamma_sqrt"}


def test_added_context_model_starts_as_the_same_function_and_then_learns_only_from_anchors():
    model = small()
    x = torch.rand(2, 3, 128, 128) * 255
    level = torch.tensor([0, 1])
    with_ctx = growth.with_context(model, 16)
    assert with_ctx.cfg.nc == 16 and model.context is None
    torch.manual_seed(1)
    ref = model.train()(x, level)
    torch.manual_seed(1)
    out = with_ctx.train()(x, level)
    assert torch.equal(out["x_hat"], ref["x_hat"]) and torch.allclose(out["y_bits"], ref["y_bits"])
    # Adam's state follows every old tensor by name; the context's own starts empty.
    opt = torch.optim.Adam(model.parameters())
    (ref["y_bits"].sum() + ref["x_hat"].square().mean()).backward()
    opt.step()
    opt2 = moved(opt, model, with_ctx)
    old, new = dict(model.named_parameters()), dict(with_ctx.named_parameters())
    for name in old:
        if opt.state[old[name]]:
            assert torch.equal(opt2.state[new[name]]["exp_avg"], opt.state[old[name]]["exp_avg"])
    assert not opt2.state[new["context.out.weight"]]
    # A trained context corrects the non-anchors from the anchors only: the first pass's
    # values elsewhere do not matter, and the anchors keep the hyperprior's mean and scale.
    with torch.no_grad():
        with_ctx.context.out.weight.normal_()
        z_hat, gain = torch.randn(1, 6, 2, 2), torch.ones(1, 12, 1, 1)
        anchors = anchor_mask(8, 8)
        first = torch.randn(1, 12, 8, 8)

        def run(elsewhere: torch.Tensor):
            passes = iter([torch.where(anchors, first, elsewhere), first])
            return with_ctx.y_codec.forward(z_hat, gain, lambda mean_g: next(passes), (8, 8))

        _, m1, s1 = run(torch.randn(1, 12, 8, 8))
        _, m2, s2 = run(torch.randn(1, 12, 8, 8))
        hyper_mean, hyper_scale = with_ctx.h_s(z_hat).chunk(2, dim=1)
    assert torch.equal(m1, m2) and torch.equal(s1, s2)
    a = anchors.expand_as(m1)
    assert torch.equal(m1[a], hyper_mean[a]) and torch.equal(s1[a], hyper_scale[a])
    assert (m1 - hyper_mean)[~a].abs().sum() > 0


def test_weights_without_a_deep_width_load_as_before():
    cfg = ModelConfig(n=8, m=12, nz=6, nh=10, lambdas=(0.01, 0.1)).to_dict()
    del cfg["n_deep"]
    assert ModelConfig.from_dict(cfg).n_deep == 8


def test_run_clock_skips_pauses_but_counts_steady_work():
    clock = RunClock()
    for dt in [30.0] + [1.0] * 50:  # compilation, then steady steps
        clock.tick(dt)
    assert clock.seconds == 80.0
    clock.tick(600.0)  # paused with SIGSTOP for ten minutes
    assert 80.0 < clock.seconds <= 86.0
    for _ in range(50):
        clock.tick(2.0)  # the machine got slower: that is real training time
    assert clock.seconds > 80.0 + 95.0


def test_training_resumes_a_committed_candidate_only_when_it_has_trained_longer(tmp_path):
    from click.testing import CliRunner

    from neurocodec.autoencoder.model import DEFAULT_LAMBDAS
    from neurocodec.autoencoder.modelfiles import DEFAULT_WEIGHTS
    from neurocodec.training import export
    from neurocodec.training.checkpoints import load_start, save_candidate, trained_pixels

    ckpt = tmp_path / "ckpt.pt"
    save_candidate(small(lambdas=DEFAULT_LAMBDAS), {"step": 5, "pixels": 1e15}, ckpt)
    out = tmp_path / "w" / "nic.pt"
    out.parent.mkdir()
    r = CliRunner().invoke(export.main, ["--ckpt", str(ckpt), "--out", str(out), "--candidate"])
    assert r.exit_code == 0, r.output
    candidate = out.parent / "candidate.pt"
    assert not out.exists() and trained_pixels(candidate) == 1e15

    missing = tmp_path / "no-ckpt.pt"
    model, opt_state, progress = load_start(missing, DEFAULT_WEIGHTS, candidate=candidate)
    assert model.cfg.m == 12 and progress["step"] == 5 and opt_state is None
    save_candidate(small(lambdas=DEFAULT_LAMBDAS), {"step": 5, "pixels": 1.0}, candidate)
    model, _, progress = load_start(missing, DEFAULT_WEIGHTS, candidate=candidate)
    assert model.cfg.m != 12 and progress["pixels"] == trained_pixels(DEFAULT_WEIGHTS)


def test_weights_shipped_with_fewer_levels_resume_the_whole_trained_ladder(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from neurocodec.autoencoder import modelfiles
    from neurocodec.autoencoder.model import DEFAULT_LAMBDAS
    from neurocodec.autoencoder.weights import load_float_model, load_weights
    from neurocodec.training import export
    from neurocodec.training.checkpoints import save_candidate

    trained = small(lambdas=DEFAULT_LAMBDAS)
    with torch.no_grad():
        trained.log_gain.add_(torch.randn_like(trained.log_gain) * 0.3)  # learned, not extrapolable
    ckpt = tmp_path / "ckpt.pt"
    save_candidate(trained, {"step": 5, "pixels": 10.0}, ckpt)
    out = tmp_path / "nic.pt"
    r = CliRunner().invoke(export.main, ["--ckpt", str(ckpt), "--out", str(out), "--levels", "4", "--data", "examples"])
    assert r.exit_code == 0, r.output
    assert load_weights(out).gains.shape[0] == 4  # coding sees the shipped levels only
    resumed, progress = load_float_model(out)
    assert resumed.cfg.lambdas == DEFAULT_LAMBDAS and progress["step"] == 5
    assert torch.equal(resumed.log_gain, trained.log_gain)
    # Shipping again keeps the decoder of the weights replaced, listed in retired/SHA256SUMS.
    monkeypatch.setattr(modelfiles, "_shipped_dir", lambda: tmp_path)  # tmp_path stands for weights/
    first = load_weights(out).identity
    r = CliRunner().invoke(export.main, ["--ckpt", str(ckpt), "--out", str(out), "--data", "examples"])
    assert r.exit_code == 0 and "SHA256SUMS" in r.output, r.output
    retired = load_weights(out.parent / "retired" / f"{first.hex()}.pt")
    assert retired.identity == first and retired.decoder_only and retired.gains.shape[0] == 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_training_on_cuda_without_one_says_so_in_one_line(tmp_path):
    from click.testing import CliRunner

    from neurocodec.training.loop import main

    r = CliRunner().invoke(main, ["--device", "cuda", "--ckpt", str(tmp_path / "c.pt"), "--minutes", "0"])
    assert r.exit_code == 2 and "no CUDA device" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "c.pt").exists()


def test_the_same_weights_written_twice_have_one_identity(tmp_path):
    """A .nic file names its weights by a hash of their file: re-exporting must not change it."""
    from neurocodec.atomic import save_atomic
    from neurocodec.autoencoder.modelfiles import identity_of

    obj = {"state": {"w": torch.randn(3, 4)}, "progress": {"step": 7}}
    save_atomic(obj, tmp_path / "nic.pt")
    save_atomic(obj, tmp_path / "elsewhere" / "other-name.pt")
    assert identity_of(tmp_path / "nic.pt") == identity_of(tmp_path / "elsewhere" / "other-name.pt")
    assert torch.load(tmp_path / "nic.pt", weights_only=True)["progress"] == {"step": 7}


def test_encoder_blocks_start_as_the_same_function_and_encoder_only_training_keeps_the_decoder():
    from neurocodec.training.loop import train_step

    model = small()
    grown = growth.with_encoder_blocks(model, 2)
    assert grown.cfg.ne == 2 and ModelConfig.from_dict({**model.cfg.to_dict(), "ne": 0}) == model.cfg
    x = torch.rand(2, 3, 128, 128) * 255
    with torch.no_grad():
        assert torch.equal(grown.analysis(x), model.analysis(x))
    opt = torch.optim.Adam(grown.trainable(encoder_only=True), lr=1e-2)
    before = {k: v.clone() for k, v in grown.state_dict().items()}
    lambdas = torch.tensor(grown.cfg.lambdas)
    for _ in range(2):  # the first step moves only the blocks' output layers (their input has no gradient yet)
        train_step(grown.train(), opt, x, torch.tensor([0, 1]), lambdas, bf16=False)
    changed = {k for k, v in grown.state_dict().items() if not torch.equal(v, before[k])}
    assert {"g_a_res.0.conv1.weight", "g_a_res.1.conv2.weight", "g_a.0.weight", "h_a.0.weight"} <= changed
    assert all(k.startswith(("g_a.", "g_a_res.", "h_a.")) for k in changed)
    with pytest.raises(ValueError):
        growth.with_encoder_blocks(grown, 1)


def test_encoder_only_training_resumes_with_its_blocks_and_knows_whose_adam_state_it_has(tmp_path):
    from click.testing import CliRunner

    from neurocodec.training.loop import main

    ckpt = tmp_path / "c.pt"
    args = ["--data", "examples", "--valid", "", "--candidate", "", "--ckpt", str(ckpt), "--minutes", "0"]
    r = CliRunner().invoke(main, [*args, "--encoder-blocks", "1", "--encoder-only"])
    assert r.exit_code == 0, r.output
    assert "adding residual blocks on y" in r.output
    c = torch.load(ckpt, weights_only=True)
    assert c["config"]["ne"] == 1 and c["encoder_only"] is True
    assert any(k.startswith("g_a_res.0.") for k in c["state"])
    r = CliRunner().invoke(main, args)  # the whole model now: the encoder's Adam state does not fit it
    assert r.exit_code == 0, r.output
    assert "Adam starts afresh" in r.output and "adding residual blocks" not in r.output
    assert torch.load(ckpt, weights_only=True)["encoder_only"] is False


def test_an_encoder_only_checkpoint_keeps_its_adam_moments_through_growth(tmp_path):
    """Adam's state of an encoder-only run follows its tensors by name through a new ladder and new latent channels."""
    from neurocodec.autoencoder.model import DEFAULT_LAMBDAS
    from neurocodec.training.checkpoints import load_start
    from neurocodec.training.loop import train_step

    model = small(lambdas=(0.01, 0.1)).train()
    opt = torch.optim.Adam(model.trainable(encoder_only=True), lr=1e-3)
    x = torch.rand(2, 3, 128, 128) * 255
    train_step(model, opt, x, torch.tensor([0, 1]), torch.tensor(model.cfg.lambdas), bf16=False)
    saved = {n: opt.state[p]["exp_avg"].clone() for n, p in model.named_parameters() if p in opt.state}
    ckpt = tmp_path / "ckpt.pt"
    state = {"config": model.cfg.to_dict(), "state": model.state_dict(), "optimizer": opt.state_dict()}
    torch.save({**state, "encoder_only": True, "progress": {"step": 1, "pixels": 1.0}}, ckpt)

    grown, opt_state, _ = load_start(ckpt, tmp_path / "none.pt", latent_channels=16, encoder_only=True)
    assert grown.cfg.lambdas == DEFAULT_LAMBDAS and grown.cfg.m == 16
    opt2 = torch.optim.Adam(grown.trainable(encoder_only=True), lr=1e-3)
    opt2.load_state_dict(opt_state)
    params = dict(grown.named_parameters())
    assert set(saved) == set(grown.trainable_names(encoder_only=True))
    for name in saved:
        assert opt2.state[params[name]]["exp_avg"].shape == params[name].shape, name
    assert torch.equal(opt2.state[params["g_a.6.weight"]]["exp_avg"][:12], saved["g_a.6.weight"])
    assert torch.equal(opt2.state[params["g_a.0.weight"]]["exp_avg"], saved["g_a.0.weight"])
    train_step(grown.train(), opt2, x, torch.tensor([0, 1]), torch.tensor(grown.cfg.lambdas), bf16=False)


def test_export_refuses_a_missing_checkpoint_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from neurocodec.training import export

    out = tmp_path / "nic.pt"
    out.write_bytes(b"the real weights")
    r = CliRunner().invoke(export.main, ["--ckpt", str(tmp_path / "missing.pt"), "--out", str(out)])
    assert r.exit_code != 0 and "checkpoint not found" in r.output and "Traceback" not in r.output
    assert out.read_bytes() == b"the real weights" and sorted(p.name for p in tmp_path.iterdir()) == ["nic.pt"]
