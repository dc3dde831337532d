"""nic tells the user what happened (like cwebp) and never loses an output."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from helpers import smooth_image
from PIL import Image
from test_cli import assert_clean_failure, nic

from neurocodec.format import parse


@pytest.fixture
def photo(tmp_path):
    Image.fromarray(smooth_image(48, 64, seed=5)).save(tmp_path / "p.png")
    return tmp_path / "p.png"


def test_one_line_per_encoded_file(photo, tmp_path):
    r = nic("encode", photo, "-q", "60")
    assert r.returncode == 0
    data = photo.with_suffix(".nic").read_bytes()
    (line,) = r.stderr.strip().splitlines()
    assert (
        line
        == f"nic: {photo} -> {photo.with_suffix('.nic')}: {len(data):,} bytes, {8 * len(data) / (48 * 64):.3f} bpp, quality 60"
    )
    r = nic("encode", photo, "-f", "--quiet")
    assert r.returncode == 0 and r.stderr == ""


def test_verbose_says_size_model_device_and_timings(photo):
    r = nic("encode", photo, "-v", "--device", "cpu", "--threads", "1")
    assert r.returncode == 0
    first, detail = r.stderr.strip().splitlines()
    model = parse(photo.with_suffix(".nic").read_bytes()).model_id.hex()
    assert first.startswith("nic: ") and "quality 75" in first
    assert re.fullmatch(rf"nic:   64x48; model {model} on cpu; analysis [0-9.]+ s, coding [0-9.]+ s", detail), detail
    assert_clean_failure(nic("encode", photo, "-f", "-v", "--quiet"), "not both")


def test_rate_control_says_which_quality_it_chose_and_what_it_reached(photo, tmp_path):
    r = nic("encode", photo, "--size", "1500", "-o", tmp_path / "s.nic")
    assert r.returncode == 0
    f = parse((tmp_path / "s.nic").read_bytes())
    size = (tmp_path / "s.nic").stat().st_size
    assert size <= 1500
    assert f"{size:,} bytes" in r.stderr and f"quality {f.quality:g}, chosen for --size 1500, PSNR " in r.stderr
    r = nic("encode", photo, "--psnr", "33", "-o", tmp_path / "q.nic")
    reached = float(re.search(r"PSNR ([0-9.]+) dB", r.stderr).group(1))
    assert r.returncode == 0 and "chosen for --psnr 33" in r.stderr and reached >= 33


def test_quality_and_a_target_together_are_refused(photo, tmp_path):
    r = nic("encode", photo, "-q", "50", "--size", "2KB", "-o", tmp_path / "x.nic")
    assert_clean_failure(r, "give -q or --size, not both")
    assert not (tmp_path / "x.nic").exists()


def test_no_progress_bar_when_stderr_is_not_a_terminal(photo):
    r = nic("encode", photo, "--effort", "1", "-f")
    assert r.returncode == 0 and len(r.stderr.strip().splitlines()) == 1 and "refinement" not in r.stderr


def test_colliding_outputs_are_refused_before_any_work(tmp_path):
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    Image.fromarray(smooth_image(16, 16)).save(tmp_path / "photos" / "sub" / "small.PNG")
    Image.fromarray(smooth_image(16, 16, seed=1)).save(tmp_path / "photos" / "sub" / "small.jpg")
    Image.fromarray(smooth_image(16, 16, seed=2)).save(tmp_path / "photos" / "other.png")
    r = nic("encode", tmp_path / "photos", "-o", tmp_path / "out", "-f")
    assert_clean_failure(r, "several inputs would write the same output")
    assert "small.PNG" in r.stderr and "small.jpg" in r.stderr
    assert not (tmp_path / "out").exists()


def test_several_inputs_with_a_file_name_for_output_are_refused(photo, tmp_path):
    other = tmp_path / "q.png"
    Image.fromarray(smooth_image(16, 16)).save(other)
    r = nic("encode", photo, other, "-o", tmp_path / "single.nic")
    assert_clean_failure(r, "must be a folder")
    assert not (tmp_path / "single.nic").exists()
    r = nic("encode", photo, other, "-o", f"{tmp_path / 'a.folder'}/")
    assert r.returncode == 0 and (tmp_path / "a.folder" / "q.nic").exists()


def test_skip_existing_reruns_a_batch_without_touching_what_is_done(photo, tmp_path):
    other = tmp_path / "q.png"
    Image.fromarray(smooth_image(16, 16)).save(other)
    out = tmp_path / "out"
    assert nic("encode", photo, other, "-o", out).returncode == 0
    done = (out / "p.nic").stat().st_mtime_ns
    (out / "q.nic").unlink()
    r = nic("encode", photo, other, "-o", out)
    assert r.returncode == 1 and "already exists" in r.stderr  # without the flag: the existing one is an error
    assert (out / "q.nic").exists()
    (out / "q.nic").unlink()
    r = nic("encode", photo, other, "-o", out, "--skip-existing")
    assert r.returncode == 0 and "skipped 1 file" in r.stderr and "1 of 1 files converted" in r.stderr
    assert (out / "q.nic").exists() and (out / "p.nic").stat().st_mtime_ns == done


def test_decoding_to_nic_is_refused(photo, tmp_path):
    assert nic("encode", photo).returncode == 0
    assert_clean_failure(nic("decode", photo.with_suffix(".nic"), "-o", tmp_path / "y.nic"), "nic encode")
    assert_clean_failure(nic("decode", photo.with_suffix(".nic"), "--format", "nic"), "nic encode")
    assert not (tmp_path / "y.nic").exists()


def test_a_closed_pipe_ends_quietly(photo, tmp_path):
    assert nic("encode", photo).returncode == 0
    nic_file = photo.with_suffix(".nic")
    cmd = f'"{sys.executable}" -m neurocodec info "{nic_file}" "{nic_file}" "{nic_file}" | head -2; exit ${{PIPESTATUS[0]}}'
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stderr == "" and len(r.stdout.splitlines()) == 2
    cmd = f'"{sys.executable}" -m neurocodec decode "{nic_file}" -o - | head -c 10 > /dev/null; exit ${{PIPESTATUS[0]}}'
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "Broken pipe" not in r.stderr


def test_info_takes_several_files_stdin_and_json(photo, tmp_path):
    assert nic("encode", photo).returncode == 0
    nic_file = photo.with_suffix(".nic")
    r = nic("info", nic_file, nic_file)
    assert r.returncode == 0 and sum(line.startswith("file:") for line in r.stdout.splitlines()) == 2
    r = subprocess.run(
        [sys.executable, "-m", "neurocodec", "info", "-", "--json"],
        input=nic_file.read_bytes(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    record = json.loads(r.stdout)
    assert r.returncode == 0 and record["file"] == "stdin" and record["bytes"] == nic_file.stat().st_size
    assert (record["width"], record["height"], record["layout"]) == (64, 48, "RGB")
    r = nic("info", nic_file, tmp_path / "missing.nic", "--json")
    assert r.returncode == 1 and len(r.stdout.splitlines()) == 1 and "missing.nic" in r.stderr
