"""Where weights files live and which model each one is, without importing torch.

A .nic file names its model by the first 8 bytes of the SHA-256 of the weights
file. The shipped weights are `weights/nic.pt` in the repository; the ones they
replaced stay in `weights/retired/<identity hex>.pt`, so every file a release
wrote still decodes. An installed neurocodec carries that folder as package
data (`neurocodec/_weights/`, read with importlib.resources). Weights of one's
own come from `weights=` / `--weights PATH` or the NIC_WEIGHTS variable.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import shutil
from functools import lru_cache
from pathlib import Path

RETIRED_DIR = "retired"
WEIGHTS_ENV = "NIC_WEIGHTS"


def _shipped_dir() -> Path:
    """The installed package data, or the repository's weights/ folder beside the package in a checkout."""
    packaged = importlib.resources.files("neurocodec") / "_weights"
    if isinstance(packaged, Path) and (packaged / "nic.pt").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "weights"


DEFAULT_WEIGHTS = _shipped_dir() / "nic.pt"  # the weights this release ships


def resolve_weights(weights: str | os.PathLike | None = None) -> Path:
    """The weights to use: those given, else $NIC_WEIGHTS, else the shipped ones."""
    if weights is not None:
        return Path(weights)
    return Path(os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS)


def identity_of(path: str | os.PathLike) -> bytes:
    """The model identifier of a weights file: the first 8 bytes of its SHA-256 (cached while the file is unchanged)."""
    st = Path(path).stat()
    return _identity(Path(path).resolve(), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=16)
def _identity(path: Path, mtime_ns: int, size: int) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()[:8]


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


def find_model(identity: bytes, weights: str | os.PathLike | None = None) -> Path | None:
    """The weights file of the model `identity` names; None if it is not here.

    Looked for, in order: the weights in use and their retired models, then the
    shipped weights and theirs (so one's own weights still decode shipped files).
    Retired files are found by name and the caller checks the hash it loads.
    """
    for w in dict.fromkeys((resolve_weights(weights), DEFAULT_WEIGHTS)):
        if w.is_file() and identity_of(w) == identity:
            return w
        if (old := retired_path(w, identity)).is_file():
            return old
    return None


def availability(identity: bytes, weights: str | os.PathLike | None = None) -> str:
    """In words, whether a file made for `identity` decodes with these weights."""
    found = find_model(identity, weights)
    if found is None:
        return "not available here: decode it with the neurocodec version that wrote it"
    if found == resolve_weights(weights):
        return "the current weights"
    if found == DEFAULT_WEIGHTS:
        return "the shipped weights"
    return "retired weights, kept for decoding"
