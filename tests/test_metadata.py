"""Metadata like avifenc: EXIF and XMP kept (orientation applied, then reset), choosable, and a
warning for everything else a file carries that a .nic file does not."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from helpers import smooth_image
from PIL import Image, ImageCms, PngImagePlugin
from test_cli import nic

import neurocodec
from neurocodec.errors import NicError, NicWarning
from neurocodec.format import EXIF, ICC, XMP, NicFile, parse
from neurocodec.pil_plugin import DamagedNicFile

XMP_PACKET = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/jpeg"/></rdf:RDF></x:xmpmeta>'
)


def camera_jpeg(path, orientation: int = 6) -> None:
    """A JPEG as a camera writes it: EXIF with make, date and orientation, and an XMP packet."""
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x0132] = "2024:05:01 12:00:00"  # DateTime
    exif[0x0112] = orientation
    Image.fromarray(smooth_image(30, 50)).save(path, exif=exif.tobytes(), xmp=XMP_PACKET, quality=95)


def test_exif_and_xmp_are_kept_with_the_orientation_reset(tmp_path):
    camera_jpeg(tmp_path / "c.jpg")
    data = neurocodec.encode(tmp_path / "c.jpg")
    f = parse(data)
    assert EXIF in f.chunks and XMP in f.chunks
    out = neurocodec.decode(data)
    assert out.size == (30, 50)  # turned upright
    exif = out.getexif()
    assert exif[0x010F] == "Canon" and exif[0x0132] == "2024:05:01 12:00:00"
    assert exif.get(0x0112, 1) == 1  # already applied: a viewer must not turn it again
    assert b"dc:format" in out.info["xmp"]


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tif"])
def test_decoding_writes_the_metadata_into_the_output_file(tmp_path, fmt):
    camera_jpeg(tmp_path / "c.jpg")
    assert nic("encode", tmp_path / "c.jpg").returncode == 0
    r = nic("decode", tmp_path / "c.nic", "-o", tmp_path / f"out.{fmt}")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    with Image.open(tmp_path / f"out.{fmt}") as im:
        assert im.getexif()[0x010F] == "Canon" and im.getexif().get(0x0112, 1) == 1
        xmp = im.info.get("xmp")
        assert xmp and b"dc:format" in (xmp if isinstance(xmp, bytes) else xmp.encode())


def test_a_format_without_metadata_says_what_it_drops(tmp_path):
    camera_jpeg(tmp_path / "c.jpg")
    assert nic("encode", tmp_path / "c.jpg").returncode == 0
    r = nic("decode", tmp_path / "c.nic", "-o", tmp_path / "out.bmp")
    assert r.returncode == 0 and "BMP cannot store EXIF or XMP" in r.stderr


def test_metadata_option_chooses_what_is_kept(tmp_path):
    camera_jpeg(tmp_path / "c.jpg")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with Image.open(tmp_path / "c.jpg") as im:
        im.save(tmp_path / "d.jpg", exif=im.info["exif"], xmp=im.info["xmp"], icc_profile=icc, quality=95)
    chunks = {
        spec: set(parse(neurocodec.encode(tmp_path / "d.jpg", metadata=spec)).chunks)
        for spec in ("all", "none", "icc,exif", "xmp")
    }
    assert chunks == {"all": {ICC, EXIF, XMP}, "none": set(), "icc,exif": {ICC, EXIF}, "xmp": {XMP}}
    # Metadata rides beside the payload: the coded picture is the same.
    assert (
        parse(neurocodec.encode(tmp_path / "d.jpg", metadata="none")).ans
        == parse(neurocodec.encode(tmp_path / "d.jpg")).ans
    )
    with pytest.raises(NicError, match="unknown metadata"):
        neurocodec.encode(tmp_path / "d.jpg", metadata="gps")
    r = nic("encode", tmp_path / "d.jpg", "--metadata", "none", "-o", tmp_path / "n.nic")
    assert r.returncode == 0 and not parse((tmp_path / "n.nic").read_bytes()).chunks
    r = nic("encode", tmp_path / "d.jpg", "--metadata", "exif,gps", "-o", tmp_path / "bad.nic")
    assert r.returncode != 0 and "unknown metadata" in r.stderr and not (tmp_path / "bad.nic").exists()


def test_readers_skip_chunks_they_do_not_know():
    """New chunks (EXIF and XMP were new once) leave older readers working: they skip what they do not know."""
    data = neurocodec.encode(smooth_image(20, 20))
    f = parse(data)
    future = NicFile(f.width, f.height, f.quality_x100, f.model_id, f.ans, f.overflow, f.layout, {b"ZZZZ": b"later"})
    out = neurocodec.decode(future.to_bytes())
    assert np.array_equal(np.asarray(out), np.asarray(neurocodec.decode(data)))


def test_pillow_plugin_takes_exif_and_xmp_and_gives_them_back():
    exif = Image.Exif()
    exif[0x010F] = "Nikon"
    buf = io.BytesIO()
    Image.fromarray(smooth_image(24, 24)).save(buf, format="NIC", exif=exif, xmp=XMP_PACKET)
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.getexif()[0x010F] == "Nikon" and im.info["xmp"] == XMP_PACKET
        im.load()
        assert im.size == (24, 24)


def test_a_damaged_file_opened_through_pillow_says_why():
    data = bytearray(neurocodec.encode(smooth_image(20, 20)))
    data[45] ^= 0xFF
    with pytest.raises(Image.UnidentifiedImageError, match="checksum mismatch") as caught:
        Image.open(io.BytesIO(bytes(data)))
    assert isinstance(caught.value, NicError) and isinstance(caught.value, DamagedNicFile)
    with pytest.raises(OSError, match=r"truncated \.nic file"):
        Image.open(io.BytesIO(bytes(data[:30])))


# -- what is dropped says so --------------------------------------------------------------


def warnings_of(image) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        neurocodec.encode(image)
    return [str(w.message) for w in caught if issubclass(w.category, NicWarning)]


def test_extra_frames_are_dropped_with_a_warning(tmp_path):
    frames = [Image.fromarray(smooth_image(16, 16, seed=i)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert any("first of its 3 frames" in w for w in warnings_of(tmp_path / "a.gif"))
    with Image.open(tmp_path / "a.gif") as im:
        assert any("first of its 3 frames" in w for w in warnings_of(im))


def test_dpi_is_dropped_with_a_warning_unless_exif_keeps_it(tmp_path):
    Image.fromarray(smooth_image(16, 16)).save(tmp_path / "d.png", dpi=(300, 300))
    assert any("300 dpi" in w for w in warnings_of(tmp_path / "d.png"))
    exif = Image.Exif()
    exif[0x011A] = 300.0  # XResolution: EXIF carries the resolution itself
    Image.fromarray(smooth_image(16, 16)).save(tmp_path / "e.jpg", dpi=(300, 300), exif=exif.tobytes())
    assert not any("dpi" in w for w in warnings_of(tmp_path / "e.jpg"))


def test_text_chunks_and_comments_are_dropped_with_a_warning(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "holiday")
    info.add_text("Author", "me")
    Image.fromarray(smooth_image(16, 16)).save(tmp_path / "t.png", pnginfo=info)
    assert any("text chunks are dropped (Title, Author)" in w for w in warnings_of(tmp_path / "t.png"))
    Image.fromarray(smooth_image(16, 16)).save(tmp_path / "c.jpg", comment=b"a note")
    assert any("comment is dropped" in w for w in warnings_of(tmp_path / "c.jpg"))


def test_cmyk_is_converted_with_a_warning(tmp_path):
    Image.fromarray(smooth_image(16, 16)).convert("CMYK").save(tmp_path / "k.jpg", quality=95)
    assert any("CMYK image converted to RGB" in w for w in warnings_of(tmp_path / "k.jpg"))


def test_16_bit_is_converted_with_a_warning(tmp_path):
    deep = (smooth_image(16, 16)[:, :, 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert any("8 bits" in w for w in warnings_of(tmp_path / "d.png"))


def test_an_ordinary_photo_file_drops_nothing(tmp_path):
    camera_jpeg(tmp_path / "c.jpg", orientation=1)
    assert warnings_of(tmp_path / "c.jpg") == []
