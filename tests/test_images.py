"""Every ordinary image comes back as it went in: modes, alpha, profile, orientation, sizes."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from conftest import EXAMPLES
from helpers import psnr, smooth_image
from PIL import Image, ImageCms

import neurocodec
from neurocodec.autoencoder.codec import analysis_tiled, synthesis_tiled
from neurocodec.autoencoder.weights import load_weights
from neurocodec.errors import NicError, NicWarning


def roundtrip(image, **kw) -> Image.Image:
    return neurocodec.decode(neurocodec.encode(image, quality=90, **kw))


def saved(image: Image.Image, fmt: str, **kw) -> io.BytesIO:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    buf.seek(0)
    return buf


def test_grey_stays_grey(tmp_path):
    grey = smooth_image(40, 56)[:, :, 1]
    path = tmp_path / "g.png"
    Image.fromarray(grey, "L").save(path)
    out = roundtrip(path)
    assert out.mode == "L" and out.size == (56, 40)
    assert psnr(np.asarray(out), grey) > 25


def test_alpha_is_kept_losslessly():
    rgb = smooth_image(33, 47)
    alpha = np.zeros((33, 47), np.uint8)
    alpha[5:20, 10:40] = 255
    alpha[25:, :] = np.arange(47, dtype=np.uint8)[None] * 5
    out = roundtrip(np.dstack([rgb, alpha]))
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[:, :, 3], alpha)
    assert psnr(np.asarray(out)[:, :, :3], rgb) > 25
    la = roundtrip(Image.fromarray(np.dstack([rgb[:, :, 0], alpha]), "LA"))
    assert la.mode == "LA" and np.array_equal(np.asarray(la)[:, :, 1], alpha)


def test_palette_images():
    rgb = Image.fromarray(smooth_image(32, 32))
    pal = rgb.quantize(16)
    assert roundtrip(pal).mode == "RGB"
    pal.info["transparency"] = 0
    out = roundtrip(Image.open(saved(pal, "PNG")))
    assert out.mode == "RGBA"
    expected = np.asarray(Image.open(saved(pal, "PNG")).convert("RGBA"))[:, :, 3]
    assert np.array_equal(np.asarray(out)[:, :, 3], expected)


def test_icc_profile_is_kept(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "p.png"
    Image.fromarray(smooth_image(24, 24)).save(path, icc_profile=icc)
    assert roundtrip(path).info.get("icc_profile") == icc
    assert "icc_profile" not in roundtrip(smooth_image(24, 24)).info


@pytest.mark.parametrize("orientation,turns", [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied(tmp_path, orientation, turns):
    """The pixels come back as a viewer shows the file: turned, not just resized."""
    stored = smooth_image(30, 50)
    stored[:10, :12] = (250, 20, 20)  # a red corner, top left as stored
    exif = Image.Exif()
    exif[0x0112] = orientation  # 6: turn 90 degrees clockwise to display, 8: anticlockwise, 3: half a turn
    path = tmp_path / "o.png"
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    shown = np.rot90(stored, k=turns)  # k counts anticlockwise quarter turns
    out = np.asarray(roundtrip(path))
    assert out.shape == shown.shape
    assert psnr(out, shown) > 28
    for wrong in {1, 2, 3} - {turns % 4}:  # the other orientations of the same shape are far off
        other = np.rot90(stored, k=wrong)
        if other.shape == shown.shape:
            assert psnr(out, other) < psnr(out, shown) - 8


def test_16_bit_is_converted_with_a_warning(tmp_path):
    deep = (smooth_image(20, 30)[:, :, 0].astype(np.uint16) * 257).astype(np.uint16)
    path = tmp_path / "d.png"
    Image.fromarray(deep).save(path)
    with pytest.warns(NicWarning, match="8 bits"):
        out = roundtrip(path)
    assert out.mode == "L" and psnr(np.asarray(out), (deep // 257).astype(np.uint8)) > 25


def test_other_file_formats_and_cmyk(tmp_path):
    rgb = smooth_image(28, 36)
    for fmt, ext in (("TIFF", "tif"), ("BMP", "bmp"), ("WEBP", "webp"), ("JPEG", "jpg")):
        path = tmp_path / f"x.{ext}"
        Image.fromarray(rgb).save(path, format=fmt, **({"quality": 95} if fmt in ("WEBP", "JPEG") else {}))
        out = roundtrip(path)
        assert out.mode == "RGB" and psnr(np.asarray(out), rgb) > 24, fmt
    cmyk = tmp_path / "c.jpg"
    Image.fromarray(rgb).convert("CMYK").save(cmyk, quality=95)
    assert roundtrip(cmyk).mode == "RGB"


@pytest.mark.parametrize("size", [(1, 1), (1, 37), (29, 1), (17, 3)])
def test_tiny_sizes(size):
    w, h = size
    a = smooth_image(max(h, 2), max(w, 2))[:h, :w]
    out = roundtrip(a)
    assert out.size == (w, h)


def test_tiles_join_without_seams():
    """Tiled transforms equal the whole-image transforms (the margin covers the receptive field)."""
    model = load_weights().model
    with Image.open(EXAMPLES / "fig.png") as im:
        photo = np.asarray(im.convert("RGB"))[:160, :192].copy()
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        whole = analysis_tiled(model, x, tile=4096)
        tiled = analysis_tiled(model, x, tile=32, margin=32)  # 5 x 6 tiles
        assert torch.allclose(whole, tiled, atol=1e-4)
        y = torch.round(whole * 4) / 4
        a = synthesis_tiled(model, y, 160, 192, torch.device("cpu"), tile=4096)
        b = synthesis_tiled(model, y, 160, 192, torch.device("cpu"), tile=32, margin=32)
        # Too little context shows: the check can fail.
        c = synthesis_tiled(model, y, 160, 192, torch.device("cpu"), tile=32, margin=0)
    assert np.abs(a.astype(int) - b).max() <= 1
    assert np.abs(a.astype(int) - c).max() > 1


def test_declared_size_limit_can_be_raised():
    data = neurocodec.encode(smooth_image(40, 40))
    with pytest.raises(NicError, match="safety limit"):
        neurocodec.decode(data, max_pixels=1000)
    assert neurocodec.decode(data, max_pixels=1600).size == (40, 40)


def test_no_warning_for_ordinary_images():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        roundtrip(smooth_image(20, 20))
