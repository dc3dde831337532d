"""Keeping freed memory in the process while a fit runs, and handing it back after.

glibc's malloc serves large blocks (a 768x512 activation of 16 channels is 25 MB) with mmap, and trims
the heap's free top once it passes twice that, so every fitting iteration, which frees some hundred MB
of activations, faulted its pages in afresh. Inside `kept`, malloc neither maps large blocks nor trims,
so a freed block is reused at once; on leaving, malloc's default limits come back and `malloc_trim`
returns what is free. Measured on 2 idle cores, forward and backward of a 768x512 fit: 246-283 ms
without, 212-222 ms with. The autoencoder's encode and decode did not change with it (768x512 and
1276x850 images), so only the fit uses it.
Elsewhere (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# mallopt's parameters and glibc's defaults for them (malloc.h, mallopt(3))
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_TRIM_THRESHOLD = 2**31 - 1  # the most mallopt takes (an int): a free top of 2 GiB is trimmed

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.malloc_trim.argtypes = [ctypes.c_int, ctypes.c_int], [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def _set(trim: int, mmap_max: int) -> None:
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_TRIM_THRESHOLD, trim)
        libc.mallopt(M_MMAP_MAX, mmap_max)


@contextmanager
def kept() -> Iterator[None]:
    """Freed memory stays in the process until the outermost `kept` ends (nests, and across threads)."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            _set(KEEP_TRIM_THRESHOLD, 0)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX)
                libc = _glibc()
                if libc is not None:
                    libc.malloc_trim(0)


def keeping(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` run inside `kept`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with kept():
            return fn(*args, **kwargs)

    return wrapper
