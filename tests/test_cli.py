"""`nic` driven as a user drives it: real processes, real files."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import psnr, smooth_image
from PIL import Image


def nic(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "neurocodec.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def assert_clean_failure(r: subprocess.CompletedProcess, words: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nic: error:"), r.stderr
    assert words in lines[0], lines[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    p = d / "photo.png"
    Image.fromarray(smooth_image(45, 61, seed=3)).save(p)
    return p


@pytest.fixture(scope="module")
def encoded(photo) -> Path:
    r = nic("encode", photo, "-q", "70")
    assert r.returncode == 0, r.stderr
    return photo.with_suffix(".nic")


def test_encode_decode_with_default_names(photo, encoded, tmp_path):
    assert encoded.exists() and encoded.stat().st_size > 38
    out = tmp_path / "back.png"
    r = nic("decode", encoded, "-o", out)
    assert r.returncode == 0, r.stderr
    back = np.asarray(Image.open(out))
    assert back.shape == (45, 61, 3)
    assert psnr(back, np.asarray(Image.open(photo))) > 20
    # Without -o, photo.nic becomes photo.png next to it (photo.png exists: refuse, then -f).
    r = nic("decode", encoded)
    assert_clean_failure(r, "already exists")
    copy = tmp_path / "copy.nic"
    copy.write_bytes(encoded.read_bytes())
    assert nic("decode", copy).returncode == 0
    assert (tmp_path / "copy.png").exists()


def test_info_shows_header_and_bpp(encoded):
    r = nic("info", encoded)
    assert r.returncode == 0, r.stderr
    assert "61x45" in r.stdout and "quality:   70" in r.stdout
    bpp = 8 * encoded.stat().st_size / (61 * 45)
    assert f"{bpp:.4f}" in r.stdout
    assert "(the current weights)" in r.stdout
    other = encoded.with_name("other.nic")
    other.write_bytes(with_header(encoded.read_bytes(), 18, b"\x00" * 8))
    assert "not available here" in nic("info", other).stdout


def test_help_teaches():
    r = nic("--help")
    assert r.returncode == 0 and "nic encode photo.png" in r.stdout
    r = nic("encode", "--help")
    assert "--quality" in r.stdout and "Example" in r.stdout


def with_header(data: bytes, offset: int, value: bytes) -> bytes:
    """`data` with header bytes replaced and the checksum made valid again."""
    body = bytearray(data[:-4])
    body[offset : offset + len(value)] = value
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


@pytest.mark.parametrize(
    "case", ["missing", "not_image", "not_nic", "truncated", "corrupted", "absurd_size", "other_model"]
)
def test_bad_input_one_line_no_output(case, encoded, tmp_path):
    data = encoded.read_bytes()
    if case == "missing":
        src, cmd, words = tmp_path / "nope.png", "encode", "no such file"
    elif case == "not_image":
        src, cmd, words = tmp_path / "fake.png", "encode", "cannot read"
        src.write_text("hello")
    elif case == "not_nic":
        src, cmd, words = tmp_path / "fake.nic", "decode", "not a .nic file"
        Image.new("RGB", (4, 4)).save(src, format="PNG")
    elif case == "truncated":
        src, cmd, words = tmp_path / "cut.nic", "decode", "truncated"
        src.write_bytes(data[: len(data) // 2])
    elif case == "corrupted":
        src, cmd, words = tmp_path / "flip.nic", "decode", "checksum"
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 1
        src.write_bytes(bytes(bad))
    elif case == "absurd_size":
        src, cmd, words = tmp_path / "huge.nic", "decode", "safety limit"
        src.write_bytes(with_header(data, 8, (1 << 20).to_bytes(4, "little") * 2))
    else:
        src, cmd, words = tmp_path / "other.nic", "decode", "needs model"
        src.write_bytes(with_header(data, 18, b"\x00" * 8))
    out = tmp_path / "out.file"
    r = nic(cmd, src, "-o", out.with_suffix(".png" if cmd == "decode" else ".nic"))
    assert_clean_failure(r, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name] if src.exists() else [])


def test_never_overwrites_input(photo):
    r = nic("encode", photo, "-o", photo, "-f")
    assert_clean_failure(r, "input")
    assert Image.open(photo).size == (61, 45)


def test_max_pixels_option(encoded, tmp_path):
    r = nic("decode", encoded, "-o", tmp_path / "a.png", "--max-pixels", "100")
    assert_clean_failure(r, "safety limit")
    assert nic("decode", encoded, "-o", tmp_path / "a.png", "--max-pixels", "3000").returncode == 0


def test_alpha_to_jpeg_warns_and_writes(tmp_path):
    src = tmp_path / "a.png"
    rgba = np.dstack([smooth_image(20, 24), np.full((20, 24), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(src)
    assert nic("encode", src).returncode == 0
    r = nic("decode", tmp_path / "a.nic", "-o", tmp_path / "a.jpg")
    assert r.returncode == 0
    warning, report = r.stderr.strip().splitlines()
    assert warning == "nic: warning: JPEG cannot store transparency: the alpha channel is dropped"
    assert report.startswith("nic: ") and report.endswith(
        " 24x20 RGB, " + f"{(tmp_path / 'a.jpg').stat().st_size:,} bytes JPEG"
    )
    assert Image.open(tmp_path / "a.jpg").mode == "RGB"
    r = nic("decode", tmp_path / "a.nic", "-o", tmp_path / "b.png", "--quiet")
    assert r.returncode == 0 and r.stderr == ""
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png"))[:, :, 3], rgba[:, :, 3])


def test_ctrl_c_leaves_nothing_behind(tmp_path):
    src = tmp_path / "big.png"
    Image.fromarray(smooth_image(1200, 1600, seed=5)).save(src)
    for delay in (1.0, 2.5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "neurocodec.cli", "encode", str(src), "-o", str(tmp_path / "big.nic"), "-f"],
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        names = sorted(p.name for p in tmp_path.iterdir())
        if proc.returncode == 0:  # finished before the signal: a whole file
            assert names == ["big.nic", "big.png"]
            (tmp_path / "big.nic").unlink()
        else:
            assert proc.returncode in (130, -signal.SIGINT) and "Traceback" not in err, err
            assert err.strip() == "nic: error: interrupted"
            assert names == ["big.png"]
