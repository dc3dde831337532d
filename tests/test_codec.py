"""The Python API end to end with the shipped weights."""

from __future__ import annotations

import math
import shutil
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import psnr, smooth_image
from PIL import Image

import neurocodec
from neurocodec.api import decode_symbols
from neurocodec.autoencoder import modelfiles
from neurocodec.autoencoder.gains import gains_for
from neurocodec.autoencoder.modelfiles import (
    DEFAULT_WEIGHTS,
    RETIRED_DIR,
    SUMS_NAME,
    availability,
    find_model,
    listed_sums,
    model_of,
    retired_path,
    sha256_of,
    sums_text,
)
from neurocodec.autoencoder.weights import load_float_model, load_weights, retire_weights, strip_for_decoding
from neurocodec.errors import NicError
from neurocodec.format import parse

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.mark.parametrize("height,width", [(1, 1), (5, 3), (17, 33), (70, 41)])
def test_round_trip_any_size(height, width):
    img = smooth_image(height, width, seed=height)
    data = neurocodec.encode(img, quality=60)
    out = neurocodec.decode(data)
    assert out.size == (width, height) and out.mode == "RGB"
    if height * width > 100:
        assert psnr(np.asarray(out), img) > 20


def test_quality_trades_bytes_for_fidelity(example_crop):
    sizes, psnrs = [], []
    for q in (0, 50, 100):
        data = neurocodec.encode(example_crop, quality=q)
        sizes.append(len(data))
        psnrs.append(psnr(np.asarray(neurocodec.decode(data)), example_crop))
    assert sizes[0] < sizes[1] < sizes[2]
    assert psnrs[0] < psnrs[1] < psnrs[2]
    assert parse(neurocodec.encode(example_crop, quality=33.25)).quality == 33.25


def test_accepts_path_pil_and_array(tmp_path, example_crop):
    path = tmp_path / "crop.png"
    Image.fromarray(example_crop).save(path)
    from_path = neurocodec.encode(str(path))
    assert neurocodec.encode(path) == from_path  # a Path as well as a str
    assert neurocodec.encode(path.read_bytes()) == from_path  # the file's bytes
    assert neurocodec.encode(Image.fromarray(example_crop)) == from_path
    assert neurocodec.encode(example_crop) == from_path
    assert np.asarray(neurocodec.decode(from_path)).shape == example_crop.shape


def test_symbols_identical_across_threads_and_evaluation_paths(example_crop):
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        data = neurocodec.encode(example_crop, quality=80)
        z2, y2 = decode_symbols(data)
        torch.set_num_threads(1)
        z1, y1 = decode_symbols(data, exact_path="int64")
        img1 = np.asarray(neurocodec.decode(data, exact_path="int64"))
    finally:
        torch.set_num_threads(old)
    assert np.array_equal(z1, z2) and np.array_equal(y1, y2)
    assert np.abs(y2).sum() > 0
    assert psnr(img1, example_crop) > 20


@pytest.mark.parametrize("weights", [DEFAULT_WEIGHTS, *sorted((DEFAULT_WEIGHTS.parent / RETIRED_DIR).glob("*.pt"))])
def test_gain_interpolation_is_exact_and_monotone_over_the_whole_range(weights):
    """Every quality 0.00..100.00: the ladder's own gains at its levels, an exact rational
    interpolation between them (round half up), and never a coarser gain for a higher quality."""
    gains = load_weights(weights).gains
    levels = gains.shape[0]
    assert torch.equal(gains_for(gains, 0), gains[0]) and torch.equal(gains_for(gains, 10000), gains[-1])
    table = torch.stack([gains_for(gains, q) for q in range(10001)])
    assert table.dtype == torch.int64
    assert torch.all(table[1:] >= table[:-1]), "a higher quality got a coarser gain"
    for q in (1, 3333, 5000, 7142, 9999):
        i, frac = divmod(q * (levels - 1), 10000)
        for ch in (0, gains.shape[1] // 2, gains.shape[1] - 1):
            lo, hi = int(gains[i, ch]), int(gains[min(i + 1, levels - 1), ch])
            exact = Fraction(lo * (10000 - frac) + hi * frac, 10000)
            assert int(table[q, ch]) == math.floor(exact + Fraction(1, 2)), (q, ch)
    for level in range(levels):  # the quality that lands on a level gives its gains exactly
        q = -(-level * 10000 // (levels - 1))
        if (q * (levels - 1)) % 10000 == 0:
            assert torch.equal(table[q], gains[level])


def _with_model_id(data: bytes, model_id: bytes) -> bytes:
    body = bytearray(data[:-4])
    body[18:26] = model_id
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def test_file_for_other_weights_is_rejected():
    data = neurocodec.encode(smooth_image(20, 20))
    with pytest.raises(NicError, match="needs model"):
        neurocodec.decode(_with_model_id(data, b"\xff" * 8))


def _other_weights(path, note: str = "another model") -> None:
    """A weights file with another identity (the same tensors, another progress note)."""
    obj = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    obj["progress"] = {**obj["progress"], "note": note}
    torch.save(obj, path)


def test_files_of_retired_weights_of_ones_own_still_decode(tmp_path):
    mine = tmp_path / "nic.pt"  # weights of one's own, not the shipped ones
    _other_weights(mine, "my model")
    data = neurocodec.encode(smooth_image(24, 40), quality=40, weights=mine)
    expected = np.asarray(neurocodec.decode(data, weights=mine))
    old = retire_weights(mine)  # outside the shipped folder: the whole file, whose hash is its identity
    assert old == retired_path(mine, parse(data).model_id) and old.read_bytes() == mine.read_bytes()
    assert retire_weights(mine) == old and not (old.parent / SUMS_NAME).exists()  # once only
    _other_weights(mine, "my next model")
    assert np.array_equal(np.asarray(neurocodec.decode(data, weights=mine)), expected)
    assert availability(parse(data).model_id, mine) == "retired weights, kept for decoding"
    old.unlink()
    with pytest.raises(NicError, match="needs model"):
        neurocodec.decode(data, weights=mine)
    # A file that merely carries the right name is not trusted, and nic info says so.
    _other_weights(old)
    with pytest.raises(NicError, match=f"needs model.*{old.name} is not that model"):
        neurocodec.decode(data, weights=mine)
    assert availability(parse(data).model_id, mine).startswith(f"not available here ({old} is not that model)")
    # Files of the shipped model still decode while one's own weights are in use.
    shipped = neurocodec.encode(smooth_image(24, 40), quality=40)
    assert neurocodec.decode(shipped, weights=mine).size == (40, 24)


def test_retired_decoders_are_vouched_for_by_the_shipped_sums_only(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"  # stands for the repository's weights/ folder
    shipped.mkdir()
    monkeypatch.setattr(modelfiles, "_shipped_dir", lambda: shipped)
    mine = shipped / "nic.pt"
    _other_weights(mine, "my model")
    data = neurocodec.encode(smooth_image(24, 40), quality=40, weights=mine)
    expected = np.asarray(neurocodec.decode(data, weights=mine))
    symbols = decode_symbols(data, weights=mine)
    old = retire_weights(mine)  # what shipping a new model does first: its decoder alone, listed in SHA256SUMS
    assert old == retired_path(mine, parse(data).model_id) and old.stat().st_size < mine.stat().st_size / 2
    assert listed_sums(old.parent) == {old.name: sha256_of(old)}
    assert retire_weights(mine) == old and listed_sums(old.parent) == {old.name: sha256_of(old)}  # once only
    _other_weights(mine, "my next model")
    assert np.array_equal(np.asarray(neurocodec.decode(data, weights=mine)), expected)
    assert all(np.array_equal(a, b) for a, b in zip(decode_symbols(data, weights=mine), symbols))
    # A decoder cannot encode, nor be trained.
    with pytest.raises(NicError, match="only a decoder"):
        neurocodec.encode(smooth_image(24, 40), weights=old)
    with pytest.raises(NicError, match="only a decoder"):
        load_float_model(old)
    with pytest.raises(NicError, match="only"):
        load_weights(old).model.analysis(torch.zeros(1, 3, 16, 16))
    # A copy of it decodes wherever it lies, given as the weights to use: its bytes are vouched for.
    copy = tmp_path / "elsewhere" / "decoder.pt"
    copy.parent.mkdir()
    shutil.copy(old, copy)
    assert np.array_equal(np.asarray(neurocodec.decode(data, weights=copy)), expected)
    assert model_of(copy) == parse(data).model_id and availability(parse(data).model_id, copy) == "the current weights"
    # Its bytes must be those SHA256SUMS lists, under its own model's name.
    sums = old.parent / SUMS_NAME
    listed = sums.read_text()
    sums.write_text(listed.replace(sha256_of(old), "0" * 64))
    with pytest.raises(NicError, match=f"needs model.*{SUMS_NAME}"):
        neurocodec.decode(data, weights=mine)
    sums.write_text(listed)
    assert neurocodec.decode(data, weights=mine).size == (40, 24)
    strip_for_decoding(mine, old)  # another model's decoder under this name, listed as it is
    with pytest.raises(NicError, match="needs model"):
        neurocodec.decode(data, weights=mine)


def test_a_sums_file_beside_ones_own_weights_vouches_for_nothing(tmp_path):
    """A crafted retired/<model>.pt and a SHA256SUMS line for it must not pass for a shipped model, nor hide it."""
    model = "806433ad306e1821"  # a shipped retired model, which has a golden file
    data = (GOLDEN / f"{model}.nic").read_bytes()
    genuine = DEFAULT_WEIGHTS.parent / RETIRED_DIR / f"{model}.pt"
    mine = tmp_path / "nic.pt"
    _other_weights(mine)
    crafted = retired_path(mine, bytes.fromhex(model))
    crafted.parent.mkdir()
    obj = torch.load(genuine, map_location="cpu", weights_only=True)
    obj["gains"] = obj["gains"] * 2  # other pixels
    torch.save(obj, crafted)
    (crafted.parent / SUMS_NAME).write_text(sums_text({crafted.name: sha256_of(crafted)}))
    assert find_model(bytes.fromhex(model), mine) == genuine.resolve()
    assert availability(bytes.fromhex(model), mine) == "retired weights, kept for decoding"
    assert np.array_equal(np.asarray(neurocodec.decode(data, weights=mine)), np.asarray(neurocodec.decode(data)))
    (crafted.parent / SUMS_NAME).unlink()  # unlisted, it does not hide the shipped one either
    assert np.array_equal(np.asarray(neurocodec.decode(data, weights=mine)), np.asarray(neurocodec.decode(data)))


def test_shipped_retired_weights_are_decoders_listed_under_their_names():
    folder = DEFAULT_WEIGHTS.parent / RETIRED_DIR
    paths = sorted(folder.glob("*.pt"))
    assert paths and set(listed_sums(folder)) == {p.name for p in paths}
    for path in paths:
        w = load_weights(path)
        assert w.identity.hex() == path.stem and w.decoder_only and model_of(path) == w.identity
        assert w.gains.shape[0] >= 6


def test_bad_inputs_raise_nic_error(tmp_path):
    with pytest.raises(NicError):
        neurocodec.encode(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(NicError):
        neurocodec.encode(tmp_path / "text.png")
    with pytest.raises(NicError):
        neurocodec.encode(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(NicError):
        neurocodec.encode(smooth_image(8, 8), quality=101)
    with pytest.raises(NicError):
        neurocodec.decode(b"GIF89a....")
