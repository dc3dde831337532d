"""Where weights files live and which model each one is, without importing torch.

A .nic file names its model by the first 8 bytes of the SHA-256 of the weights
file. The shipped weights are `weights/nic.pt` in the repository; the ones they
replaced stay in `weights/retired/<identity hex>.pt`, so every file a release
wrote still decodes. An installed neurocodec carries that folder as package
data (`neurocodec/_weights/`, read with importlib.resources). Weights of one's
own come from `weights=` / `--weights PATH` or the NIC_WEIGHTS variable.

Retired files keep only what decoding reads (`weights.strip_for_decoding`), so
their own hash is no longer their identity: the `SHA256SUMS` of the shipped
retired folder (sha256sum's format, tracked and shipped with them) lists the
SHA-256 of each as written, and a decoder-only file stands for the model its
name there gives only while its bytes hash to the listed value, wherever the
file lies. That list alone is trusted: anyone can write a SHA256SUMS beside a
file of their making. Retired weights of one's own stay whole (their hash is
their identity), in `retired/` beside one's weights.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
from functools import lru_cache
from pathlib import Path

from ..errors import NicError
from ..settings import DEFAULT_TUNE, FIRST_FITTED, MAX_EFFORT, TUNES, check_tune

RETIRED_DIR = "retired"
SUMS_NAME = "SHA256SUMS"  # in the shipped retired folder: the SHA-256 of each decoder-only file there
WEIGHTS_ENV = "NIC_WEIGHTS"


def _shipped_dir() -> Path:
    """The installed package data, or the repository's weights/ folder beside the package in a checkout."""
    packaged = importlib.resources.files("neurocodec") / "_weights"
    if isinstance(packaged, Path) and (packaged / "nic.pt").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "weights"


def tuned_weights_path(weights: Path, tune: str) -> Path:
    """The weights tuned for `tune` beside `weights` (the PSNR ones): nic.pt, nic-ssim.pt."""
    return weights if tune == DEFAULT_TUNE else weights.with_name(f"{weights.stem}-{tune}{weights.suffix}")


DEFAULT_WEIGHTS = _shipped_dir() / "nic.pt"  # the weights this release ships
# The shipped weights of each tuning (`settings.TUNES`); files name their model, so any of them decodes.
TUNED_WEIGHTS = {tune: tuned_weights_path(DEFAULT_WEIGHTS, tune) for tune in TUNES}


def tuned_weights(tune: str, weights: str | os.PathLike | None, effort: int) -> str | os.PathLike | None:
    """The weights to encode with for `tune`: those given (or None: the default) for PSNR, else the shipped ones
    tuned for it; a tuning that cannot apply fails before any work is done."""
    if check_tune(tune) == DEFAULT_TUNE:
        return weights
    if weights is not None:
        raise NicError(f"give weights or tune {tune}, not both: the tuning picks the shipped weights tuned for it")
    if effort >= FIRST_FITTED:
        raise NicError(
            f"tune {tune} is for efforts 0-{FIRST_FITTED - 1}: the fitted efforts ({FIRST_FITTED}-{MAX_EFFORT}) "
            "are tuned for PSNR"
        )
    path = TUNED_WEIGHTS[tune]
    if not path.is_file():
        raise NicError(f"the weights tuned for {tune} are not installed ({path} is missing)")
    return path


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


def sums_text(listed: dict[str, str]) -> str:
    """The SHA256SUMS file of these entries, sorted by name (`sha256sum -c SHA256SUMS` checks it)."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(listed.items()))


def shipped_sums() -> dict[str, str]:
    """The SHA-256 of each decoder-only retired file this release ships, by name: the one SHA256SUMS trusted."""
    return listed_sums(_shipped_dir() / RETIRED_DIR)


def shipped_sums_stamp() -> tuple[int, int] | None:
    """When and how big the shipped retired folder's SHA256SUMS is (None: there is none), for caches of what it
    vouches for."""
    try:
        st = (_shipped_dir() / RETIRED_DIR / SUMS_NAME).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def vouched_identity(path: str | os.PathLike) -> bytes | None:
    """The model a decoder-only file stands for if the shipped SHA256SUMS lists its bytes (under `<model>.pt`), else None.

    The bytes decide, not where the file lies: a copy of a shipped retired
    file decodes anywhere, and a file with another hash nowhere.
    """
    digest = sha256_of(path)
    for name, listed in shipped_sums().items():
        stem, suffix = os.path.splitext(name)
        if listed == digest and suffix == ".pt" and re.fullmatch("[0-9a-f]{16}", stem):
            return bytes.fromhex(stem)
    return None


def model_of(path: str | os.PathLike) -> bytes:
    """Which model a weights file is, from its bytes alone (no torch): the shipped SHA256SUMS's word, else its hash."""
    return vouched_identity(path) or identity_of(path)


def retired_path(weights: str | Path, identity: bytes) -> Path:
    """Where the retired weights with this identity live, next to `weights`."""
    return Path(weights).parent / RETIRED_DIR / f"{identity.hex()}.pt"


def is_shipped_folder(weights: str | os.PathLike) -> bool:
    """Whether `weights` lie in the shipped weights folder, whose retired/SHA256SUMS is trusted."""
    return Path(weights).resolve().parent == _shipped_dir().resolve()


def candidates(identity: bytes, weights: str | os.PathLike | None = None) -> list[Path]:
    """Every file here that is the model `identity` names (by its bytes), in the order to try them.

    Looked at, in order: the weights in use and their retired models, then
    the shipped weights and theirs (so one's own weights still decode shipped
    files). A file is the model if its hash is that identity, or the shipped
    SHA256SUMS lists its bytes under that model's name; a copy that is not
    (edited, foreign, or vouched for only by a SHA256SUMS beside it) is
    passed over, so it cannot hide the right one further on.
    """
    found: list[Path] = []
    for w in dict.fromkeys((resolve_weights(weights), *TUNED_WEIGHTS.values())):
        for path in (w, retired_path(w, identity)):
            try:
                if path.is_file() and model_of(path) == identity and path.resolve() not in found:
                    found.append(path.resolve())
            except OSError:  # unreadable: not this model as far as we can tell
                continue
    return found


def named_like(identity: bytes, weights: str | os.PathLike | None = None) -> list[Path]:
    """Retired files that carry the name of model `identity` but are not that model (to say why it is missing)."""
    named = dict.fromkeys(
        retired_path(w, identity).resolve() for w in (resolve_weights(weights), *TUNED_WEIGHTS.values())
    )
    good = candidates(identity, weights)
    return [p for p in named if p.is_file() and p not in good]


def find_model(identity: bytes, weights: str | os.PathLike | None = None) -> Path | None:
    """The first weights file here that is the model `identity` names (`candidates`); None if there is none."""
    found = candidates(identity, weights)
    return found[0] if found else None


def availability(identity: bytes, weights: str | os.PathLike | None = None) -> str:
    """In words, whether a file made for `identity` decodes with these weights (hashes checked, nothing decoded)."""
    found = find_model(identity, weights)
    if found is None:
        impostors = named_like(identity, weights)
        why = f" ({impostors[0]} is not that model)" if impostors else ""
        return f"not available here{why}: decode it with the neurocodec version that wrote it"
    if found == resolve_weights(weights).resolve():
        return "the current weights"
    for tune, path in TUNED_WEIGHTS.items():
        if found == path.resolve():
            return "the shipped weights" + ("" if tune == DEFAULT_TUNE else f" tuned for {tune}")
    return "retired weights, kept for decoding"
