"""The one-command GPU session, run on the CPU: crops cut on the device, checkpoints in parts, resumed."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT
from helpers import smooth_image
from PIL import Image

from neurocodec.autoencoder.model import DEFAULT_LAMBDAS, ModelConfig, NicModel
from neurocodec.errors import NicError
from neurocodec.training import checkpoints, gpu_session, loop
from neurocodec.training.checkpoints import read_checkpoint, save_candidate, save_checkpoint
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
    # --minutes counts from the process's start, here pytest's: from now instead, however late the test runs.
    monkeypatch.setattr(gpu_session, "process_start", time.time)
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


def tiny() -> NicModel:
    torch.manual_seed(0)
    return NicModel(ModelConfig(n=8, m=12, nz=6, nh=10, n_deep=8, lambdas=DEFAULT_LAMBDAS))


def _state(step: int) -> dict:
    model = tiny()
    return {"config": model.cfg.to_dict(), "state": model.state_dict(), "progress": {"step": step, "pixels": 0}}


class Crash(Exception):
    """The machine stops here."""


class CrashingDisk:
    """Writes and removals that fail at the n-th one, as a crash there would leave the folder."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, crash_at: int, commits: set[str]) -> None:
        self.crash_at, self.commits, self.ops, self.committed = crash_at, commits, 0, False
        real_write, real_unlink = checkpoints.write_atomic, Path.unlink

        def write(path: Path, data: bytes) -> None:
            self.op(real_write, path, data)
            self.committed |= Path(path).name in self.commits

        monkeypatch.setattr(checkpoints, "write_atomic", write)
        monkeypatch.setattr(checkpoints, "save_atomic", lambda obj, path: write(path, _bytes(obj)))
        monkeypatch.setattr(Path, "unlink", lambda p, missing_ok=False: self.op(real_unlink, p, missing_ok))

    def op(self, fn, *args) -> None:
        self.ops += 1
        if self.ops == self.crash_at:
            raise Crash
        fn(*args)


def _bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("before,now", [(None, 0.01), (0.01, None), (0.01, 0.01), (None, None)])
def test_a_crash_at_any_point_of_a_checkpoint_leaves_the_old_one_or_the_new_one(tmp_path, monkeypatch, before, now):
    """The crash comes at each write or removal in turn: what reads back is the old checkpoint until the new
    one's whole file or list is in place, and the new one from then on (part_mib None: a whole file)."""
    path = tmp_path / "ckpt.pt"
    for crash_at in range(1, 200):
        for p in tmp_path.iterdir():
            p.unlink()
        save_checkpoint(_state(1), path, before)
        disk = CrashingDisk(monkeypatch, crash_at, {"ckpt.pt" if now is None else "ckpt.pt.parts"})
        try:
            save_checkpoint(_state(2), path, now)
        except Crash:
            pass
        monkeypatch.undo()
        assert read_checkpoint(path)[2]["step"] == (2 if disk.committed else 1), crash_at
        if disk.ops < crash_at:  # it ran to the end
            break
    assert crash_at > 1 and disk.ops < crash_at
    names = (
        ["ckpt.pt"]
        if now is None
        else ["ckpt.pt.parts", *json.loads(path.with_name("ckpt.pt.parts").read_text())["parts"]]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_a_whole_checkpoint_older_than_the_parts_list_is_not_resumed(tmp_path):
    """A crash between writing the list and removing the old whole file left both: the list is the newer."""
    path = tmp_path / "ckpt.pt"
    save_checkpoint(_state(1), path)
    old = path.read_bytes()
    save_checkpoint(_state(2), path, 0.01)
    path.write_bytes(old)  # as the crash left it
    listed = (tmp_path / "ckpt.pt.parts").stat().st_mtime_ns
    os.utime(path, ns=(listed - 10**9, listed - 10**9))
    assert read_checkpoint(path)[2]["step"] == 2
    os.utime(path, ns=(listed + 10**9, listed + 10**9))  # a whole file written after the list: the whole one
    assert read_checkpoint(path)[2]["step"] == 1


def test_a_cache_built_on_two_machines_at_once_never_shares_a_temporary_file(photos, tmp_path, monkeypatch):
    """Two nodes on one shared disk may run the same process id: their temporary names must differ anyway."""
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    written = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (written.append((Path(src), Path(dst))), real(src, dst)))
    for machine in ("a", "b"):  # two caches, as two machines would see one folder
        ImageCache(photos, tmp_path / "cache" / machine, limit=2)
    assert len(written) == 4 and len({src.name for src, _ in written}) == 4
    assert all(src.parent == dst.parent for src, dst in written)  # in the cache folder itself: one disk
    assert ImageCache(photos, tmp_path / "cache" / "a", limit=2).image(1).shape == (48, 40, 3)


def _one_line_error(output: str) -> str:
    """The error of a command that failed as it should: one line, no traceback."""
    lines = [line for line in output.splitlines() if not line.startswith("gpu_session: python -m")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in output, output
    return lines[0]


def test_a_checkpoint_that_cannot_be_resumed_is_one_line(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpu_session, "process_start", time.time)
    out = tmp_path / "out"
    save_checkpoint(_state(1), out / "ckpt.pt", part_mib=0.01)
    listed = json.loads((out / "ckpt.pt.parts").read_text())["parts"]
    (out / listed[1]).unlink()
    args = ["--minutes", "5", "--out", str(out), "--device", "cpu", "--data", str(photos), "--steps", "1"]
    r = CliRunner().invoke(gpu_session.main, args)
    assert r.exit_code != 0 and isinstance(r.exception, SystemExit)
    assert f"missing or unreadable: No such file or directory: {listed[1]}" in _one_line_error(r.output)
    (out / "ckpt.pt.parts").write_text("{not json")
    r = CliRunner().invoke(gpu_session.main, args)
    assert r.exit_code != 0 and "not a list of checkpoint parts" in _one_line_error(r.output)
    # Retired weights hold a decoder alone: training from them says so.
    retired = next((ROOT / "weights" / "retired").glob("*.pt"))
    args = ["--data", str(photos), "--valid", "", "--candidate", "", "--ckpt", str(tmp_path / "none.pt")]
    r = CliRunner().invoke(loop.main, [*args, "--weights", str(retired), "--device", "cpu", "--steps", "1"])
    assert r.exit_code != 0 and "only a decoder" in _one_line_error(r.output)


def test_adams_moments_take_the_layout_of_their_parameters_on_resume(photos, tmp_path, monkeypatch):
    """Moments saved by a --no-channels-last run (or grown, contiguous) follow their channels_last parameters."""
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "ckpt.pt"
    save_candidate(tiny(), {"step": 0, "pixels": 0.0}, ckpt)
    args = ["--data", str(photos), "--valid", "", "--candidate", "", "--weights", str(tmp_path / "none.pt")]
    args += ["--ckpt", str(ckpt), "--device", "cpu", "--batch", "1", "--crop", "32", "--threads", "1"]
    for layout, steps in (("--no-channels-last", "1"), ("--channels-last", "0"), ("--no-channels-last", "0")):
        r = CliRunner().invoke(loop.main, [*args, layout, "--steps", steps])
        assert r.exit_code == 0, r.output
        c = torch.load(ckpt, weights_only=True)
        names = NicModel.from_state(c["config"], c["state"]).trainable_names(False)
        moments = c["optimizer"]["state"]
        (group,) = c["optimizer"]["param_groups"]
        assert len(group["params"]) == len(names) and len(moments) > len(names) // 2
        four_d = [n for n in names if c["state"][n].dim() == 4]
        assert four_d and c["state"][four_d[0]].is_contiguous(memory_format=torch.channels_last) == (
            layout == "--channels-last"
        )
        for i, name in zip(group["params"], names):
            for key in ("exp_avg", "exp_avg_sq"):
                if i in moments:
                    assert moments[i][key].stride() == c["state"][name].stride(), (layout, name, key)
