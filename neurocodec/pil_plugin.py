"""Pillow plugin: after `import neurocodec`, Image.open("x.nic") and image.save("x.nic") work.

    from PIL import Image
    import neurocodec  # registers the plugin
    Image.open("photo.nic").save("photo.png")
    Image.open("photo.png").save("small.nic", quality=60)
    Image.open("photo.png").save("smaller.nic", quality=60, effort=2)  # slower, fewer bytes
    Image.open("photo.png").save("ssim.nic", tune="ssim")  # the weights tuned for MS-SSIM
    image.save("x.nic", exif=exif_bytes, xmp=xmp_bytes, metadata="exif")  # im.info gets them back

A damaged .nic file raises `DamagedNicFile` (an UnidentifiedImageError and a NicError) that says why.

Registered for the .nic extension and the magic bytes. Opening reads only the
container (size, mode, colour profile); the network runs (and torch is
imported) when the pixels are first needed.
"""

from __future__ import annotations

import io

from PIL import Image, ImageFile

from .errors import NicError
from .format import GREY8, GREYA8, MAGIC, RGBA8, parse

FORMAT = "NIC"
_MODES = {GREY8: "L", GREYA8: "LA", RGBA8: "RGBA"}


class DamagedNicFile(NicError, Image.UnidentifiedImageError):
    """A file with .nic's magic bytes that cannot be read; the message says why.

    Pillow would otherwise swallow the reason and say only "cannot identify image file".
    Catch it as NicError, as Pillow's UnidentifiedImageError or as OSError.
    """


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


class NicImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "neurocodec learned image"

    def _open(self) -> None:
        from .imageio import metadata_info

        data = self.fp.read()
        name = getattr(self.fp, "name", None) or "the .nic file"
        try:
            f = parse(data)
            meta = metadata_info(f.chunks)
        except NicError as e:  # the magic matched: it is ours, and broken
            raise DamagedNicFile(f"cannot open {name}: {e}") from None
        self._mode = _MODES.get(f.layout, "RGB")
        self._size = (f.width, f.height)
        self.info.update(meta)
        self.info["quality"] = f.quality
        self.tile = [ImageFile._Tile("nic", (0, 0, *self.size), 0, None)]


class NicDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        from .api import decode

        self.fd.seek(0)
        image = decode(self.fd.read())
        self.set_as_raw(image.tobytes(), image.mode)
        return -1, 0


def _save(im: Image.Image, fp: io.IOBase, filename: str | bytes) -> None:
    from .api import encode
    from .settings import DEFAULT_EFFORT, DEFAULT_QUALITY, DEFAULT_TUNE

    info = im.encoderinfo
    image = im
    given = {k: info[k] for k in ("icc_profile", "exif", "xmp") if info.get(k)}  # save(..., exif=...) wins
    if isinstance(given.get("exif"), Image.Exif):
        given["exif"] = given["exif"].tobytes()
    if given:
        image = im.copy()
        image.info.update(given)
    fp.write(
        encode(
            image,
            quality=info.get("quality", DEFAULT_QUALITY),
            target_size=info.get("target_size"),
            target_bpp=info.get("target_bpp"),
            target_psnr=info.get("target_psnr"),
            effort=info.get("effort", DEFAULT_EFFORT),
            metadata=info.get("metadata", "all"),
            tune=info.get("tune", DEFAULT_TUNE),
        )
    )


Image.register_open(FORMAT, NicImageFile, _accept)
Image.register_decoder("nic", NicDecoder)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, ".nic")
Image.register_mime(FORMAT, "image/x-nic")
