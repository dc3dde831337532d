"""Where training resumes from: the local checkpoint, the shipped weights or a committed candidate.

A checkpoint is a plain dict read with `weights_only=True`: the float model's
configuration and state, Adam's state (for the parameters `NicModel.trainable`
gave the run that wrote it, whole-model or encoder-only), and the progress counters.
It is one file, or (`save_checkpoint(part_mib=)`) parts of a few MiB each and
a list of them, for a machine that returns files up to a size only.

A candidate (`DEFAULT_CANDIDATE`, written by `export --candidate`) is
optional: where there is none, training starts from the shipped weights. The
tree holds none at present; session 7's (weights/TRAINING.md) is in git
history: `git show d779ac7:weights/candidate.pt > weights/candidate.pt`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import torch

from ..atomic import save_atomic, write_atomic
from ..autoencoder.model import LADDERS, NicModel
from ..autoencoder.weights import load_float_model
from ..errors import NicError
from . import growth

DEFAULT_CANDIDATE = "weights/candidate.pt"  # where export --candidate writes one; skipped while absent


def _parts_list(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def save_checkpoint(state: dict, path: Path, part_mib: float | None = None) -> None:
    """`state` as the file `path`, or with `part_mib` as parts of at most that many MiB beside it.

    Parts are named after the bytes they hold and listed in `path`.parts,
    written after them. Read them back with `read_checkpoint(path)`, or join
    them in their listed order (`cat`) into one checkpoint file. A crash at
    any point leaves the previous checkpoint or this one readable: the form
    written last (whole file or list) is made newer than the other before the
    other is removed, and a reader that finds both takes the newer (`_load`).
    """
    if part_mib is None:
        save_atomic(state, path)
        listed = _parts_list(path)
        if listed.is_file():  # the whole file replaces the parts
            _make_newer(path, listed)
            names = []
            try:
                names = json.loads(listed.read_text())["parts"]
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a broken list: the glob below still finds its parts
            listed.unlink()  # first: the list must never name parts that are gone
            for name in [*names, *(p.name for p in path.parent.glob(f"{path.name}.*.*"))]:
                if not name.endswith(".tmp"):
                    (path.parent / name).unlink(missing_ok=True)
        return
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    step = max(1, int(part_mib * 2**20))
    path.parent.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(0, len(data), step):
        names.append(f"{path.name}.{digest[:12]}.{i // step}")
        write_atomic(path.parent / names[-1], data[i : i + step])
    write_atomic(_parts_list(path), json.dumps({"parts": names, "sha256": digest}).encode())
    if path.is_file():  # an older whole checkpoint: the list now wins over it, then it goes
        _make_newer(_parts_list(path), path)
        path.unlink()
    for old in path.parent.glob(f"{path.name}.*.*"):
        if old.name not in names and not old.name.endswith(".tmp"):
            old.unlink(missing_ok=True)


def _make_newer(new: Path, old: Path) -> None:
    """Give `new` a later modification time than `old` if the file system's clock did not (coarse timestamps)."""
    new_ns, old_ns = new.stat().st_mtime_ns, old.stat().st_mtime_ns
    if new_ns <= old_ns:
        later = old_ns + 1_000_000_000  # a second: file systems that keep whole seconds keep it too
        os.utime(new, ns=(later, later))


def checkpoint_exists(path: Path) -> bool:
    """Whether `path` holds a checkpoint, whole or in parts."""
    return path.is_file() or _parts_list(path).is_file()


def _load(path: Path) -> dict:
    """The checkpoint at `path`: the whole file or its parts, whichever was written last if a crash left both."""
    listed_path = _parts_list(path)
    whole = path.is_file()
    if not listed_path.is_file():
        if not whole:
            raise NicError(f"checkpoint not found: {path}")
        return _torch_load(path, path)
    if whole and path.stat().st_mtime_ns > listed_path.stat().st_mtime_ns:
        return _torch_load(path, path)
    try:
        listed = json.loads(listed_path.read_text())
        names, digest = list(listed["parts"]), str(listed["sha256"])
    except (ValueError, KeyError, TypeError) as e:
        raise NicError(f"{listed_path} is not a list of checkpoint parts ({type(e).__name__})") from None
    chunks = []
    for name in names:
        try:
            chunks.append((path.parent / str(name)).read_bytes())
        except OSError as e:
            raise NicError(f"a part of the checkpoint {path} is missing or unreadable: {e.strerror}: {name}") from None
    data = b"".join(chunks)
    if hashlib.sha256(data).hexdigest() != digest:
        raise NicError(f"the parts of {path} do not add up to the checkpoint they list")
    return _torch_load(io.BytesIO(data), path)


def _torch_load(source: Path | io.BytesIO, path: Path) -> dict:
    """torch.load of a checkpoint, its failure one line."""
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a zip archive, forbidden types: all say the same to the user
        raise NicError(f"not a readable checkpoint: {path} ({type(e).__name__})") from e
    if not isinstance(obj, dict) or "config" not in obj or "state" not in obj:
        raise NicError(f"not a training checkpoint: {path}")
    return obj


def read_checkpoint(path: Path, encoder_only: bool | None = None) -> tuple[NicModel, growth.NamedAdam | None, dict]:
    """Model, optimizer state by parameter name and progress.

    encoder_only: whether the optimizer state will drive an encoder-only run;
    state saved for the other kind, or for tensors it does not fit, is dropped
    (None: the caller does not use the state, which is dropped too).
    """
    c = _load(path)
    model = NicModel.from_state(c["config"], c["state"])
    opt_state, named = c.get("optimizer"), None
    saved_for = bool(c.get("encoder_only", False))
    if opt_state is not None and encoder_only is not None:
        if saved_for != encoder_only:
            print("the checkpoint's optimizer state was for other tensors; Adam starts afresh", flush=True)
        else:
            named = growth.NamedAdam.of(opt_state, model.trainable_names(saved_for))
            if named is None:
                print("the checkpoint's optimizer state does not fit its model; Adam starts afresh", flush=True)
    return model, named, dict(c["progress"])


def trained_pixels(path: Path) -> float:
    return float(_load(path)["progress"]["pixels"])


def _candidate_leads(candidate: Path | None, shipped: Path) -> bool:
    """Whether a committed candidate has trained longer than the shipped weights (or is all there is; False: none)."""
    if candidate is None or not candidate.exists():
        return False
    return not shipped.exists() or trained_pixels(candidate) > trained_pixels(shipped)


def save_candidate(model: NicModel, progress: dict, path: str | Path) -> None:
    """The float model alone (no optimizer state, no coding tables), to resume training from.

    Training state on a machine is lost with it; a model that is still behind
    the shipped one at its middle qualities (say, just grown) is committed as
    a candidate instead, and the next run resumes it (`load_start`).
    """
    save_atomic({"config": model.cfg.to_dict(), "state": model.state_dict(), "progress": dict(progress)}, path)


def on_default_ladder(model: NicModel, named: growth.NamedAdam | None = None) -> NicModel:
    """The model on the quality ladder this code defines for its distortion (`LADDERS`), its Adam state following."""
    ladder = LADDERS[model.cfg.distortion]
    if tuple(model.cfg.lambdas) == ladder:
        return model
    print(f"moving the quality ladder from {model.cfg.levels} to {len(ladder)} levels", flush=True)
    model, nearest = model.with_ladder(ladder)
    if named is not None:
        named.levels(nearest)
    return model


def load_start(
    ckpt: Path,
    shipped: Path,
    latent_channels: int | None = None,
    deep_channels: int | None = None,
    candidate: Path | None = None,
    context_channels: int | None = None,
    channels: int | None = None,
    encoder_blocks: int | None = None,
    encoder_only: bool | None = None,
    distortion: str = "mse",
    base: Path | None = None,
) -> tuple[NicModel, dict | None, dict]:
    """Model, optimizer state and progress counters to continue from.

    The local checkpoint if there is one; otherwise whichever of the shipped
    weights and the committed candidate has seen more training pixels. A
    model trained on another quality ladder moves to the ladder this code
    defines (`DEFAULT_LAMBDAS`); one with fewer than `latent_channels` latent
    channels, `deep_channels` channels at 1/8 resolution or `channels` at
    1/2 and 1/4 resolution grows them, one without a context model gets
    one of `context_channels`, and one with fewer residual blocks on y in its
    analysis gets `encoder_blocks`; all of them keep what they learned, and
    Adam's moments follow their tensors by name.
    `encoder_only`: whether the returned optimizer state is for
    `model.trainable(encoder_only=True)` (None: no state is returned).
    `distortion`: what the model is trained for ("mse", "msssim"); weights
    trained for the other one are retuned (`NicModel.retuned`). `base`: the
    weights to start from when there is no checkpoint, candidate or
    `shipped` file yet (the MSE weights, for a first MS-SSIM run).
    """
    named = None
    if checkpoint_exists(ckpt):
        model, named, progress = read_checkpoint(ckpt, encoder_only)
    elif _candidate_leads(candidate, shipped):
        print(f"resuming the candidate {candidate}", flush=True)
        model, _, progress = read_checkpoint(candidate)
    elif shipped.exists():
        model, progress = load_float_model(shipped)
    elif base is not None and base.exists():
        print(f"starting from {base}", flush=True)
        model, progress = load_float_model(base)
    else:
        return NicModel(), None, {"step": 0, "pixels": 0}
    model = on_default_ladder(model, named)
    if model.cfg.distortion != distortion:
        print(f"retuning the model from {model.cfg.distortion} to {distortion}", flush=True)
        model = model.retuned(distortion)
    growths = (
        ("latent channels", "m", latent_channels, growth.widened),
        ("1/8-resolution layers' channels", "n_deep", deep_channels, growth.deepened),
        ("1/2- and 1/4-resolution layers' channels", "n", channels, growth.broadened),
    )
    for what, name, target, grow in growths:
        if target and target > getattr(model.cfg, name):
            print(f"growing the {what} from {getattr(model.cfg, name)} to {target}", flush=True)
            model, place = grow(model, target)
            if named is not None:
                named.grow(place, model)
    if context_channels and model.context is None:
        print(f"adding a checkerboard context model of {context_channels} channels", flush=True)
        model = growth.with_context(model, context_channels)
    if encoder_blocks and encoder_blocks > model.cfg.ne:
        print(f"adding residual blocks on y to the analysis: {model.cfg.ne} -> {encoder_blocks}", flush=True)
        model = growth.with_encoder_blocks(model, encoder_blocks)
    opt_state = None
    if named is not None and encoder_only is not None:
        opt_state = named.for_optimizer(model, model.trainable_names(encoder_only))
    return model, opt_state, progress
