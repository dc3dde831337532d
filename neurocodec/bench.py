"""Rate-distortion measurement: nic and the Pillow reference codecs, BD-rates.

Protocol (../shared/design.md): bits per pixel from the real encoded bytes
(headers included), RGB PSNR and MS-SSIM averaged over images, median encode
and decode time per image, Bjontegaard deltas over the overlapping range.

    from neurocodec.bench import run_bench, load_images
    names, images = load_images(["examples"])
    result = run_bench(images, ["nic", "jpeg"])
    result.comparisons["jpeg"]  # {"bd_rate_psnr": ..., "bd_rate_msssim": ..., "bd_psnr": ...}

No torch import here: nic is imported only when it is measured.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, features

from .errors import NicError
from .metrics import ms_ssim, msssim_db, msssim_scales, psnr

__all__ = [
    "REFERENCES",
    "REFERENCE_SETTINGS",
    "SWEEPS",
    "BenchResult",
    "Point",
    "bd_psnr",
    "bd_rate",
    "compare",
    "find_images",
    "load_images",
    "measure",
    "nic_ladder",
    "parse_codecs",
    "psnr",
    "rate_at_psnr",
    "reference_decode",
    "reference_encode",
    "run_bench",
]

REFERENCES = ("jpeg", "jpeg2000", "webp", "avif")
LABELS = {"nic": "nic", "jpeg": "JPEG", "jpeg2000": "JPEG 2000", "webp": "WebP", "avif": "AVIF"}
# How each reference is called: V is the swept value. Everything else is Pillow's default
# (e.g. 4:2:0 chroma subsampling for JPEG, WebP and AVIF).
REFERENCE_SETTINGS = {
    "jpeg": 'JPEG (libjpeg-turbo): im.save(f, "JPEG", quality=V, optimize=True)',
    "jpeg2000": (
        'JPEG 2000 (OpenJPEG): im.save(f, "JPEG2000", irreversible=True, mct=1, quality_mode="rates", '
        "quality_layers=[V]) (V = compression ratio: 24/V bpp before headers)"
    ),
    "webp": 'WebP (libwebp): im.save(f, "WEBP", quality=V, method=6)',
    "avif": 'AVIF (libavif): im.save(f, "AVIF", quality=V, speed=4)',
}
SWEEPS = {
    "jpeg": [2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "jpeg2000": [300, 200, 150, 100, 70, 50, 35, 25, 16, 12, 8],
    "webp": [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "avif": [5, 15, 25, 35, 45, 55, 65, 75, 85, 92],
}
_PIL_FEATURE = {"jpeg": "jpg", "jpeg2000": "jpg_2000", "webp": "webp", "avif": "avif"}
_LIBRARY = {"jpeg": "libjpeg-turbo", "jpeg2000": "OpenJPEG", "webp": "libwebp", "avif": "libavif"}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".avif", ".jp2"}


def _save(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, **kwargs)
    return buf.getvalue()


def reference_encode(codec: str, image: Image.Image, value: float) -> bytes:
    """Encode with a reference codec exactly as REFERENCE_SETTINGS says."""
    if codec == "jpeg":
        return _save(image, format="JPEG", quality=int(value), optimize=True)
    if codec == "jpeg2000":
        return _save(
            image, format="JPEG2000", irreversible=True, mct=1, quality_mode="rates", quality_layers=[float(value)]
        )
    if codec == "webp":
        return _save(image, format="WEBP", quality=int(value), method=6)
    if codec == "avif":
        return _save(image, format="AVIF", quality=int(value), speed=4)
    raise ValueError(f"unknown reference codec {codec!r}")


def reference_decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def library_versions() -> dict[str, str]:
    """Pillow's version and, per reference codec, the library Pillow uses for it."""
    import PIL

    out = {"pillow": PIL.__version__}
    for codec, feat in _PIL_FEATURE.items():
        if not features.check(feat):
            out[codec] = f"{_LIBRARY[codec]} (missing)"
        elif codec == "jpeg" and features.check_feature("libjpeg_turbo"):
            out[codec] = f"libjpeg-turbo {features.version_feature('libjpeg_turbo')}"
        elif codec == "avif":
            out[codec] = f"libavif {features.version(feat)}, {_avif_codecs()}"
        else:
            lib = "libjpeg" if codec == "jpeg" else _LIBRARY[codec]
            out[codec] = f"{lib} {features.version(feat)}"
    return out


def _avif_codecs() -> str:
    try:
        from PIL import _avif

        return _avif.codec_versions()
    except (ImportError, AttributeError):
        return "AV1 codec unknown"


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


def parse_codecs(text: str) -> list[str]:
    """'jpeg,webp' or 'all' -> reference codec names (in canonical order); NicError if unknown."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names:
        raise NicError("--vs needs at least one codec (jpeg, jpeg2000, webp, avif or all)")
    out: list[str] = []
    for n in names:
        if n not in (*REFERENCES, "all"):
            raise NicError(f"unknown codec {n!r} (choose from {', '.join(REFERENCES)} or all)")
        out += list(REFERENCES) if n == "all" else [n]
    for c in out:
        if not features.check(_PIL_FEATURE[c]):
            raise NicError(f"this Pillow was built without {LABELS[c]} support ({_LIBRARY[c]})")
    return [c for c in REFERENCES if c in out]


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
    from .weights import DEFAULT_WEIGHTS, load_weights

    levels = int(load_weights(Path(weights or DEFAULT_WEIGHTS)).gains.shape[0])
    return [round(100.0 * i / (levels - 1), 2) for i in range(levels)] if levels > 1 else [100.0]


def coder(codec: str, device: str = "auto", weights: str | os.PathLike | None = None) -> Coder:
    """(encode, decode) functions for one codec."""
    if codec == "nic":
        from .codec import decode, encode
        from .weights import DEFAULT_WEIGHTS

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


def _fit_delta(anchor: np.ndarray, test: np.ndarray) -> float:
    """Mean of (test - anchor) of cubic fits y(x) over the overlapping x range; nan if ill-posed."""
    curves = []
    for c in (anchor, test):
        c = c[np.all(np.isfinite(c), axis=1)]
        if len(np.unique(c[:, 0])) < 4:
            return math.nan
        curves.append(c)
    lo = max(c[:, 0].min() for c in curves)
    hi = min(c[:, 0].max() for c in curves)
    if not hi > lo:
        return math.nan
    integrals = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # poorly conditioned fits (RankWarning): still usable
        for c in curves:
            antider = np.polyint(np.polyfit(c[:, 0], c[:, 1], 3))
            integrals.append(np.polyval(antider, hi) - np.polyval(antider, lo))
    return float((integrals[1] - integrals[0]) / (hi - lo))


def bd_rate(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]) -> float:
    """Bjontegaard delta rate (%) of `test` vs `anchor`; points are (bpp, quality in dB).

    Fits log-rate as a cubic in quality for each curve and compares the mean
    log-rates over the overlapping quality range. Negative: `test` needs fewer bits.
    nan when the curves do not overlap or have fewer than 4 points.
    """
    a = np.array([(q, math.log(r)) for r, q in anchor if r > 0], dtype=np.float64).reshape(-1, 2)
    t = np.array([(q, math.log(r)) for r, q in test if r > 0], dtype=np.float64).reshape(-1, 2)
    d = _fit_delta(a, t)
    return float((math.exp(d) - 1) * 100) if math.isfinite(d) else math.nan


def bd_psnr(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]) -> float:
    """Bjontegaard delta quality (dB) of `test` vs `anchor` at equal rate; points are (bpp, dB).

    Fits quality as a cubic in log-rate and averages the difference over the
    overlapping rate range. Positive: `test` is better.
    """
    a = np.array([(math.log(r), q) for r, q in anchor if r > 0], dtype=np.float64).reshape(-1, 2)
    t = np.array([(math.log(r), q) for r, q in test if r > 0], dtype=np.float64).reshape(-1, 2)
    return _fit_delta(a, t)


def rate_at_psnr(curve: Sequence[tuple[float, float]], target: float) -> float:
    """bpp a codec needs for `target` dB, interpolated in log-rate (nan outside the curve)."""
    c = np.array(sorted(curve, key=lambda p: p[1]))
    if not c[0, 1] <= target <= c[-1, 1]:
        return float("nan")
    return float(np.exp(np.interp(target, c[:, 1], np.log(c[:, 0]))))


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
        from . import __version__

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
        from .weights import DEFAULT_WEIGHTS, load_weights

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
