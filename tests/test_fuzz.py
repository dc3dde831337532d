"""Mutated .nic files (bit flips, truncation, splices, edge header values, with and without a
fixed-up checksum) give NicError or an image: never another exception, never a hang."""

from __future__ import annotations

import importlib.util

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("fuzz", ROOT / "benchmarks" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


def test_mutated_files_fail_cleanly():
    counts = fuzz.run(fuzz.seed_files(), cases=400, seed=7, max_pixels=1 << 16)
    assert sum(counts.values()) == 400
    # The campaign reaches past the checksum: entropy decoding errors occur too.
    assert any(k.startswith("corrupted file:") for k in counts), counts


def test_mutations_change_the_file():
    import numpy as np

    seeds = fuzz.seed_files()
    rng = np.random.default_rng(0)
    assert all(fuzz.mutate(seeds[0], seeds[1], rng) != seeds[0] for _ in range(50))
