"""The one-command GPU session, run on the CPU: crops cut on the device, checkpoints in parts, resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT
from helpers import smooth_image
from PIL import Image

from neurocodec.autoencoder.model import DEFAULT_LAMBDAS, ModelConfig, NicModel
from neurocodec.errors import NicError
from neurocodec.training import gpu_session
from neurocodec.training.checkpoints import read_checkpoint, save_checkpoint
from neurocodec.training.data import DeviceImages, ImageCache


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (h, w) in enumerate([(40, 48), (48, 40), (36, 36), (70, 90), (80, 72)]):
        Image.fromarray(smooth_image(h, w, seed=i)).save(folder / f"{i}.png")
    return folder


def test_device_crops_are_windows_of_the_shard_photos_flipped_or_not(photos, tmp_path):
    cache = ImageCache(photos, tmp_path / "cache", limit=3).subset([0, 1, 2])
    shard = cache.subset([1, 2])  # a rank's share: never crops from photo 0
    crops = DeviceImages(shard, torch.device("cpu")).crops(24, 32, torch.Generator().manual_seed(0))
    assert crops.shape == (24, 3, 32, 32) and crops.dtype == torch.float32
    assert crops.is_contiguous(memory_format=torch.channels_last)
    windows = {}
    for i in shard.items:
        img = cache.image(int(i))
        for y in range(img.shape[0] - 31):
            for x in range(img.shape[1] - 31):
                c = img[y : y + 32, x : x + 32]
                windows[c.tobytes()] = (int(i), False)
                windows.setdefault(c[:, ::-1].tobytes(), (int(i), True))
    found = [windows.get(c.permute(1, 2, 0).to(torch.uint8).numpy().tobytes()) for c in crops]
    assert all(f is not None for f in found)
    assert {i for i, _ in found} <= {1, 2} and {flip for _, flip in found} == {False, True}
    with pytest.raises(ValueError, match="no training photo is 64x64"):
        DeviceImages(shard, torch.device("cpu")).crops(2, 64, torch.Generator())


def test_a_checkpoint_in_parts_reads_back_whole_and_a_broken_one_says_so(tmp_path):
    torch.manual_seed(0)
    model = NicModel(ModelConfig(n=8, m=12, nz=6, nh=10, n_deep=8, lambdas=DEFAULT_LAMBDAS))
    state = {"config": model.cfg.to_dict(), "state": model.state_dict(), "progress": {"step": 3, "pixels": 1.0}}
    path = tmp_path / "ckpt.pt"
    save_checkpoint(state, path)  # a whole file first: the parts replace it
    part_mib = path.stat().st_size / 2**20 / 2.5

    def listed() -> list[str]:
        return json.loads((tmp_path / "ckpt.pt.parts").read_text())["parts"]

    save_checkpoint(state, path, part_mib=part_mib)
    assert len(listed()) == 3 and not path.exists()
    assert all((tmp_path / n).stat().st_size <= part_mib * 2**20 for n in listed())
    state["progress"]["step"] = 4
    save_checkpoint(state, path, part_mib=part_mib)  # the stale parts go
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ckpt.pt.parts", *listed()])
    resumed, _, progress = read_checkpoint(path)
    assert progress["step"] == 4 and all(torch.equal(v, model.state_dict()[k]) for k, v in resumed.state_dict().items())
    part = tmp_path / listed()[1]
    part.write_bytes(part.read_bytes()[:-1] + b"x")
    with pytest.raises(NicError, match="do not add up"):
        read_checkpoint(path)
    save_checkpoint(state, path)  # whole again: the parts go
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_the_gpu_session_on_the_cpu_checkpoints_in_out_and_resumes(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the decoded photos' cache goes to .cache here
    out = tmp_path / "out" / "ckpt"
    smoke = ["--device", "cpu", "--images", "4", "--crop", "32", "--batch", "2", "--threads", "2"]
    smoke += ["--data", str(photos), "--weights", str(ROOT / "weights" / "nic.pt"), "--log-every", "0"]
    r = CliRunner().invoke(gpu_session.main, ["--minutes", "5", "--out", str(out), *smoke, "--steps", "2"])
    assert r.exit_code == 0, r.output
    assert "Mpix/s" in r.output and "--data-on-device" in r.output
    shipped_step = torch.load(ROOT / "weights" / "nic.pt", weights_only=True)["progress"]["step"]
    listed = json.loads((out / "ckpt.pt.parts").read_text())["parts"]
    assert all((out / n).stat().st_size <= 15 * 2**20 for n in listed)
    assert sorted(p.name for p in out.iterdir()) == sorted(["ckpt.pt.parts", *listed])  # all of it comes back
    _, opt_state, progress = read_checkpoint(out / "ckpt.pt", encoder_only=False)
    assert progress["step"] == shipped_step + 2
    assert opt_state is not None
    r = CliRunner().invoke(gpu_session.main, ["--minutes", "5", "--out", str(out), *smoke, "--steps", "1"])
    assert r.exit_code == 0, r.output
    assert f"start: step {shipped_step + 2} " in r.output
    resumed = read_checkpoint(out / "ckpt.pt")[2]
    assert resumed["step"] == shipped_step + 3 and resumed["pixels"] == progress["pixels"] + 2 * 32 * 32


def test_the_gpu_session_stops_before_its_deadline(photos, tmp_path, monkeypatch):
    """A deadline already (nearly) past: no step, but the checkpoint is written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpu_session, "process_start", lambda: __import__("time").time() - 60)
    out = tmp_path / "ckpt"
    args = ["--minutes", "1.1", "--out", str(out), "--device", "cpu", "--images", "2", "--crop", "32"]
    args += ["--data", str(photos), "--weights", str(tmp_path / "none.pt"), "--batch", "1"]
    r = CliRunner().invoke(gpu_session.main, args)
    assert r.exit_code == 0, r.output
    assert read_checkpoint(out / "ckpt.pt")[2]["step"] == 0
    assert read_checkpoint(out / "ckpt.pt")[2]["pixels"] == 0
