"""Where the networks run: CUDA when present, else the CPU; and whether bfloat16 is native there."""

from __future__ import annotations

import torch

from .errors import NicError


def pick_device(device: str = "auto") -> torch.device:
    """'auto' takes CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise NicError("--device cuda asked for, but no CUDA device is available (use --device auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise NicError(f"unknown device {device!r} (use auto, cpu or cuda)")
    return torch.device(device)


def native_bf16(dev: torch.device) -> bool:
    """Whether bfloat16 convolutions run natively here (GPUs that have them; CPUs with AMX or AVX512-BF16).

    Elsewhere they are emulated and slower than float32.
    """
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch API: absent means no
    return dev.type == "cpu" and any(getattr(torch.cpu, name, lambda: False)() for name in probes)
