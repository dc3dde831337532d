"""Files for the command line: reading inputs (or stdin), writing outputs (or stdout)
safely, and the per-file encode and decode steps that batches run.

Outputs are written to a temporary file and renamed into place, an existing
output is kept unless forced, and an input is never overwritten.
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

from ..errors import NicError, NicWarning
from .batch import STDIO, Job

# Pillow formats that cannot store an alpha channel.
_NO_ALPHA = {"JPEG", "PPM", "BMP", "EPS", "PCX", "SGI", "XBM", "IM", "MPEG", "DDS", "JPEG2000"}
# Defaults for a decoded image saved in a lossy format: near-transparent quality.
_SAVE_DEFAULTS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95, "method": 4}, "AVIF": {"quality": 90}}
_ICC_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF", "AVIF", "JPEG2000"}


def check_writable(dst: Path, force: bool, src: Path | None = None) -> None:
    """Refuse to overwrite the input, or an existing output without force."""
    if dst == STDIO:
        return
    if src is not None and src != STDIO and dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise NicError(f"refusing to overwrite the input file {src}; choose another name with -o")
    if dst.exists() and not force:
        raise NicError(f"{dst} already exists (use -f to overwrite it)")
    if dst.exists() and dst.is_dir():
        raise NicError(f"{dst} is a folder")


def read_input(src: Path) -> bytes:
    if src == STDIO:
        return sys.stdin.buffer.read()
    if not src.exists():
        raise NicError(f"no such file: {src}")
    if src.is_dir():
        raise NicError(f"{src} is a directory")
    return src.read_bytes()


def write_output(dst: Path, data: bytes, make_dirs: bool = False) -> None:
    from ..atomic import write_atomic

    if dst == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if make_dirs:
        dst.parent.mkdir(parents=True, exist_ok=True)
    elif not dst.parent.exists():
        raise NicError(f"output folder {dst.parent} does not exist")
    write_atomic(dst, data)


def pil_format(name: str) -> str:
    """A Pillow format name from an extension (".jpg") or a name ("jpeg")."""
    from PIL import Image

    Image.init()
    ext = name.lower() if name.startswith(".") else "." + name.lower()
    if ext in Image.EXTENSION and Image.EXTENSION[ext] in Image.SAVE:
        return Image.EXTENSION[ext]
    if name.upper() in Image.SAVE:
        return name.upper()
    raise NicError(f"cannot write {name or 'files without an extension'!r} images: use png, jpg, webp, tiff or ppm")


def parse_options(items: tuple[str, ...] | list[str]) -> dict:
    """['quality=90', 'lossless=true'] -> Pillow save options with numbers and booleans typed."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NicError(f"-O takes KEY=VALUE (e.g. quality=90), not {item!r}")
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        else:
            try:
                out[key] = int(value)
            except ValueError:
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
    return out


def image_bytes(image, fmt: str, options: dict | None = None) -> bytes:
    """The image saved in Pillow format `fmt`, keeping its ICC profile where the format can."""
    if fmt in _NO_ALPHA and image.mode in ("RGBA", "LA"):
        warnings.warn(f"{fmt} cannot store transparency: the alpha channel is dropped", NicWarning, stacklevel=2)
        image = image.convert(image.mode[:-1])
    kwargs = dict(_SAVE_DEFAULTS.get(fmt, {}))
    if image.info.get("icc_profile") and fmt in _ICC_FORMATS:
        kwargs["icc_profile"] = image.info["icc_profile"]
    kwargs.update(options or {})
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt, **kwargs)
    except (KeyError, ValueError, TypeError, OSError) as e:
        raise NicError(f"cannot write {image.mode} images as {fmt} with {kwargs or 'default options'} ({e})") from e
    return buf.getvalue()


def encode_file(opts: dict, job: Job) -> tuple[int, int]:
    """One `nic encode` job; returns (bytes read, bytes written)."""
    from ..api import encode

    check_writable(job.dst, opts["force"], job.src)
    if job.src == STDIO:
        image = read_input(job.src)
        n_in = len(image)
    else:
        if not job.src.exists():
            raise NicError(f"no such file: {job.src}")
        image, n_in = job.src, job.src.stat().st_size
    data = encode(
        image,
        quality=opts["quality"],
        device=opts["device"],
        target_size=opts.get("size"),
        target_bpp=opts.get("bpp"),
        target_psnr=opts.get("psnr"),
        effort=opts.get("effort", 0),
    )
    write_output(job.dst, data, make_dirs=opts.get("make_dirs", False))
    return n_in, len(data)


def decode_file(opts: dict, job: Job) -> tuple[int, int]:
    """One `nic decode` job; returns (bytes read, bytes written)."""
    from ..api import decode

    check_writable(job.dst, opts["force"], job.src)
    fmt = pil_format(opts["format"] or (job.dst.suffix if job.dst != STDIO else "png"))
    data = read_input(job.src)
    image = decode(data, device=opts["device"], max_pixels=opts.get("max_pixels"))
    out = image_bytes(image, fmt, opts.get("save_options"))
    write_output(job.dst, out, make_dirs=opts.get("make_dirs", False))
    return len(data), len(out)
