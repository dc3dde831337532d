"""Everyday use: batches, pipes, rate control, the Pillow plugin, output formats, start-up."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from helpers import psnr, smooth_image
from PIL import Image
from test_cli import assert_clean_failure, nic

import neurocodec


def run_nic(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neurocodec", *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def tree(tmp_path):
    """a.png, b.jpg and photos/{c.png, sub/d.png, broken.png}."""
    Image.fromarray(smooth_image(24, 32, seed=1)).save(tmp_path / "a.png")
    Image.fromarray(smooth_image(20, 28, seed=2)).save(tmp_path / "b.jpg", quality=95)
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    Image.fromarray(smooth_image(16, 40, seed=3)).save(tmp_path / "photos" / "c.png")
    Image.fromarray(smooth_image(30, 18, seed=4)).save(tmp_path / "photos" / "sub" / "d.png")
    (tmp_path / "photos" / "broken.png").write_bytes(b"not really a png")
    return tmp_path


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_batch_mirrors_tree_skips_bad_file_and_says_so(tree, jobs):
    out = tree / "out"
    r = nic("encode", tree / "a.png", tree / "b.jpg", tree / "photos", "-o", out, "--jobs", jobs)
    assert r.returncode == 1  # something failed
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*.nic"))
    assert names == ["a.nic", "b.nic", "c.nic", "sub/d.nic"]
    lines = r.stderr.strip().splitlines()
    assert any("broken.png" in line and line.startswith("nic: error:") for line in lines)
    assert "4 of 5 files converted" in lines[-1] and "1 failed" in lines[-1]
    assert "Traceback" not in r.stderr
    # ... and back: a folder of .nic files to WebP, mirrored again.
    back = tree / "back"
    r = nic("decode", out, "-o", back, "--format", "webp")
    assert r.returncode == 0, r.stderr
    assert sorted(str(p.relative_to(back)) for p in back.rglob("*.webp")) == [
        "a.webp",
        "b.webp",
        "c.webp",
        "sub/d.webp",
    ]
    assert Image.open(back / "sub" / "d.webp").size == (18, 30)


def test_pipes(tree):
    png = (tree / "a.png").read_bytes()
    r = run_nic("encode", "-", "-o", "-", stdin=png)
    assert r.returncode == 0, r.stderr
    assert r.stdout[:4] == b"\x89NIC"
    r2 = run_nic("decode", "-", stdin=r.stdout)
    assert r2.returncode == 0, r2.stderr
    img = Image.open(io.BytesIO(r2.stdout))
    assert img.format == "PNG" and img.size == (32, 24)
    r3 = run_nic("decode", "-", "--format", "jpg", stdin=r.stdout)
    assert Image.open(io.BytesIO(r3.stdout)).format == "JPEG"
    bad = run_nic("encode", "-", stdin=b"garbage")
    assert bad.returncode != 0 and bad.stdout == b"" and b"Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    with Image.open(__import__("conftest").EXAMPLES / "mountain.png") as im:
        return np.asarray(im.convert("RGB"))[:192, :256].copy()


@pytest.mark.parametrize("where", [0.3, 0.7])
def test_target_size_is_met_from_below(photo, where):
    lo, hi = len(neurocodec.encode(photo, quality=10)), len(neurocodec.encode(photo, quality=90))
    limit = int(lo + where * (hi - lo))
    data = neurocodec.encode(photo, target_size=limit)
    assert 0.97 * limit <= len(data) <= limit


def test_target_bpp_and_psnr(photo):
    lo, hi = len(neurocodec.encode(photo, quality=10)), len(neurocodec.encode(photo, quality=90))
    target = 8 * (lo + hi) / 2 / (256 * 192)
    data = neurocodec.encode(photo, target_bpp=target)
    bpp = 8 * len(data) / (256 * 192)
    assert 0.97 * target <= bpp <= target
    top = psnr(np.asarray(neurocodec.decode(neurocodec.encode(photo, quality=100))), photo)
    target = top - 2.5
    got = psnr(np.asarray(neurocodec.decode(neurocodec.encode(photo, target_psnr=target))), photo)
    assert target <= got <= target + 0.1


def test_unreachable_targets(photo, tmp_path):
    with pytest.raises(neurocodec.NicError, match="smallest file"):
        neurocodec.encode(photo, target_size=50)
    path = tmp_path / "p.png"
    Image.fromarray(photo).save(path)
    r = nic("encode", path, "--size", "30KB", "--psnr", "30")
    assert_clean_failure(r, "only one")
    r = nic("encode", path, "--size", "lots")
    assert_clean_failure(r, "cannot read size")
    limit = len(neurocodec.encode(photo, quality=50))
    r = nic("encode", path, "--size", f"{limit / 1000}KB", "-f")
    assert r.returncode == 0 and 0.97 * limit <= path.with_suffix(".nic").stat().st_size <= limit


def test_pillow_plugin(tmp_path, photo):
    path = tmp_path / "x.nic"
    Image.fromarray(photo).save(path, quality=60)
    assert path.read_bytes()[:4] == b"\x89NIC"
    with Image.open(path) as im:
        assert im.format == "NIC" and im.size == (256, 192) and im.mode == "RGB"
        assert psnr(np.asarray(im), photo) > 25
    # Recognised by its magic bytes too, whatever the name.
    other = tmp_path / "x.bin"
    other.write_bytes(path.read_bytes())
    with Image.open(other) as im:
        assert im.format == "NIC"
    buf = io.BytesIO()
    Image.fromarray(photo[:40, :40, 0]).save(buf, format="NIC")
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "L"


def test_decode_to_any_format_with_options(tree):
    assert nic("encode", tree / "a.png").returncode == 0
    sizes = {}
    for ext, fmt in (("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP"), ("tiff", "TIFF"), ("ppm", "PPM")):
        dst = tree / f"o.{ext}"
        r = nic("decode", tree / "a.nic", "-o", dst)
        assert r.returncode == 0, r.stderr
        assert Image.open(dst).format == fmt
        sizes[ext] = dst.stat().st_size
    r = nic("decode", tree / "a.nic", "-o", tree / "low.jpg", "-O", "quality=20")
    assert r.returncode == 0 and (tree / "low.jpg").stat().st_size < sizes["jpg"]
    assert_clean_failure(nic("decode", tree / "a.nic", "-o", tree / "o.xyz"), "cannot write")
    assert_clean_failure(nic("decode", tree / "a.nic", "-o", tree / "q.jpg", "-O", "quality"), "KEY=VALUE")


def test_help_version_and_info_do_not_import_torch(tree):
    assert nic("encode", tree / "a.png").returncode == 0
    code = (
        "import sys\n"
        "from neurocodec.cli import main\n"
        "for args in (['--help'], ['--version'], ['info', sys.argv[1]], ['encode', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "print('torch' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tree / "a.nic")], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("False")
    assert neurocodec.__version__ in r.stdout


def test_python_m_and_completion_hint():
    r = run_nic("--version")
    assert r.returncode == 0 and neurocodec.__version__.encode() in r.stdout and b"nic" in r.stdout
    r = run_nic("--help")
    assert b"_NIC_COMPLETE=bash_source nic" in r.stdout and b"--size 50KB" in r.stdout
