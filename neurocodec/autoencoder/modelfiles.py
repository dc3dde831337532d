"""Where weights files live and which model each one is, without importing torch.

A .nic file names its model by the first 8 bytes of the SHA-256 of the weights
file. The shipped weights are `weights/nic.pt` in the repository; the ones they
replaced stay in `weights/retired/<identity hex>.pt`, so every file a release
wrote still decodes. An installed neurocodec carries that folder as package
data (`neurocodec/_weights/`, read with importlib.resources). Weights of one's
own come from `weights=` / `--weights PATH` or the NIC_WEIGHTS variable.

Retired files keep only what decoding reads (`weights.strip_for_decoding`), so
their own hash is no longer their identity: the `SHA256SUMS` file beside them
(sha256sum's format, tracked and shipped with them) lists the SHA-256 of each
as written, and a decoder-only file stands for the model its name gives only
while its bytes hash to the listed value.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from functools import lru_cache
from pathlib import Path

RETIRED_DIR = "retired"
SUMS_NAME = "SHA256SUMS"  # beside decoder-only weights: the SHA-256 of each, as retired
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
    return bytes.fromhex(sha256_of(path)[:16])


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file as hex, cached while the file is unchanged (weights files are tens of MB)."""
    st = Path(path).stat()
    return _sha256(Path(path).resolve(), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=16)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sums_stamp(folder: str | os.PathLike) -> tuple[int, int] | None:
    """When and how big the SHA256SUMS of `folder` is (None: there is none), for caches that trust it."""
    try:
        st = (Path(folder) / SUMS_NAME).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def listed_sums(folder: str | os.PathLike) -> dict[str, str]:
    """File name -> SHA-256 (hex) as the SHA256SUMS of `folder` lists them; empty if it has none."""
    listed = {}
    path = Path(folder) / SUMS_NAME
    if not path.is_file():
        return listed
    for line in path.read_text().splitlines():
        digest, _, name = line.strip().partition(" ")
        name = name.strip().removeprefix("*")  # sha256sum's binary-mode marker
        if len(digest) == 64 and name and not line.startswith("#"):
            listed[name] = digest.lower()
    return listed


def is_listed(path: str | os.PathLike) -> bool:
    """Whether the SHA256SUMS beside `path` lists it with the SHA-256 its bytes have now."""
    path = Path(path)
    return path.is_file() and listed_sums(path.parent).get(path.name) == sha256_of(path)


def sums_text(listed: dict[str, str]) -> str:
    """The SHA256SUMS file of these entries, sorted by name (`sha256sum -c SHA256SUMS` checks it)."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(listed.items()))


def retired_path(weights: str | Path, identity: bytes) -> Path:
    """Where the retired weights with this identity live, next to `weights`."""
    return Path(weights).parent / RETIRED_DIR / f"{identity.hex()}.pt"


def find_model(identity: bytes, weights: str | os.PathLike | None = None) -> Path | None:
    """The weights file of the model `identity` names; None if it is not here.

    Looked for, in order: the weights in use and their retired models, then the
    shipped weights and theirs (so one's own weights still decode shipped files).
    Retired files are found by name; the caller checks the identity it loads
    (the file's hash, or for a decoder-only file its SHA256SUMS entry).
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
