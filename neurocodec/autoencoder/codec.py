"""The autoencoder's encoder and decoder, as mirrors.

Encode: pixels -> g_a -> y; y -> h_a -> z (rounded); z -> exact integer h_s ->
mean and scale of y (`analyse`: everything that does not depend on the
quality); then at a quality, the gained y rounded around its means, the
checkerboard's two passes included, and z and y entropy-coded into a .nic file
(`Analysis.code`). Decode: z, then y's sections, with the same exact
parameters (`decode_latents`), then the float synthesis g_s (`decode_pixels`).

Strategies that search over encodings (refinement, rate control) live beside
this module and are run by the API (`neurocodec.api`); this core imports none of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import pick_device
from ..entropy.coder import SectionDecoder, encode_sections
from ..errors import NicError
from ..format import NicFile
from ..imageio import ImageLike, Prepared, PreparedSource, prepare
from ..progress import Progress, report
from .gains import gains_for
from .model import Y_STRIDE, Z_STRIDE, NicModel
from .modelfiles import resolve_weights
from .tiling import MARGIN, TILE, tiles
from .weights import Weights, load_weights, weights_for


def latent_sizes(width: int, height: int) -> tuple[int, int, int, int]:
    """Rows and columns of y and of z for an image (each rounded up)."""
    hy, wy = -(-height // Y_STRIDE), -(-width // Y_STRIDE)
    return hy, wy, -(-hy // Z_STRIDE), -(-wy // Z_STRIDE)


def analysis_tiled(
    model: NicModel, x: torch.Tensor, tile: int = TILE, margin: int = MARGIN, progress: Progress | None = None
) -> torch.Tensor:
    """g_a over (1, 3, H, W) pixels (H, W multiples of 16) tile by tile, into y on the CPU."""
    _, _, h, w = x.shape
    y = torch.empty(1, model.cfg.m, h // Y_STRIDE, w // Y_STRIDE)
    todo = list(tiles((h, w), (h // Y_STRIDE, w // Y_STRIDE), (1, Y_STRIDE), tile, margin, tile + 2 * margin))
    for i, t in enumerate(todo):
        y[(..., *t.write)] = model.analysis(x[(..., *t.read)]).cpu()[(..., *t.keep)]
        report(progress, "analysis", i + 1, len(todo))
    return y


def synthesis_tiled(
    model: NicModel,
    y_hat: torch.Tensor,
    height: int,
    width: int,
    dev: torch.device,
    tile: int = TILE,
    margin: int = MARGIN,
    progress: Progress | None = None,
) -> np.ndarray:
    """g_s tile by tile: y_hat (1, m, hy, wy) -> (height, width, 3) uint8 pixels."""
    out = np.empty((height, width, 3), np.uint8)
    todo = list(tiles(tuple(y_hat.shape[2:]), (height, width), (Y_STRIDE, 1), tile // Y_STRIDE, margin // Y_STRIDE))
    for i, t in enumerate(todo):
        x = model.synthesis(y_hat[(..., *t.read)].to(dev))[0]
        part = x[(..., *t.keep)].clamp(0, 255).round().to(torch.uint8)
        out[t.write] = part.permute(1, 2, 0).cpu().numpy()
        report(progress, "synthesis", i + 1, len(todo))
    return out


@dataclass
class Analysis(PreparedSource):
    """Everything about an image that does not depend on the quality: coding it
    at many qualities (rate control) runs the analysis transform once."""

    img: Prepared
    w: Weights
    dev: torch.device
    y: torch.Tensor  # float32 latents (CPU)
    z: torch.Tensor  # int64 hyper-latents
    mean_q: torch.Tensor  # exact Q8 mean and scale of y from z, before the gains
    scale_q: torch.Tensor

    def with_latents(self, y: torch.Tensor, z: torch.Tensor) -> Analysis:
        """The same image with other latents (z rounded here), their exact entropy parameters derived again."""
        z_int = z.detach().round().to(torch.int64).cpu()
        mean_q, scale_q = self.w.y.params(z_int, y.shape[2], y.shape[3])
        return replace(self, y=y.detach().float().cpu().clone(), z=z_int, mean_q=mean_q, scale_q=scale_q)

    def symbols(self, q100: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """y's symbols at quality q100, the Q8 mean and scale they are coded with, and the gains (Q16)."""
        gain_q = gains_for(self.w.gains, q100)
        v, mean_q, scale_q = self.w.y.quantize(self.y, self.mean_q, self.scale_q, gain_q)
        return v, mean_q, scale_q, gain_q

    def code(self, q100: int) -> bytes:
        """The .nic file at quality q100 (quality x 100)."""
        v, _, scale_q, gain_q = self.symbols(q100)
        ans, overflow = encode_sections([self.w.z.compress(self.z), *self.w.y.compress(v, scale_q, gain_q)])
        height, width = self.img.rgb.shape[:2]
        return NicFile(
            width, height, q100, self.w.identity, ans, overflow, self.img.layout, self.img.chunks()
        ).to_bytes()

    @torch.no_grad()
    def reconstruct(self, q100: int) -> np.ndarray:
        """The RGB pixels a decoder will show for quality q100, without entropy coding."""
        v, mean_q, _, gain_q = self.symbols(q100)
        y_hat = self.w.y.dequantize(v, mean_q, gain_q)
        del v, mean_q
        height, width = self.img.rgb.shape[:2]
        return synthesis_tiled(self.w.model.to(self.dev), y_hat, height, width, self.dev)


@torch.no_grad()
def analyse(
    image: ImageLike,
    device: str = "auto",
    weights: str | os.PathLike | None = None,
    metadata: str | tuple | list | set | frozenset = "all",
    progress: Progress | None = None,
) -> Analysis:
    """Run the quality-independent part of the encoder: y, z and y's entropy parameters.

    metadata: what of the image's ICC profile, EXIF and XMP the file keeps (`imageio.metadata_kinds`).
    """
    img = prepare(image, metadata)
    height, width = img.rgb.shape[:2]
    if height * width == 0:
        raise NicError("cannot encode an empty image")
    w = load_weights(weights)
    if w.decoder_only:
        raise NicError(
            f"the weights {resolve_weights(weights)} hold only a decoder (retired, kept so old files decode): "
            "encode with the shipped weights or your own"
        )
    dev = pick_device(device)
    model = w.model.to(dev)
    hy, wy, _, _ = latent_sizes(width, height)
    rgb = img.rgb if img.rgb.flags.writeable else img.rgb.copy()
    x = torch.from_numpy(rgb).to(dev).permute(2, 0, 1)[None].float()
    x = F.pad(x, (0, wy * Y_STRIDE - width, 0, hy * Y_STRIDE - height), mode="replicate")
    y = analysis_tiled(model, x, progress=progress)
    del x
    z = model.hyper_analysis(y.to(dev)).round().cpu().to(torch.int64)
    mean_q, scale_q = w.y.params(z, hy, wy)
    return Analysis(img, w, dev, y, z, mean_q, scale_q)


def decode_latents(
    f: NicFile, w: Weights, exact_path: str = "float64"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mirror of `Analysis.code`: z, y's symbols and y_hat (float32) of a parsed file."""
    if exact_path not in ("float64", "int64"):
        raise NicError(f"unknown exact_path {exact_path!r} (float64 or int64)")
    reference = exact_path == "int64"
    hy, wy, hz, wz = latent_sizes(f.width, f.height)
    dec = SectionDecoder(f.ans, f.overflow)
    z = w.z.decompress(dec, hz, wz)
    gain_q = gains_for(w.gains, f.quality_x100)
    mean_q, scale_q = w.y.params(z, hy, wy, reference=reference)
    v, mean_q = w.y.decompress(dec, mean_q, scale_q, gain_q, reference=reference)
    dec.finish()
    return z, v, w.y.dequantize(v, mean_q, gain_q)


def open_file(f: NicFile, weights: str | os.PathLike | None = None) -> Weights:
    """The weights a parsed file needs (the current ones or a retired model)."""
    return weights_for(f.model_id, weights)


@torch.no_grad()
def decode_pixels(
    f: NicFile, w: Weights, device: str = "auto", exact_path: str = "float64", progress: Progress | None = None
) -> np.ndarray:
    """The RGB pixels of a parsed file."""
    y_hat = decode_latents(f, w, exact_path)[2]  # z and the symbols are freed before the synthesis
    dev = pick_device(device)
    return synthesis_tiled(w.model.to(dev), y_hat, f.height, f.width, dev, progress=progress)
