"""Write files so that a crash or Ctrl-C never leaves half of one behind."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import torch


def _umask_mode() -> int:
    """The mode an ordinary open() would give a new file (mkstemp uses 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A file to write that takes the place of `path` once the block ends (removed if it raises).

    It is a temporary file of a name no other process or machine picks
    (mkstemp, in the folder of `path`, so the rename stays on one disk).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it into place."""
    with replacing(path) as f:
        f.write(data)


def save_atomic(obj: object, path: str | os.PathLike) -> None:
    """torch.save through a temporary file, then rename.

    Serialized in memory first: torch.save names the archive inside the file
    after the file it writes to, and the temporary name is random, so writing
    the same weights twice would give two files and two model identities.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
