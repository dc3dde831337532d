"""Golden files: .nic files that earlier releases wrote, one per shipped and retired model, decode as they did.

A refactor, a dependency upgrade (torch, constriction, numpy) or a new machine that
changes a single decoded symbol fails here. Pixels may differ by float rounding
between machines (the synthesis is float), so their PSNR is checked with a margin;
the symbols must be identical.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import psnr
from PIL import Image

import neurocodec
from neurocodec.api import decode_symbols
from neurocodec.autoencoder.modelfiles import DEFAULT_WEIGHTS, TUNED_WEIGHTS, identity_of, retired_path
from neurocodec.fitted import codec as fitted
from neurocodec.format import parse

GOLDEN = Path(__file__).resolve().parent / "golden"
RECORD = json.loads((GOLDEN / "golden.json").read_text())
FILES = RECORD["files"]
SHIPPED = [p for p in TUNED_WEIGHTS.values() if p.is_file()]  # the weights of each tuning (nic.pt, nic-ssim.pt)


def _symbols_hash(z: np.ndarray, y: np.ndarray) -> str:
    return hashlib.sha256(z.astype("<i8").tobytes() + y.astype("<i8").tobytes()).hexdigest()


def test_every_model_we_ship_or_retired_has_a_golden_file():
    """Shipping new weights means adding their golden file (made before the weights change again)."""
    models = {identity_of(p).hex() for p in SHIPPED} | {
        p.stem for p in (DEFAULT_WEIGHTS.parent / "retired").glob("*.pt")
    }
    models.add(fitted.MODEL_ID.hex())  # and the fitted mode, which carries its decoder in the file
    assert models == {f["model"] for f in FILES}
    for f in FILES:  # and each golden file is what it says it is
        header = parse((GOLDEN / f["file"]).read_bytes())
        assert header.model_id.hex() == f["model"] and header.quality_x100 == f["quality"] * 100
        assert (GOLDEN / f["file"]).read_bytes()[4] == f["format_version"]
        if "fitted_version" in f:
            assert header.chunks[fitted.CHUNK][0] == f["fitted_version"]
    assert {f.get("fitted_version") for f in FILES} >= {1, fitted.MODE_VERSION}  # each fitted mode version


@pytest.mark.parametrize("entry", FILES, ids=[f["file"] for f in FILES])
def test_golden_file_decodes_to_its_recorded_symbols(entry):
    data = (GOLDEN / entry["file"]).read_bytes()
    assert DEFAULT_WEIGHTS.exists() and (
        entry["model"] == fitted.MODEL_ID.hex()
        or any(identity_of(p).hex() == entry["model"] for p in SHIPPED)
        or retired_path(DEFAULT_WEIGHTS, bytes.fromhex(entry["model"])).exists()
    )
    z, y = decode_symbols(data)
    assert _symbols_hash(z, y) == entry["symbols_sha256"]
    z_ref, y_ref = decode_symbols(data, exact_path="int64")
    assert np.array_equal(z, z_ref) and np.array_equal(y, y_ref)


@pytest.mark.parametrize("entry", FILES, ids=[f["file"] for f in FILES])
def test_golden_file_decodes_to_its_recorded_picture(entry):
    with Image.open(GOLDEN / entry["source"]) as im:
        source = im.copy()
    out = neurocodec.decode((GOLDEN / entry["file"]).read_bytes())
    assert out.mode == source.mode and out.size == source.size
    rgb, expected = np.asarray(out.convert("RGB")), np.asarray(source.convert("RGB"))
    assert psnr(rgb, expected) == pytest.approx(entry["psnr"], abs=0.05)
    if source.mode == "RGBA":  # alpha is lossless, the colour profile kept
        assert np.array_equal(np.asarray(out)[:, :, 3], np.asarray(source)[:, :, 3])
        assert out.info["icc_profile"] == source.info["icc_profile"]
