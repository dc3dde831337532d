"""The .nic container (specified in FORMAT.md): version 2 written, versions 1 and 2 read.

    offset size field
    0      4    magic b"\\x89NIC"
    4      1    format version (2; 1 is read too)
    5      1    layout: 1 RGB, 2 grey, 3 RGB + alpha, 4 grey + alpha (version 1: RGB only)
    6      2    flags (0; reserved)
    8      4    width  (u32, >= 1)
    12     4    height (u32, >= 1)
    16     2    quality x 100 (u16, 0..10000)
    18     8    model identifier (first 8 bytes of SHA-256 of the weights file)
    26     4    ANS payload length in bytes (u32, multiple of 4)
    30     4    overflow payload length in bytes (u32)
    34     4    chunks length in bytes (u32; version 2 only)
    38     ...  ANS payload, overflow payload, chunks
    end-4  4    CRC-32 of every byte before it

Chunks: a 4-byte ASCII tag, a u32 length, the data. ALPH holds the alpha plane
(a PNG, lossless), ICCP the ICC colour profile (zlib), EXIF the Exif metadata
("Exif\0\0" and a TIFF structure), XMP the XMP packet (zlib). Readers skip tags
they do not know. All integers little-endian.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .errors import NicError

MAGIC = b"\x89NIC"
VERSION = 2
RGB8, GREY8, RGBA8, GREYA8 = 1, 2, 3, 4
LAYOUT_NAMES = {RGB8: "RGB", GREY8: "grey", RGBA8: "RGB + alpha", GREYA8: "grey + alpha"}
HAS_ALPHA = (RGBA8, GREYA8)
ALPHA, ICC, EXIF, XMP = b"ALPH", b"ICCP", b"EXIF", b"XMP "
_HEAD_V1 = struct.Struct("<4sBBHIIH8sII")
_HEAD = struct.Struct("<4sBBHIIH8sIII")
_CHUNK = struct.Struct("<4sI")
HEADER_SIZE = _HEAD.size  # 38 (34 in version 1)
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
    chunks: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def quality(self) -> float:
        return self.quality_x100 / 100.0

    def to_bytes(self) -> bytes:
        if not (1 <= self.width <= MAX_DIMENSION and 1 <= self.height <= MAX_DIMENSION):
            raise NicError(f"image size {self.width}x{self.height} not supported (at most {MAX_DIMENSION} a side)")
        extra = b"".join(_CHUNK.pack(tag, len(data)) + data for tag, data in self.chunks.items())
        head = _HEAD.pack(
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
            len(extra),
        )
        body = head + self.ans + self.overflow + extra
        return body + struct.pack("<I", zlib.crc32(body))


def _parse_chunks(data: bytes) -> dict[bytes, bytes]:
    chunks, pos = {}, 0
    while pos < len(data):
        if pos + _CHUNK.size > len(data):
            raise NicError("corrupted .nic file (truncated chunk header)")
        tag, n = _CHUNK.unpack_from(data, pos)
        pos += _CHUNK.size
        if pos + n > len(data) or tag in chunks:
            raise NicError("corrupted .nic file (bad chunk)")
        chunks[tag] = data[pos : pos + n]
        pos += n
    return chunks


def parse(data: bytes) -> NicFile:
    """Parse and check a .nic file; any defect raises NicError with one line."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise NicError("not a .nic file (wrong magic bytes)")
    if len(data) < 5:
        raise NicError("truncated .nic file (shorter than its header)")
    version = data[4]
    if version not in (1, 2):
        raise NicError(f"unsupported .nic format version {version} (this nic reads versions 1 and 2)")
    head = _HEAD if version == 2 else _HEAD_V1
    if len(data) < head.size + TRAILER_SIZE:
        raise NicError("truncated .nic file (shorter than its header)")
    fields = head.unpack_from(data)
    _magic, _version, layout, flags, w, h, q, model_id, n_ans, n_over = fields[:10]
    n_extra = fields[10] if version == 2 else 0
    expected = head.size + n_ans + n_over + n_extra + TRAILER_SIZE
    if len(data) < expected:
        raise NicError(f"truncated .nic file ({len(data)} of {expected} bytes)")
    if len(data) > expected:
        raise NicError(f"corrupted .nic file ({len(data) - expected} unexpected trailing bytes)")
    (crc,) = struct.unpack_from("<I", data, expected - TRAILER_SIZE)
    if zlib.crc32(data[: expected - TRAILER_SIZE]) != crc:
        raise NicError("corrupted .nic file (checksum mismatch)")
    layouts = LAYOUT_NAMES if version == 2 else {RGB8: "RGB"}
    if layout not in layouts or flags != 0:
        raise NicError(f"unsupported colour layout {layout} / flags {flags} (a newer nic may read it)")
    if not (1 <= w <= MAX_DIMENSION and 1 <= h <= MAX_DIMENSION) or q > 10000 or n_ans % 4:
        raise NicError("corrupted .nic file (invalid header fields)")
    pos = head.size
    ans, overflow = data[pos : pos + n_ans], data[pos + n_ans : pos + n_ans + n_over]
    chunks = _parse_chunks(data[pos + n_ans + n_over : expected - TRAILER_SIZE])
    if (layout in HAS_ALPHA) != (ALPHA in chunks):
        raise NicError("corrupted .nic file (alpha layout and alpha chunk disagree)")
    return NicFile(w, h, q, model_id, ans, overflow, layout, chunks)
