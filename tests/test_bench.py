"""`nic bench`: its numbers against independent computations, BD numbers on known curves, MS-SSIM."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import smooth_image
from PIL import Image

import neurocodec
from neurocodec.bench import (
    REFERENCES,
    Point,
    bd_psnr,
    bd_rate,
    nic_ladder,
    parse_codecs,
    run_bench,
)
from neurocodec.errors import NicError
from neurocodec.metrics import ms_ssim, msssim_db, msssim_scales

TINY = [smooth_image(40, 48, seed=11), smooth_image(64, 64, seed=12)]
SWEEPS = {"nic": [0, 40, 70, 100], "jpeg": [10, 30, 50, 70, 90]}


def own_psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = a.astype(np.float64) - b.astype(np.float64)
    return 10 * math.log10(255**2 / float(np.mean(err * err)))


def independent(codec: str, value: float) -> tuple[float, float]:
    """Mean bpp and PSNR over TINY, computed without neurocodec.bench."""
    bpps, psnrs = [], []
    for a in TINY:
        if codec == "nic":
            data = neurocodec.encode(a, quality=value, device="cpu")
            back = np.asarray(neurocodec.decode(data, device="cpu").convert("RGB"))
        else:
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="JPEG", quality=int(value), optimize=True)
            data = buf.getvalue()
            back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        bpps.append(len(data) * 8 / (a.shape[0] * a.shape[1]))
        psnrs.append(own_psnr(back, a))
    return float(np.mean(bpps)), float(np.mean(psnrs))


@pytest.fixture(scope="module")
def result():
    return run_bench(TINY, ["nic", "jpeg"], sweeps=SWEEPS, device="cpu", names=["a.png", "b.png"])


def test_bench_points_agree_with_independent_computation(result):
    assert [p.setting for p in result.curves["nic"]] == SWEEPS["nic"]
    assert [p.setting for p in result.curves["jpeg"]] == SWEEPS["jpeg"]
    for codec, value in [("nic", 40), ("nic", 100), ("jpeg", 50)]:
        p = next(p for p in result.curves[codec] if p.setting == value)
        bpp, ps = independent(codec, value)
        assert p.bpp == pytest.approx(bpp, rel=1e-12), (codec, value)
        assert p.psnr == pytest.approx(ps, rel=1e-12), (codec, value)
    for pts in result.curves.values():
        for p in pts:
            assert 0 < p.msssim <= 1 and p.encode_ms >= 0 and p.decode_ms >= 0
            assert len(p.per_image) == 2 and all(len(row) == 3 for row in p.per_image)
    c = result.comparisons["jpeg"]
    assert set(c) == {"bd_rate_psnr", "bd_rate_msssim", "bd_psnr"}
    assert all(math.isfinite(v) for v in c.values())  # these curves overlap
    json.dumps(result.to_dict(), allow_nan=False)  # strict JSON: nan becomes null


def test_nic_sweep_follows_the_weights():
    from neurocodec.autoencoder.weights import load_weights

    levels = load_weights().gains.shape[0]
    ladder = nic_ladder()
    assert len(ladder) == levels and ladder[0] == 0 and ladder[-1] == 100
    assert ladder == pytest.approx([100 * i / (levels - 1) for i in range(levels)], abs=0.005)


def test_parse_codecs():
    assert parse_codecs("all") == list(REFERENCES)
    assert parse_codecs("webp, JPEG") == ["jpeg", "webp"]
    with pytest.raises(NicError, match="unknown codec 'gif'"):
        parse_codecs("jpeg,gif")


# --- Bjontegaard deltas on curves with a known answer ---

RATES = np.array([0.15, 0.3, 0.6, 1.2, 2.4])
ANCHOR_DB = 30 + 6 * np.log2(RATES) - 0.4 * np.log2(RATES) ** 2  # curved, increasing


def curve(rates, dbs):
    return list(zip(np.asarray(rates).tolist(), np.asarray(dbs).tolist()))


def test_bd_rate_known_answers():
    anchor = curve(RATES, ANCHOR_DB)
    assert bd_rate(anchor, anchor) == pytest.approx(0, abs=1e-9)
    assert bd_rate(anchor, curve(0.8 * RATES, ANCHOR_DB)) == pytest.approx(-20, abs=1e-8)
    assert bd_rate(anchor, curve(1.25 * RATES, ANCHOR_DB)) == pytest.approx(25, abs=1e-8)
    # Straight lines in log-rate: a shift of d dB is a rate factor exp(-d / slope), even with partial overlap.
    slope = 5.0
    line = 30 + slope * np.log(RATES)
    assert bd_rate(curve(RATES, line), curve(RATES, line + 1)) == pytest.approx(100 * (math.exp(-1 / slope) - 1))
    # No overlap, or too few points for a cubic: no answer.
    assert math.isnan(bd_rate(anchor, curve(RATES, ANCHOR_DB + 40)))
    assert math.isnan(bd_rate(anchor, anchor[:3]))


def test_bd_psnr_known_answers():
    anchor = curve(RATES, ANCHOR_DB)
    assert bd_psnr(anchor, anchor) == pytest.approx(0, abs=1e-9)
    assert bd_psnr(anchor, curve(RATES, ANCHOR_DB + 1)) == pytest.approx(1.0, abs=1e-9)
    assert bd_psnr(anchor, curve(RATES, ANCHOR_DB - 0.5)) == pytest.approx(-0.5, abs=1e-9)
    # Fewer bits for the same quality is a gain at equal rate.
    assert bd_psnr(anchor, curve(0.8 * RATES, ANCHOR_DB)) > 0
    assert math.isnan(bd_psnr(anchor, curve(100 * RATES, ANCHOR_DB)))


# --- MS-SSIM ---


def noisy(a: np.ndarray, sd: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(a + rng.normal(0, sd, a.shape), 0, 255).astype(np.uint8)


def test_msssim_identity_and_noise():
    a = smooth_image(176, 192, seed=1)
    assert ms_ssim(a, a) == 1.0
    values = [ms_ssim(noisy(a, sd, 7), a) for sd in (2, 5, 10, 20, 40)]
    assert all(x > y for x, y in itertools.pairwise(values)), values
    assert msssim_db(0.99) == pytest.approx(20.0)


def test_msssim_matches_reference_implementation():
    # Cross-checked by hand against pytorch-msssim 1.0.0 (ms_ssim(X, Y, data_range=255) on float64
    # tensors): it gives 0.9587472705 with its default float32 Gaussian window and 0.9587467309
    # when given the same window in float64, which is what we compute.
    a = smooth_image(176, 192, seed=1)
    b = noisy(a, 8.0, 1)
    assert ms_ssim(a, b) == pytest.approx(0.9587467309291444, abs=1e-9)
    # Under 22 pixels a side there is one scale: plain SSIM. pytorch-msssim's ssim() (float64 window): 0.76533754.
    a = smooth_image(20, 24, seed=5)
    assert ms_ssim(a, noisy(a, 10.0, 5)) == pytest.approx(0.7653375392793955, abs=1e-9)


def test_msssim_small_images():
    assert msssim_scales(176, 300) == 5 and msssim_scales(175, 300) == 4
    assert msssim_scales(40, 48) == 2 and msssim_scales(11, 11) == 1 and msssim_scales(10, 50) == 0
    a = TINY[0]
    assert 0 < ms_ssim(noisy(a, 10, 3), a) < 1
    with pytest.raises(ValueError, match="at least 11x11"):
        ms_ssim(a[:10], a[:10])


# --- reference-curve cache (benchmarks/rd_valid.py) ---


def test_cache_from_before_msssim_is_read_and_refreshed(tmp_path):
    # The format rd_valid.py wrote before MS-SSIM: no "msssim", per_image rows of [bpp, psnr].
    old = [
        {"setting": v, "bpp": 1.0 + v, "psnr": 30.0 + v, "encode_ms": 1, "decode_ms": 1, "per_image": [[1, 30]] * 2}
        for v in SWEEPS["jpeg"]
    ]
    cache = tmp_path / "refs.json"
    cache.write_text(json.dumps({"jpeg": old}))
    r = run_bench(TINY, ["jpeg"], sweeps=SWEEPS, msssim=False, cache=cache)
    assert [p.bpp for p in r.curves["jpeg"]] == [d["bpp"] for d in old]  # used as it was
    assert math.isnan(r.curves["jpeg"][0].msssim)
    r = run_bench(TINY, ["jpeg"], sweeps=SWEEPS, msssim=True, cache=cache)  # needs MS-SSIM: measured again
    assert r.curves["jpeg"][2].bpp == pytest.approx(independent("jpeg", 50)[0])
    stored = [Point.from_dict(d) for d in json.loads(cache.read_text())["jpeg"]]
    assert all(0 < p.msssim <= 1 for p in stored)


# --- output ---


def test_plot(result, tmp_path):
    pytest.importorskip("matplotlib")
    from neurocodec.bench import plot_rd

    out = tmp_path / "rd.png"
    plot_rd(result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_get_it(result, tmp_path, monkeypatch):
    from neurocodec.bench import plot_rd

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(NicError, match=r"pip install 'neurocodec\[plot\]'"):
        plot_rd(result, tmp_path / "rd.png")


def test_table_shows_points_bd_and_settings(result):
    from neurocodec.bench import format_table, to_markdown

    text = format_table(result)
    assert "MS-SSIM" in text and "BD-rate PSNR" in text and "BD-PSNR" in text
    assert "quality=V, optimize=True" in text and "libjpeg" in text
    rows = [line.split() for line in text.splitlines() if re.match(r"(nic|JPEG) +q\d", line)]
    assert len(rows) == 9 and rows[4][:3] == ["JPEG", "q10", f"{result.curves['jpeg'][0].bpp:.3f}"]
    assert "| nic quality |" in to_markdown(result)


# --- the command line ---


def nic(*args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "neurocodec.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=300, check=False)


def assert_one_line_error(r: subprocess.CompletedProcess, words: str) -> None:
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nic: error:") and words in lines[0], r.stderr


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    paths = [d / "a.png", d / "b.png"]
    for p, a in zip(paths, TINY):
        Image.fromarray(a).save(p)
    return paths


def test_cli_bench_json_csv(tiny_files, tmp_path):
    out_json, out_csv = tmp_path / "rd.json", tmp_path / "rd.csv"
    args = ["bench", *tiny_files, "--vs", "jpeg", "--sweep", "nic=0,40,70,100", "--sweep", "jpeg=10,30,50,70,90"]
    r = nic(*args, "--json", out_json, "--csv", out_csv, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "BD-rate PSNR" in r.stdout and "optimize=True" in r.stdout and "2 images" in r.stdout
    data = json.loads(out_json.read_text())
    assert data["images"] == [str(p) for p in tiny_files]
    point = next(p for p in data["curves"]["jpeg"] if p["setting"] == 50)
    bpp, ps = independent("jpeg", 50)
    assert point["bpp"] == pytest.approx(bpp, rel=1e-12) and point["psnr"] == pytest.approx(ps, rel=1e-12)
    point = next(p for p in data["curves"]["nic"] if p["setting"] == 40)
    assert point["bpp"] == pytest.approx(independent("nic", 40)[0], rel=1e-12)
    assert set(data["comparisons"]["jpeg"]) == {"bd_rate_psnr", "bd_rate_msssim", "bd_psnr"}
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 9 and rows[0]["codec"] == "nic" and float(rows[6]["bpp"]) == pytest.approx(bpp, rel=1e-5)
    # Outputs are never overwritten without -f, and that is checked before the run.
    assert_one_line_error(nic(*args, "--json", out_json), "already exists")


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing", "no such file or folder"),
        ("empty_dir", "no images found"),
        ("unknown_codec", "unknown codec 'gif'"),
        ("bad_sweep", "--sweep takes CODEC="),
        ("not_image", "cannot read"),
    ],
)
def test_cli_bench_bad_input(case, words, tmp_path, tiny_files):
    args = {
        "missing": [tmp_path / "nope.png"],
        "empty_dir": [tmp_path],
        "unknown_codec": [tiny_files[0], "--vs", "jpeg,gif"],
        "bad_sweep": [tiny_files[0], "--sweep", "jpeg"],
        "not_image": [tmp_path / "fake.png"],
    }[case]
    if case == "not_image":
        (tmp_path / "fake.png").write_text("hello")
    assert_one_line_error(nic("bench", *args), words)


def test_help_lists_bench_without_importing_torch():
    r = nic("--help")
    assert r.returncode == 0 and "bench" in r.stdout
    code = "import sys, neurocodec.cli; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
