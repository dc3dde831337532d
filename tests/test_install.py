"""neurocodec as an installed package: run from anywhere, with the shipped weights or one's own."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from helpers import smooth_image
from PIL import Image

import neurocodec
from neurocodec.autoencoder.modelfiles import DEFAULT_WEIGHTS, WEIGHTS_ENV, identity_of
from neurocodec.format import parse

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


def nic_elsewhere(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`nic` in a folder outside the checkout: it imports the installed neurocodec (CI installs
    the built wheel, not the checkout), so its weights come from the package data."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", WEIGHTS_ENV)}
    return subprocess.run(
        [sys.executable, "-m", "neurocodec", *map(str, args)],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_nic_runs_outside_the_checkout_with_the_packaged_weights(tmp_path):
    Image.fromarray(smooth_image(40, 56)).save(tmp_path / "p.png")
    r = nic_elsewhere("encode", "p.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert parse((tmp_path / "p.nic").read_bytes()).model_id == identity_of(DEFAULT_WEIGHTS)
    r = nic_elsewhere("decode", "p.nic", "-o", "back.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "back.png").size == (56, 40)


def test_files_of_every_retired_model_decode_outside_the_checkout(tmp_path):
    for entry in json.loads((GOLDEN / "golden.json").read_text())["files"]:
        r = nic_elsewhere("decode", GOLDEN / entry["file"], "-o", tmp_path / f"{entry['file']}.png", cwd=tmp_path)
        assert r.returncode == 0, (entry["file"], r.stderr)


def _my_weights(path: Path) -> bytes:
    obj = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    obj["progress"] = {**obj["progress"], "note": "trained on my own photos"}
    torch.save(obj, path)
    return identity_of(path)


def test_weights_of_ones_own_by_option_and_by_variable(tmp_path):
    mine = _my_weights(tmp_path / "mine.pt")
    Image.fromarray(smooth_image(24, 32)).save(tmp_path / "p.png")
    r = nic_elsewhere("encode", "p.png", "-o", "a.nic", "--weights", tmp_path / "mine.pt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert parse((tmp_path / "a.nic").read_bytes()).model_id == mine
    env = {WEIGHTS_ENV: str(tmp_path / "mine.pt")}
    r = nic_elsewhere("encode", "p.png", "-o", "b.nic", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b.nic").read_bytes() == (tmp_path / "a.nic").read_bytes()
    assert nic_elsewhere("decode", "b.nic", cwd=tmp_path, env=env).returncode == 0
    r = nic_elsewhere("info", "b.nic", cwd=tmp_path, env=env)
    assert "the current weights" in r.stdout
    # The API reads the variable too; files of the shipped model still decode beside one's own.
    old = os.environ.get(WEIGHTS_ENV)
    try:
        os.environ[WEIGHTS_ENV] = str(tmp_path / "mine.pt")
        assert parse(neurocodec.encode(smooth_image(24, 32))).model_id == mine
        shipped = neurocodec.encode(smooth_image(24, 32), weights=DEFAULT_WEIGHTS)
        assert np.asarray(neurocodec.decode(shipped)).shape == (24, 32, 3)
    finally:
        os.environ.pop(WEIGHTS_ENV) if old is None else os.environ.__setitem__(WEIGHTS_ENV, old)
    # Any file name will do for one's own weights, not only *.pt.
    named = tmp_path / "mine.weights"
    named.write_bytes((tmp_path / "mine.pt").read_bytes())
    own = neurocodec.encode(smooth_image(24, 32), weights=named)
    assert neurocodec.decode(own, weights=named).size == (32, 24)
    r = nic_elsewhere("encode", "p.png", "--weights", tmp_path / "none.pt", "-o", "c.nic", cwd=tmp_path)
    assert r.returncode != 0 and "weights file not found" in r.stderr and not (tmp_path / "c.nic").exists()


def test_the_version_is_defined_once_and_the_package_is_typed():
    assert importlib.metadata.version("neurocodec") == neurocodec.__version__
    assert (Path(neurocodec.__file__).parent / "py.typed").is_file()
    r = subprocess.run([sys.executable, "-m", "neurocodec", "--version"], capture_output=True, text=True, check=False)
    assert r.stdout.strip().endswith(neurocodec.__version__)
