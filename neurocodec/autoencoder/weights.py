"""Shipped weights: export from a trained model, safe loading, identity.

A weights file is a plain dict of tensors, numbers and strings written by
torch.save and read back with `weights_only=True`, so loading it cannot run
code. It holds the float transforms, the integer hyper-synthesis, the integer
tables and the integer gains. Its identity is the first 8 bytes of the
SHA-256 of the file; every .nic file records the identity it needs.

Retired weights keep only what decoding reads (`strip_for_decoding`: the
synthesis g_s, the integer networks, tables and gains), about a third of the
file, and carry the identity of the file they came from; the SHA256SUMS of
the shipped retired folder vouches for them (`modelfiles`), and no other
does. They decode and never encode. Retired weights of one's own are whole
files, their hash their identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..atomic import save_atomic, write_atomic
from ..entropy.intnet import IntContext, IntHyperSynthesis, quantize_context, quantize_hyper_synthesis
from ..entropy.tables import TableSet, gaussian_tables, scale_thresholds, z_tables
from ..errors import NicError
from .gains import GAIN_FRAC_BITS
from .latent_codecs import ExactY, FactorizedZ, HyperpriorY
from .model import DECODER_MODULES, NicModel
from .modelfiles import (
    SUMS_NAME,
    candidates,
    identity_of,
    is_shipped_folder,
    listed_sums,
    model_of,
    named_like,
    resolve_weights,
    retired_path,
    sha256_of,
    shipped_sums_stamp,
    sums_text,
    vouched_identity,
)

FORMAT_TAG = "neurocodec-weights"
FORMAT_VERSION = 1
# What a decoder reads of a weights file, beside the synthesis' state (`strip_for_decoding`).
DECODING_KEYS = ("format", "version", "config", "hyper", "context", "y_tables", "z_tables", "thresholds", "gains")


@dataclass
class Weights:
    """Everything encode/decode needs, loaded once per process."""

    model: NicModel  # the float transforms (and the float side of the latent stages, for refinement)
    z: FactorizedZ  # the latent stages with their exact parts
    y: HyperpriorY
    gains: torch.Tensor  # int64 (levels, m), Q16
    identity: bytes  # 8 bytes
    progress: dict
    decoder_only: bool = False  # retired weights: the synthesis and the exact parts alone


def weights_for(identity: bytes, weights: str | os.PathLike | None = None) -> Weights:
    """The weights a .nic file names: those in use, a retired model beside them, or the shipped ones.

    A model update must not orphan the files earlier versions wrote, so the
    weights they need stay in `retired/`. Each file that is the model by its
    bytes (`modelfiles.candidates`) is tried in turn, so a stray copy in one's
    own retired/ does not hide the shipped one; a renamed or edited file
    never stands in for another model.
    """
    current = resolve_weights(weights)
    if not current.is_file():
        raise NicError(f"weights file not found: {current}")
    why = ""
    for path in candidates(identity, weights):
        try:
            w = load_weights(path)
        except NicError as e:
            why += f"; {e}"
            continue
        if w.identity == identity:
            return w
    for path in named_like(identity, weights):
        why += f"; {path} is not that model (neither its hash nor the shipped {SUMS_NAME} says so)"
    raise NicError(
        f"file needs model {identity.hex()}, which is not here (the weights in use are "
        f"{model_of(current).hex()}, {current}{why}); decode it with the neurocodec version that wrote it"
    )


def strip_for_decoding(src: str | Path, dest: str | Path) -> Path:
    """Write the decoder of the weights `src` to `dest` (may be `src`) and list it in the SHA256SUMS there.

    That list vouches for the decoder only in the shipped weights folder
    (weights/retired/ of the repository, to be committed with it).

    Retired weights serve only old files, and decoding reads only the
    synthesis and the exact parts; the analysis, the hyper-analysis, the float
    copies of the integer networks and training's state are a good two thirds
    of the bytes, which every checkout and wheel would carry. The file keeps
    the identity of `src` (its hash no longer gives it) and the SHA-256 of `src`.
    """
    src, dest = Path(src), Path(dest)
    obj = _read(src)
    if obj.get("decoder_only"):
        raise NicError(f"{src} holds a decoder only already")
    stripped = {k: obj[k] for k in DECODING_KEYS if k in obj}
    prefixes = tuple(f"{name}." for name in DECODER_MODULES)
    stripped["state"] = {k: v.clone() for k, v in obj["state"].items() if k.startswith(prefixes)}
    stripped["progress"] = dict(obj["progress"])
    stripped.update(decoder_only=True, identity=identity_of(src).hex(), source_sha256=sha256_of(src))
    save_atomic(stripped, dest)
    listed = {**listed_sums(dest.parent), dest.name: sha256_of(dest)}
    write_atomic(dest.parent / SUMS_NAME, sums_text(listed).encode())
    return dest


def retire_weights(weights: str | Path) -> Path:
    """Keep `weights` as retired/<identity>.pt beside them, before they are replaced; returns that path.

    Beside the shipped weights (an export in the repository), their decoder
    alone, listed in the shipped retired/SHA256SUMS, both to be committed.
    Elsewhere the whole file: its hash is its identity, and a SHA256SUMS
    outside the shipped folder vouches for nothing.
    """
    weights = Path(weights)
    identity = model_of(weights)
    dest = retired_path(weights, identity)
    if dest.is_file() and model_of(dest) == identity:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_shipped_folder(weights):
        strip_for_decoding(weights, dest)
    else:
        write_atomic(dest, weights.read_bytes())
    return dest


@torch.no_grad()
def export_weights(
    model: NicModel,
    path: str | Path,
    progress: dict,
    calib: torch.Tensor,
    training_ladder: NicModel | None = None,
    half: bool = False,
) -> None:
    """Freeze a trained float model into shipped weights with their integer parts.

    calib: typical training crops (B, 3, H, W) in [0, 255]; their hyper-latents
    calibrate the fixed-point activation ranges of the hyper-synthesis.
    training_ladder: the model as trained, when `model` ships fewer of its
    quality levels; its gains are kept for training to resume (coding ignores them).
    half: store the networks' large float tensors in float16 (half the bytes: every
    weights file travels in each checkout and wheel); the integer parts are made
    from the float32 model first, and loading widens the floats back to float32.
    """
    was_training = model.training
    model.eval()
    y = model.analysis(calib)
    z_samples = model.h_a(y).round()
    hyper = quantize_hyper_synthesis(model.h_s, z_samples)
    context = None
    if model.context is not None:
        context = quantize_context(model.context, _anchor_samples(model, y, z_samples))
    model.train(was_training)
    gains = torch.round(model.log_gain.detach().double().exp() * 2.0**GAIN_FRAC_BITS).to(torch.int64)
    obj = {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "config": model.cfg.to_dict(),
        "state": {k: _stored(v, half) for k, v in model.state_dict().items()},
        "hyper": hyper.to_list(),
        **({"context": context.to_dict()} if context is not None else {}),
        "y_tables": gaussian_tables().to_dict(),
        "z_tables": z_tables(model.z_density).to_dict(),
        "thresholds": torch.from_numpy(scale_thresholds()),
        "gains": gains,
        "progress": dict(progress),
    }
    if training_ladder is not None and training_ladder.cfg.lambdas != model.cfg.lambdas:
        obj["training_ladder"] = {
            "lambdas": list(training_ladder.cfg.lambdas),
            "log_gain": training_ladder.log_gain.detach().clone(),
        }
    save_atomic(obj, path)


HALF_MIN_SIZE = 4096  # smaller tensors (gains, biases, GDN's beta) stay float32 under `half`: few bytes


def _stored(v: torch.Tensor, half: bool) -> torch.Tensor:
    v = v.detach().clone()
    return v.half() if half and v.is_floating_point() and v.numel() >= HALF_MIN_SIZE else v


def _anchor_samples(model: NicModel, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Decoded anchors (un-gained, zero elsewhere) at every quality level, as the context sees them."""
    mean, _ = model.h_s(z).chunk(2, dim=1)
    out = []
    for gain in model.log_gain.detach().exp():
        g = gain.view(1, -1, 1, 1)
        out.append(model.y_codec.decoded_anchors(torch.round(y * g - mean * g), mean, g))
    return torch.cat(out)


def _read(path: Path) -> dict:
    if not path.exists():
        raise NicError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise NicError(f"not a neurocodec weights file: {path} ({type(e).__name__})") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_TAG:
        raise NicError(f"not a neurocodec weights file: {path}")
    if obj.get("version") != FORMAT_VERSION:
        raise NicError(f"unsupported weights version {obj.get('version')} in {path}")
    return obj


def load_float_model(path: str | Path) -> tuple[NicModel, dict]:
    """The trainable float model and its training progress (for resuming).

    Weights shipped with fewer quality levels than were trained come back with
    the whole trained ladder (`export_weights(training_ladder=)`), so training
    resumes the top levels' gains instead of guessing them again.
    """
    obj = _read(Path(path))
    if obj.get("decoder_only"):
        raise NicError(f"{path} holds only a decoder (retired weights, kept so old files decode): it cannot be trained")
    model = NicModel.from_state(obj["config"], obj["state"])
    ladder = obj.get("training_ladder")
    if ladder is not None:
        model, _ = model.with_ladder(tuple(ladder["lambdas"]))
        with torch.no_grad():
            model.log_gain.copy_(ladder["log_gain"])
    return model, dict(obj["progress"])


def load_weights(path: str | os.PathLike | None = None) -> Weights:
    """Load the weights for coding (default: `modelfiles.resolve_weights`), once per process while the file stays unchanged."""
    path = resolve_weights(path).resolve()
    try:
        st = path.stat()
    except OSError:
        _read(path)  # raises the one-line error
        raise
    return _load(path, st.st_mtime_ns, st.st_size, shipped_sums_stamp())


@lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int, size: int, sums: tuple[int, int] | None) -> Weights:
    obj = _read(path)
    decoder_only = bool(obj.get("decoder_only"))
    if decoder_only:
        model = NicModel.decoder_from_state(obj["config"], obj["state"]).eval()
    else:
        model = NicModel.from_state(obj["config"], obj["state"]).eval()
    exact = ExactY(
        hyper=IntHyperSynthesis.from_list(obj["hyper"]),
        context=IntContext.from_dict(obj["context"]) if "context" in obj else None,
        tables=TableSet.from_dict(obj["y_tables"]),
        thresholds=obj["thresholds"].to(torch.int64),
    )
    return Weights(
        model=model,
        z=FactorizedZ(model.z_density, TableSet.from_dict(obj["z_tables"])),
        y=HyperpriorY(model.h_s, model.context, exact),
        gains=obj["gains"].to(torch.int64),
        identity=_decoder_identity(path, obj) if decoder_only else identity_of(path),
        progress=dict(obj["progress"]),
        decoder_only=decoder_only,
    )


def _decoder_identity(path: Path, obj: dict) -> bytes:
    """The model a decoder-only file stands for: the one it names, if the shipped SHA256SUMS lists its bytes so.

    Otherwise its own hash, which no encoder ever wrote into a file (these
    weights cannot encode), so a stray, edited or foreign copy decodes nothing.
    """
    claimed, vouched = obj.get("identity"), vouched_identity(path)
    if vouched is not None and claimed == vouched.hex():
        return vouched
    return identity_of(path)
