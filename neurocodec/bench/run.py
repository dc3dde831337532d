"""Rate-distortion measurement: nic and the reference codecs on the same images, compared by BD-rate.

Protocol: bits per pixel from the real encoded bytes (headers included), RGB
PSNR and MS-SSIM averaged over images, median encode and decode time per
image, Bjontegaard deltas over the overlapping range. The package's docstring
shows the use.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import NicError
from ..metrics import ms_ssim, msssim_db, msssim_scales, psnr
from .bjontegaard import bd_psnr, bd_rate
from .references import (
    LABELS,
    REFERENCE_SETTINGS,
    REFERENCES,
    SWEEPS,
    library_versions,
    reference_decode,
    reference_encode,
)

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".avif", ".jp2"}


def settings_text(codecs: Sequence[str]) -> dict[str, str]:
    """Reproducible one-line description of how each codec is run."""
    versions = library_versions()
    out = {}
    for c in codecs:
        if c == "nic":
            out[c] = "nic: neurocodec.encode(image, quality=V) (V: the quality ladder of the loaded weights)"
        else:
            call = REFERENCE_SETTINGS[c].split(": ", 1)[1]
            out[c] = f"{LABELS[c]} ({versions[c]}, Pillow {versions['pillow']}): {call}"
    return out


def find_images(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files given directly, plus the image files directly inside given folders (sorted).

    No paths: the example photos shipped with neurocodec.
    """
    if not paths:
        if not EXAMPLES.is_dir():
            raise NicError("no images given and no examples/ folder next to neurocodec: pass images or folders")
        paths = [EXAMPLES]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise NicError(f"no images found in {p}")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise NicError(f"no such file or folder: {p}")
    return files


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise NicError(f"cannot read {path} as an image ({type(e).__name__})") from e


def load_images(paths: Sequence[str | os.PathLike]) -> tuple[list[str], list[np.ndarray]]:
    """find_images, read: (names, RGB uint8 arrays)."""
    files = find_images(paths)
    return [str(f) for f in files], [read_image(f) for f in files]


@dataclass
class Point:
    """One setting of one codec, averaged over images."""

    setting: float
    bpp: float  # mean over images of 8 * bytes / pixels
    psnr: float  # mean over images of RGB PSNR (dB)
    encode_ms: float  # median over images
    decode_ms: float
    per_image: list[list[float]] = field(default_factory=list)  # [bpp, psnr(, msssim)] per image
    msssim: float = math.nan  # mean over images; nan: not measured

    @property
    def msssim_db(self) -> float:
        return msssim_db(self.msssim) if math.isfinite(self.msssim) else math.nan

    @classmethod
    def from_dict(cls, d: dict) -> Point:
        """Also reads points saved before MS-SSIM was measured."""
        ms = d.get("msssim")
        return cls(
            setting=d["setting"],
            bpp=d["bpp"],
            psnr=d["psnr"],
            encode_ms=d["encode_ms"],
            decode_ms=d["decode_ms"],
            per_image=[[math.nan if x is None else x for x in v] for v in d.get("per_image", [])],
            msssim=math.nan if ms is None else float(ms),
        )


def json_clean(v):
    """A copy of nested dicts/lists with nan and inf replaced by None (strict JSON)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_clean(x) for x in v]
    return v


Coder = tuple[Callable[[Image.Image, float], bytes], Callable[[bytes], Image.Image]]


def measure(
    images: Sequence[np.ndarray],
    setting: float,
    enc: Callable[[Image.Image, float], bytes],
    dec: Callable[[bytes], Image.Image],
    msssim: bool = False,
    tick: Callable[[], None] | None = None,
) -> Point:
    """Encode and decode every image at one setting; sizes from the real bytes."""
    per_image, enc_ms, dec_ms = [], [], []
    for a in images:
        im = Image.fromarray(a)
        t0 = time.perf_counter()
        data = enc(im, setting)
        t1 = time.perf_counter()
        out = np.asarray(dec(data))
        t2 = time.perf_counter()
        row = [8 * len(data) / (a.shape[0] * a.shape[1]), psnr(out, a)]
        if msssim:
            row.append(ms_ssim(out, a) if msssim_scales(*a.shape[:2]) else math.nan)
        per_image.append(row)
        enc_ms.append(1000 * (t1 - t0))
        dec_ms.append(1000 * (t2 - t1))
        if tick:
            tick()
    arr = np.array(per_image)
    return Point(
        setting=setting,
        bpp=float(arr[:, 0].mean()),
        psnr=float(arr[:, 1].mean()),
        encode_ms=float(np.median(enc_ms)),
        decode_ms=float(np.median(dec_ms)),
        per_image=per_image,
        msssim=float(arr[:, 2].mean()) if msssim else math.nan,
    )


def nic_ladder(weights: str | os.PathLike | None = None) -> list[float]:
    """nic's sweep: every trained quality level of the weights (quality 0..100 spans them evenly)."""
    from ..autoencoder.modelfiles import DEFAULT_WEIGHTS
    from ..autoencoder.weights import load_weights

    levels = int(load_weights(Path(weights or DEFAULT_WEIGHTS)).gains.shape[0])
    return [round(100.0 * i / (levels - 1), 2) for i in range(levels)] if levels > 1 else [100.0]


def coder(codec: str, device: str = "auto", weights: str | os.PathLike | None = None) -> Coder:
    """(encode, decode) functions for one codec."""
    if codec == "nic":
        from ..api import decode, encode
        from ..autoencoder.modelfiles import DEFAULT_WEIGHTS

        w = weights or DEFAULT_WEIGHTS
        return (lambda im, q: encode(im, quality=q, device=device, weights=w)), (
            lambda d: decode(d, device=device, weights=w).convert("RGB")
        )
    if codec not in REFERENCES:
        raise NicError(f"unknown codec {codec!r}")
    return (lambda im, v: reference_encode(codec, im, v)), reference_decode


def _warm_up(c: Coder, image: np.ndarray, setting: float) -> None:
    """One untimed run on a small crop: loads weights, libraries and kernels."""
    c[1](c[0](Image.fromarray(np.ascontiguousarray(image[:64, :64])), setting))


def compare(curves: dict[str, list[Point]], test: str = "nic") -> dict[str, dict[str, float]]:
    """BD-rate (PSNR and MS-SSIM) and BD-PSNR of `test` against every other curve."""
    t = curves[test]
    out = {}
    for ref, pts in curves.items():
        if ref == test:
            continue
        out[ref] = {
            "bd_rate_psnr": bd_rate([(p.bpp, p.psnr) for p in pts], [(p.bpp, p.psnr) for p in t]),
            "bd_rate_msssim": bd_rate([(p.bpp, p.msssim_db) for p in pts], [(p.bpp, p.msssim_db) for p in t]),
            "bd_psnr": bd_psnr([(p.bpp, p.psnr) for p in pts], [(p.bpp, p.psnr) for p in t]),
        }
    return out


@dataclass
class BenchResult:
    images: list[str]
    pixels: list[int]
    curves: dict[str, list[Point]]  # codec -> points, in sweep order
    settings: dict[str, str]  # codec -> how it was run
    comparisons: dict[str, dict[str, float]]  # reference -> bd_rate_psnr, bd_rate_msssim, bd_psnr
    weights: dict = field(default_factory=dict)  # path, identity, progress of nic's weights

    def to_dict(self) -> dict:
        """Plain JSON-able data (nan becomes None)."""
        from .. import __version__

        d = {
            "neurocodec": __version__,
            "images": self.images,
            "pixels": self.pixels,
            "settings": self.settings,
            "weights": self.weights,
            "curves": {c: [asdict(p) | {"msssim_db": p.msssim_db} for p in pts] for c, pts in self.curves.items()},
            "comparisons": self.comparisons,
        }
        return json_clean(d)

    @classmethod
    def from_dict(cls, d: dict) -> BenchResult:
        """Read back what to_dict wrote (None becomes nan)."""

        def nan(v):
            return math.nan if v is None else v

        return cls(
            images=list(d["images"]),
            pixels=list(d["pixels"]),
            curves={c: [Point.from_dict(p) for p in pts] for c, pts in d["curves"].items()},
            settings=dict(d["settings"]),
            comparisons={r: {k: nan(v) for k, v in c.items()} for r, c in d["comparisons"].items()},
            weights=dict(d.get("weights") or {}),
        )


def cache_key(names: Sequence[str | os.PathLike]) -> str:
    """A short key for a set of image files (names and sizes), for caching reference curves."""
    return hashlib.sha256("\n".join(f"{Path(p).name}:{Path(p).stat().st_size}" for p in names).encode()).hexdigest()[
        :12
    ]


def _cached(cache: dict, codec: str, sweep: list[float], msssim: bool) -> list[Point] | None:
    """Cached points if they match the sweep (and hold MS-SSIM when it is wanted)."""
    pts = [Point.from_dict(d) for d in cache.get(codec, [])]
    if [p.setting for p in pts] != list(sweep):
        return None
    if msssim and not all(math.isfinite(p.msssim) for p in pts):
        return None  # saved without MS-SSIM (older caches): measure again
    return pts


def run_bench(
    images: Sequence[np.ndarray],
    codecs: Sequence[str],
    sweeps: dict[str, Sequence[float]] | None = None,
    device: str = "auto",
    weights: str | os.PathLike | None = None,
    msssim: bool = True,
    names: Sequence[str] | None = None,
    progress: Callable[[int], object] | None = None,
    on_point: Callable[[str, Point], None] | None = None,
    cache: str | os.PathLike | None = None,
) -> BenchResult:
    """Measure every codec over its sweep on the same images; compare nic to each reference.

    sweeps: codec -> values, replacing the defaults (SWEEPS; nic: nic_ladder(weights)).
    progress: called with the number of image codings to come; must return a context
    manager whose value has `update(n, label)` (like click.progressbar).
    on_point: called after each point is measured (or read from the cache).
    cache: a JSON file of reference curves for this image set, read and extended
    (nic is never cached: its weights change).
    """
    if not images:
        raise NicError("no images to benchmark")
    sweeps = dict(sweeps or {})
    plan = {}
    for c in codecs:
        values = sweeps.get(c)
        if values is None:
            values = nic_ladder(weights) if c == "nic" else SWEEPS[c]
        if not values:
            raise NicError(f"empty sweep for {c}")
        plan[c] = [float(v) for v in values]
    cache_path = Path(cache) if cache else None
    stored = json.loads(cache_path.read_text()) if cache_path and cache_path.exists() else {}
    curves: dict[str, list[Point]] = {}
    for c in codecs:
        if c != "nic" and cache_path and (pts := _cached(stored, c, plan[c], msssim)) is not None:
            curves[c] = pts
    todo = [c for c in codecs if c not in curves]
    total = sum(len(plan[c]) for c in todo) * len(images)
    with progress(total) if progress else nullcontext() as bar:
        for c in codecs:
            if c in curves:
                for p in curves[c]:
                    if on_point:
                        on_point(c, p)
                continue
            enc, dec = coder(c, device, weights)
            _warm_up((enc, dec), images[0], plan[c][len(plan[c]) // 2])
            pts = []
            for v in plan[c]:
                tick = (lambda c=c, v=v: bar.update(1, f"{c} {v:g}")) if bar else None
                p = measure(images, v, enc, dec, msssim=msssim, tick=tick)
                pts.append(p)
                if on_point:
                    on_point(c, p)
            curves[c] = pts
            if cache_path and c != "nic":
                stored[c] = json_clean([asdict(p) for p in pts])
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                cache_path.write_text(json.dumps(stored))
    curves = {c: curves[c] for c in codecs}
    info = {}
    if "nic" in codecs:
        from ..autoencoder.modelfiles import DEFAULT_WEIGHTS
        from ..autoencoder.weights import load_weights

        path = Path(weights or DEFAULT_WEIGHTS)
        w = load_weights(path)
        info = {"path": str(path), "identity": w.identity.hex(), "progress": dict(w.progress)}
    return BenchResult(
        images=list(names) if names else [f"image{i}" for i in range(len(images))],
        pixels=[int(a.shape[0] * a.shape[1]) for a in images],
        curves=curves,
        settings=settings_text(codecs),
        comparisons=compare(curves) if "nic" in curves else {},
        weights=info,
    )
