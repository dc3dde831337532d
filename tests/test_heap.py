"""heap.kept: freed memory stays in the process inside it, and goes back to the system when it ends."""

from __future__ import annotations

import os

import pytest
import torch

from neurocodec import heap

MIB = 1 << 20
pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="glibc's malloc only: elsewhere kept does nothing")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def touched(mib: int) -> torch.Tensor:
    return torch.ones(mib * MIB // 4)


def test_freed_memory_is_kept_inside_and_returned_after() -> None:
    before = rss()
    t = touched(200)
    del t
    assert rss() - before < 100 * MIB  # outside: a large block goes back to the system on free
    with heap.kept():
        with heap.kept():  # nests
            t = touched(200)
            del t
        assert rss() - before > 150 * MIB  # still inside the outer one: kept
    assert rss() - before < 100 * MIB  # the outermost ended: returned
