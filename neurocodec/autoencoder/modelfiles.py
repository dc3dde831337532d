"""Where weights files live and which model each one is, without importing torch.

A .nic file names its model by the first 8 bytes of the SHA-256 of the weights
file. The current weights are `weights/nic.pt`; the ones they replaced stay in
`weights/retired/<identity hex>.pt`, so every file a release wrote still decodes.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent.parent / "weights" / "nic.pt"
RETIRED_DIR = "retired"


def identity_of(path: str | Path) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()[:8]


def retired_path(weights: str | Path, identity: bytes) -> Path:
    """Where the retired weights with this identity live, next to `weights`."""
    return Path(weights).parent / RETIRED_DIR / f"{identity.hex()}.pt"


def retire_weights(weights: str | Path) -> Path:
    """Copy `weights` to its retired name before it is replaced; returns that path."""
    weights = Path(weights)
    dest = retired_path(weights, identity_of(weights))
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        shutil.copyfile(weights, tmp)
        tmp.replace(dest)
    return dest


def availability(identity: bytes, weights: str | Path = DEFAULT_WEIGHTS) -> str:
    """In words, whether a file made for `identity` decodes with these weights."""
    weights = Path(weights)
    if weights.exists() and identity_of(weights) == identity:
        return "the current weights"
    if retired_path(weights, identity).exists():
        return "retired weights, kept for decoding"
    return "not available here: decode it with the neurocodec version that wrote it"
