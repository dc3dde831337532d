"""The .nic container: layout, and rejection of every kind of broken file."""

from __future__ import annotations

import struct
import zlib

import pytest

from neurocodec.errors import NicError
from neurocodec.format import HEADER_SIZE, MAGIC, NicFile, parse


def sample() -> NicFile:
    return NicFile(
        width=17,
        height=5,
        quality_x100=7550,
        model_id=bytes(range(8)),
        ans=b"\x01\x02\x03\x04" * 3,
        overflow=b"\x05\x06",
    )


def test_round_trip_and_layout():
    f = sample()
    data = f.to_bytes()
    assert data[:4] == MAGIC and data[4] == 1
    assert len(data) == HEADER_SIZE + 12 + 2 + 4
    assert struct.unpack_from("<II", data, 8) == (17, 5)
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])
    assert parse(data) == f
    assert parse(data).quality == 75.5


def test_every_truncation_is_rejected():
    data = sample().to_bytes()
    for n in range(len(data)):
        with pytest.raises(NicError):
            parse(data[:n])


def test_every_byte_flip_is_rejected():
    data = sample().to_bytes()
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
