"""The process group of a run under torchrun: this process's rank, its share of the photos, the few collectives.

    torchrun --nproc_per_node 8 -m neurocodec.training ...

torchrun starts one process per GPU and tells each its place in the
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT);
`start` reads it and joins the group (NCCL on CUDA, gloo on the CPU). Every
rank trains the same model (DistributedDataParallel averages the gradients)
on its own shard of the photos with its own random stream; rank 0 alone
loads the start point, which the others receive, and writes checkpoints,
exports and log lines. Without torchrun there is one rank, no group, and
every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")

# How long a rank waits for the others at a collective: rank 0 alone validates, checkpoints and exports meanwhile.
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: global rank, how many ranks, rank on this machine, its device."""

    rank: int
    world: int
    local: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0, the one that writes files and prints."""
        return self.rank == 0


def start(device: torch.device) -> Ranks:
    """Join torchrun's process group if this process was started by it (WORLD_SIZE > 1), else one rank.

    On CUDA each rank takes the GPU of its local rank; `device` is where the
    caller would run alone ('cuda' or 'cpu').
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(0, 1, 0, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    return Ranks(rank, world, local, device)


def stop(ranks: Ranks) -> None:
    """Leave the group once every rank is done (rank 0's last checkpoint written)."""
    if ranks.world > 1:
        barrier(ranks)
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier(device_ids=[ranks.local] if ranks.device.type == "cuda" else None)


def from_main(ranks: Ranks, obj: T | None) -> T:
    """Rank 0's `obj` on every rank (pickled; for the start point, once per run)."""
    if ranks.world == 1:
        return obj  # type: ignore[return-value]
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=ranks.device if ranks.device.type == "cuda" else None)
    return box[0]  # type: ignore[return-value]


def agree(ranks: Ranks, seconds: float, stop: bool) -> tuple[float, bool]:
    """The largest training clock of all ranks, and whether any of them wants to stop.

    Each rank times itself, and a signal reaches them at different steps: the
    learning rate and the last step must be the same on all of them, or
    their weights drift apart and a rank left waiting for its peers hangs.
    """
    if ranks.world == 1:
        return seconds, stop
    t = torch.tensor([seconds, float(stop)], dtype=torch.float64, device=ranks.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t[0]), bool(t[1])


def wrap(model: nn.Module, ranks: Ranks) -> nn.Module:
    """The model whose backward pass averages the gradients over the ranks (itself with one rank).

    The gradients of a mean loss averaged over ranks are those of the mean
    over their batches together, so a step with N ranks of B crops is a step
    on N*B crops. DDP copies rank 0's weights to all ranks here.
    """
    if ranks.world == 1:
        return model
    return DistributedDataParallel(model, device_ids=[ranks.local] if ranks.device.type == "cuda" else None)


def shard(n: int, ranks: Ranks) -> list[int]:
    """Which of n photos this rank trains on: every world-th one, from its rank on."""
    if n < ranks.world:
        raise ValueError(f"{ranks.world} ranks but only {n} training photos: each rank needs one at least")
    return list(range(ranks.rank, n, ranks.world))
