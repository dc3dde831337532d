"""The .nic container, version 1 (specified in FORMAT.md).

    offset size field
    0      4    magic b"\\x89NIC"
    4      1    format version (1)
    5      1    colour layout (1 = RGB, 8 bits per channel)
    6      2    flags (0; reserved)
    8      4    width  (u32, >= 1)
    12     4    height (u32, >= 1)
    16     2    quality x 100 (u16, 0..10000)
    18     8    model identifier (first 8 bytes of SHA-256 of the weights file)
    26     4    ANS payload length in bytes (u32, multiple of 4)
    30     4    overflow payload length in bytes (u32)
    34     ...  ANS payload, then overflow payload
    end-4  4    CRC-32 of every byte before it

All integers little-endian.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import NicError

MAGIC = b"\x89NIC"
VERSION = 1
RGB8 = 1
_HEADER = struct.Struct("<4sBBHIIH8sII")
HEADER_SIZE = _HEADER.size  # 34
TRAILER_SIZE = 4
MAX_DIMENSION = 1 << 20


@dataclass
class NicFile:
    width: int
    height: int
    quality_x100: int
    model_id: bytes
    ans: bytes
    overflow: bytes
    layout: int = RGB8

    @property
    def quality(self) -> float:
        return self.quality_x100 / 100.0

    def to_bytes(self) -> bytes:
        if not (1 <= self.width <= MAX_DIMENSION and 1 <= self.height <= MAX_DIMENSION):
            raise NicError(f"image size {self.width}x{self.height} not supported")
        head = _HEADER.pack(
            MAGIC,
            VERSION,
            self.layout,
            0,
            self.width,
            self.height,
            self.quality_x100,
            self.model_id,
            len(self.ans),
            len(self.overflow),
        )
        body = head + self.ans + self.overflow
        return body + struct.pack("<I", zlib.crc32(body))


def parse(data: bytes) -> NicFile:
    """Parse and check a .nic file; any defect raises NicError with one line."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise NicError("not a .nic file (wrong magic bytes)")
    if len(data) < HEADER_SIZE + TRAILER_SIZE:
        raise NicError("truncated .nic file (shorter than its header)")
    _magic, version, layout, flags, w, h, q, model_id, n_ans, n_over = _HEADER.unpack_from(data)
    if version != VERSION:
        raise NicError(f"unsupported .nic format version {version} (this nic reads version {VERSION})")
    expected = HEADER_SIZE + n_ans + n_over + TRAILER_SIZE
    if len(data) < expected:
        raise NicError(f"truncated .nic file ({len(data)} of {expected} bytes)")
    if len(data) > expected:
        raise NicError(f"corrupted .nic file ({len(data) - expected} unexpected trailing bytes)")
    (crc,) = struct.unpack_from("<I", data, expected - TRAILER_SIZE)
    if zlib.crc32(data[: expected - TRAILER_SIZE]) != crc:
        raise NicError("corrupted .nic file (checksum mismatch)")
    if layout != RGB8 or flags != 0:
        raise NicError(f"unsupported colour layout {layout} / flags {flags}")
    if not (1 <= w <= MAX_DIMENSION and 1 <= h <= MAX_DIMENSION) or q > 10000 or n_ans % 4:
        raise NicError("corrupted .nic file (invalid header fields)")
    ans = data[HEADER_SIZE : HEADER_SIZE + n_ans]
    overflow = data[HEADER_SIZE + n_ans : HEADER_SIZE + n_ans + n_over]
    return NicFile(w, h, q, model_id, ans, overflow, layout)
