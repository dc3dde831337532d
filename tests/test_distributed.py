"""Training on several ranks (gloo on the CPU): one step of N ranks is one step on their batches together."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner
from helpers import smooth_image
from PIL import Image

import neurocodec.autoencoder.model as model_module
from neurocodec.autoencoder.model import ModelConfig, NicModel
from neurocodec.training import distributed
from neurocodec.training.checkpoints import save_candidate
from neurocodec.training.loop import main, train_step

LR = 1e-3


def tiny() -> NicModel:
    torch.manual_seed(0)
    return NicModel(ModelConfig(n=8, m=12, nz=6, nh=10, n_deep=8, nc=8, lambdas=(0.01, 0.1))).train()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four 64x64 crops and their levels: ranks 0 and 1 take two each."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 64, 64, generator=g) * 255, torch.tensor([0, 1, 1, 0])


def no_noise(t: torch.Tensor) -> torch.Tensor:
    """The training noise, off: it is drawn per call, so two ranks cannot draw what one process draws for their
    batches together; without it both compute one function."""
    return t


def one_step(model: NicModel, step_model: torch.nn.Module, x: torch.Tensor, level: torch.Tensor) -> None:
    """The loop's step: Adam on R + lambda*D."""
    opt = torch.optim.Adam(model.trainable(), lr=LR)
    train_step(step_model, opt, x, level, torch.tensor(model.cfg.lambdas), bf16=False)


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    model_module.uniform_noise = no_noise
    ranks = distributed.start(torch.device("cpu"))
    model = tiny()
    x, level = batch()
    mine = distributed.shard(4, ranks)  # crops 0, 2 on rank 0 and 1, 3 on rank 1
    one_step(model, distributed.wrap(model, ranks), x[mine], level[mine])
    torch.save(model.state_dict(), Path(out) / f"rank{rank}.pt")
    distributed.stop(ranks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_step_on_two_ranks_is_a_step_on_their_batches_together(tmp_path, monkeypatch):
    mp.spawn(_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    monkeypatch.setattr(model_module, "uniform_noise", no_noise)
    alone = tiny()
    before = {k: v.clone() for k, v in alone.state_dict().items()}
    one_step(alone, alone, *batch())
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    moved = 0
    for name, want in alone.state_dict().items():
        for got in ranks:  # Adam's first step moves each weight by about LR: the tolerance is far below it
            torch.testing.assert_close(got[name], want, rtol=0, atol=LR * 1e-2, msg=name)
        moved += int((want - before[name]).abs().max() > LR / 2)
    assert moved > 20  # the step did move the weights


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(80, 96, seed=i)).save(folder / f"{i}.png")
    return folder


def test_a_checkpoint_of_two_ranks_resumes_on_one(tmp_path, photos, monkeypatch):
    ckpt = tmp_path / "ckpt.pt"
    save_candidate(tiny(), {"step": 10, "pixels": 100.0}, ckpt)
    args = ["--data", str(photos), "--valid", "", "--candidate", "", "--weights", str(tmp_path / "none.pt")]
    args += ["--ckpt", str(ckpt), "--device", "cpu", "--batch", "1", "--crop", "64", "--threads", "1"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    r = subprocess.run(
        [*torchrun, "-m", "neurocodec.training", *args, "--steps", "2", "--seed", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("checkpoint: step 12") == 1  # rank 0 alone writes and prints
    assert "x 2 ranks" in r.stdout
    c = torch.load(ckpt, weights_only=True)
    assert c["progress"] == {"step": 12, "pixels": 100.0 + 2 * 2 * 64 * 64}  # both ranks' pixels
    assert not any(k.startswith("module.") for k in c["state"])  # the model itself, not DDP's wrapper

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, [*args, "--steps", "1"])
    assert r.exit_code == 0, r.output
    assert "Adam starts afresh" not in r.output
    c = torch.load(ckpt, weights_only=True)
    assert c["progress"] == {"step": 13, "pixels": 100.0 + 5 * 64 * 64}
    assert all(float(s["step"]) == 3 for s in c["optimizer"]["state"].values())  # Adam's moments carried on
