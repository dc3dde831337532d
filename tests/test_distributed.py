"""Training on several ranks (gloo on the CPU): one step of N ranks is one step on their batches together."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
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
from neurocodec.training.loop import SYNC_EVERY, cosine_span, main, past_deadline, rank_seeds, train_step

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


def _span_rank(rank: int, port: int, out: str) -> None:
    """A rank whose clock and deadline (its own process start, in gpu_session) are off from rank 0's."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    ranks = distributed.start(torch.device("cpu"))
    real = time.time
    time.time = lambda: real() + 37.0 * rank
    span = cosine_span(ranks, 60.0, real() + 600.0 + 11.0 * rank, 5.0)
    (Path(out) / f"span{rank}.json").write_text(json.dumps(span))
    distributed.stop(ranks)


def test_every_rank_follows_rank_0s_learning_rate_schedule(tmp_path):
    mp.spawn(_span_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    spans = [json.loads((tmp_path / f"span{r}.json").read_text()) for r in (0, 1)]
    assert spans[0] == spans[1]
    assert 500 < spans[0][1] < 600  # the deadline's, not --minutes'


def test_the_deadline_leaves_room_for_the_steps_until_the_ranks_look_again():
    """Ranks agree on stopping every SYNC_EVERY steps: all of them, and one more, must fit before the checkpoint."""
    step, ckpt = 3.0, 20.0
    room = 10.0 + 2 * ckpt  # DEADLINE_RESERVE_S and the checkpoint written twice over
    assert not past_deadline(0.0, room + 2 * step, ckpt, step, sync_every=1)  # alone: every step checks
    assert past_deadline(0.0, room + 2.5 * step, ckpt, step, sync_every=SYNC_EVERY)
    assert past_deadline(0.0, room + (SYNC_EVERY + 0.5) * step, ckpt, step, sync_every=SYNC_EVERY)
    assert not past_deadline(0.0, room + (SYNC_EVERY + 1.5) * step, ckpt, step, sync_every=SYNC_EVERY)


def test_each_rank_and_each_generator_gets_a_seed_of_its_own():
    seeds = [s for rank in range(4) for s in rank_seeds(7, rank)[1:]]  # torch's global ones and the device's
    assert len(set(seeds)) == len(seeds)
    assert len({rank_seeds(7, rank)[0] for rank in range(4)}) == 4  # numpy's crops
    assert rank_seeds(7, 1) == rank_seeds(7, 1)


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
