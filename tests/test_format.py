"""The .nic container: layout, and rejection of every kind of broken file."""

from __future__ import annotations

import struct
import zlib

import pytest

from neurocodec.errors import NicError
from neurocodec.format import ALPHA, HEADER_SIZE, ICC, MAGIC, RGB8, RGBA8, NicFile, parse


def sample(**kw) -> NicFile:
    return NicFile(
        width=17,
        height=5,
        quality_x100=7550,
        model_id=bytes(range(8)),
        ans=b"\x01\x02\x03\x04" * 3,
        overflow=b"\x05\x06",
        **kw,
    )


def with_chunks() -> NicFile:
    return sample(layout=RGBA8, chunks={ALPHA: b"alpha-png", ICC: b"icc"})


def test_round_trip_and_layout():
    f = sample()
    data = f.to_bytes()
    assert data[:4] == MAGIC and data[4] == 2
    assert len(data) == HEADER_SIZE + 12 + 2 + 4
    assert struct.unpack_from("<II", data, 8) == (17, 5)
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])
    assert parse(data) == f
    assert parse(data).quality == 75.5


def test_chunks_round_trip_and_version_1_still_reads():
    f = with_chunks()
    assert parse(f.to_bytes()) == f
    # A version 1 file: 34-byte header without the chunks length, RGB only.
    v1 = struct.pack("<4sBBHIIH8sII", MAGIC, 1, RGB8, 0, 17, 5, 7550, bytes(range(8)), 12, 2) + f.ans + f.overflow
    v1 += struct.pack("<I", zlib.crc32(v1))
    assert parse(v1) == sample()


def test_alpha_layout_needs_its_chunk_and_unknown_chunks_are_skipped():
    with pytest.raises(NicError, match="alpha"):
        parse(sample(layout=RGBA8).to_bytes())
    with pytest.raises(NicError, match="alpha"):
        parse(sample(chunks={ALPHA: b"x"}).to_bytes())
    f = sample(chunks={b"FUTR": b"later"})
    assert parse(f.to_bytes()).chunks == {b"FUTR": b"later"}


@pytest.mark.parametrize("make", [sample, with_chunks])
def test_every_truncation_is_rejected(make):
    data = make().to_bytes()
    for n in range(len(data)):
        with pytest.raises(NicError):
            parse(data[:n])


@pytest.mark.parametrize("make", [sample, with_chunks])
def test_every_byte_flip_is_rejected(make):
    data = make().to_bytes()
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x40
        with pytest.raises(NicError):
            parse(bytes(bad))


def test_trailing_bytes_wrong_magic_and_unknown_version():
    data = sample().to_bytes()
    with pytest.raises(NicError, match="trailing"):
        parse(data + b"\0")
    with pytest.raises(NicError, match="not a .nic"):
        parse(b"\x89PNG" + data[4:])
    bad = bytearray(data)
    bad[4] = 9
    bad[-4:] = struct.pack("<I", zlib.crc32(bytes(bad[:-4])))
    with pytest.raises(NicError, match="version 9"):
        parse(bytes(bad))
