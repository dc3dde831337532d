"""Pillow plugin: after `import neurocodec`, Image.open("x.nic") and image.save("x.nic") work.

    from PIL import Image
    import neurocodec  # registers the plugin
    Image.open("photo.nic").save("photo.png")
    Image.open("photo.png").save("small.nic", quality=60)
    Image.open("photo.png").save("smaller.nic", quality=60, effort=2)  # slower, fewer bytes

Registered for the .nic extension and the magic bytes. Opening reads only the
container (size, mode, colour profile); the network runs (and torch is
imported) when the pixels are first needed.
"""

from __future__ import annotations

import io

from PIL import Image, ImageFile

from .format import GREY8, GREYA8, ICC, MAGIC, RGBA8, parse

FORMAT = "NIC"
_MODES = {GREY8: "L", GREYA8: "LA", RGBA8: "RGBA"}


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


class NicImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "neurocodec learned image"

    def _open(self) -> None:
        from .errors import NicError
        from .imageio import icc_profile

        data = self.fp.read()
        try:
            f = parse(data)
        except NicError as e:
            raise SyntaxError(str(e)) from e
        self._mode = _MODES.get(f.layout, "RGB")
        self._size = (f.width, f.height)
        if ICC in f.chunks:
            self.info["icc_profile"] = icc_profile(f.chunks[ICC])
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
    from .settings import DEFAULT_EFFORT, DEFAULT_QUALITY

    info = im.encoderinfo
    image = im
    if info.get("icc_profile") or im.info.get("icc_profile"):
        image = im.copy()
        image.info["icc_profile"] = info.get("icc_profile") or im.info.get("icc_profile")
    fp.write(
        encode(
            image,
            quality=info.get("quality", DEFAULT_QUALITY),
            target_size=info.get("target_size"),
            target_bpp=info.get("target_bpp"),
            target_psnr=info.get("target_psnr"),
            effort=info.get("effort", DEFAULT_EFFORT),
        )
    )


Image.register_open(FORMAT, NicImageFile, _accept)
Image.register_decoder("nic", NicDecoder)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, ".nic")
Image.register_mime(FORMAT, "image/x-nic")
