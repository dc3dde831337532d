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
from ..settings import DEFAULT_TUNE
from .batch import Done, Job
from .common import STDIO, check_writable

# Pillow formats that cannot store an alpha channel.
_NO_ALPHA = {"JPEG", "PPM", "BMP", "EPS", "PCX", "SGI", "XBM", "IM", "MPEG", "DDS", "JPEG2000"}
# Defaults for a decoded image saved in a lossy format: near-transparent quality.
_SAVE_DEFAULTS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95, "method": 4}, "AVIF": {"quality": 90}}
_ICC_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF", "AVIF", "JPEG2000"}
_EXIF_FORMATS = {"PNG", "JPEG", "WEBP", "AVIF"}  # and TIFF, as tags
_XMP_FORMATS = {"JPEG", "WEBP", "AVIF"}  # Pillow's xmp= save option; PNG and TIFF get theirs another way


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


def _metadata_options(image, fmt: str) -> tuple[dict, list[str]]:
    """Pillow save options that write the image's EXIF and XMP in format `fmt`, and what it cannot hold."""
    exif, xmp = image.info.get("exif"), image.info.get("xmp")
    kwargs: dict = {}
    lost = []
    if fmt == "TIFF":  # TIFF's EXIF and XMP are tags of the image itself, written from one Exif object
        from PIL import Image

        tags = Image.Exif()
        if exif:
            tags.load(exif)
        if xmp:
            tags[700] = xmp
        return ({"exif": tags} if exif or xmp else {}), lost
    if exif:
        if fmt in _EXIF_FORMATS:
            kwargs["exif"] = exif
        else:
            lost.append("EXIF")
    if xmp:
        if fmt in _XMP_FORMATS:
            kwargs["xmp"] = xmp
        elif fmt == "PNG":
            from PIL import PngImagePlugin

            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
            kwargs["pnginfo"] = info
        else:
            lost.append("XMP")
    return kwargs, lost


def image_bytes(image, fmt: str, options: dict | None = None) -> tuple[bytes, str]:
    """The image saved in Pillow format `fmt`, keeping its ICC profile, EXIF and XMP where the format can,
    and the mode it was saved in."""
    if fmt in _NO_ALPHA and image.mode in ("RGBA", "LA"):
        warnings.warn(f"{fmt} cannot store transparency: the alpha channel is dropped", NicWarning, stacklevel=2)
        image = image.convert(image.mode[:-1])
    kwargs = dict(_SAVE_DEFAULTS.get(fmt, {}))
    if image.info.get("icc_profile") and fmt in _ICC_FORMATS:
        kwargs["icc_profile"] = image.info["icc_profile"]
    meta, lost = _metadata_options(image, fmt)
    if lost:
        warnings.warn(f"{fmt} cannot store {' or '.join(lost)}: dropped", NicWarning, stacklevel=2)
    kwargs.update(meta)
    kwargs.update(options or {})
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt, **kwargs)
    except (KeyError, ValueError, TypeError, OSError) as e:
        shown = {k: v for k, v in kwargs.items() if k not in ("icc_profile", "exif", "xmp", "pnginfo", "tiffinfo")}
        raise NicError(f"cannot write {image.mode} images as {fmt} with {shown or 'default options'} ({e})") from e
    return buf.getvalue(), image.mode


def _arrow(job: Job) -> str:
    """'photo.png -> photo.nic', with stdin and stdout named."""
    return f"{'stdin' if job.src == STDIO else job.src} -> {'stdout' if job.dst == STDIO else job.dst}"


def encode_file(opts: dict, job: Job) -> Done:
    """One `nic encode` job: what it read and wrote, and the line that says so."""
    from ..api import encode_with_info

    check_writable(job.dst, opts["force"], job.src)
    if job.src == STDIO:
        image = read_input(job.src)
        n_in = len(image)
    else:
        if not job.src.exists():
            raise NicError(f"no such file: {job.src}")
        image, n_in = job.src, job.src.stat().st_size
    data, info = encode_with_info(
        image,
        quality=opts["quality"],
        device=opts["device"],
        weights=opts.get("weights"),
        target_size=opts.get("size"),
        target_bpp=opts.get("bpp"),
        target_psnr=opts.get("psnr"),
        effort=opts.get("effort", 0),
        metadata=opts.get("metadata", "all"),
        progress=opts.get("progress"),
        tune=opts.get("tune", DEFAULT_TUNE),
    )
    write_output(job.dst, data, make_dirs=opts.get("make_dirs", False))
    chosen = f", chosen for {opts['target']}" if opts.get("target") else ""
    line = f"{_arrow(job)}: {len(data):,} bytes, "
    line += f"{8 * len(data) / (info.width * info.height):.3f} bpp, quality {info.quality:g}{chosen}"
    if info.psnr is not None:
        line += f", PSNR {info.psnr:.2f} dB"
    if info.effort:
        line += f", effort {info.effort}"
    times = ", ".join(f"{k} {v:.2f} s" for k, v in info.seconds.items())
    detail = f"{info.width}x{info.height}; model {info.model} on {info.device}; {times}"
    return Done(n_in, len(data), line, detail)


def decode_file(opts: dict, job: Job) -> Done:
    """One `nic decode` job: what it read and wrote, and the line that says so."""
    import time

    from ..api import decode

    check_writable(job.dst, opts["force"], job.src)
    fmt = pil_format(opts["format"] or (job.dst.suffix if job.dst != STDIO else "png"))
    data = read_input(job.src)
    start = time.perf_counter()
    image = decode(
        data,
        device=opts["device"],
        weights=opts.get("weights"),
        max_pixels=opts.get("max_pixels"),
        progress=opts.get("progress"),
    )
    seconds = time.perf_counter() - start
    out, mode = image_bytes(image, fmt, opts.get("save_options"))
    write_output(job.dst, out, make_dirs=opts.get("make_dirs", False))
    kept = [name for key, name in (("icc_profile", "ICC"), ("exif", "EXIF"), ("xmp", "XMP")) if image.info.get(key)]
    line = f"{_arrow(job)}: {image.width}x{image.height} {mode}, {len(out):,} bytes {fmt}"
    detail = f"decoded in {seconds:.2f} s" + (f"; metadata {', '.join(kept)}" if kept else "")
    return Done(len(data), len(out), line, detail)
