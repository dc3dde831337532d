"""The fitted mode's encoder and decoder, as mirrors (FORMAT.md, "The fitted payload").

Encode: fit latents and networks to the image (`fit.fit`), then quantise: the
latents are rounded, the context model becomes integer (`context.IntARM`, a
power-of-two weight step per layer, those that code latents and weights in the
fewest bits), and every decoder tensor takes the power-of-two
step with the least MSE + lambda * bits. Coded: the header chunk (architecture,
each tensor's step and Laplace table), each network tensor's integers, then the
latents wave by wave with the exact context model's tables (`laplace`).
Decode: the same in reverse; only the float decoder may differ by rounding
between machines, never the symbols.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..entropy.coder import MAX_SYMBOL, Ordered, SectionDecoder, encode_sections, zigzag_varints
from ..entropy.tables import COUNT_BITS
from ..errors import NicError
from ..format import NicFile
from ..imageio import Prepared, PreparedSource
from ..progress import Progress, report
from . import laplace
from .context import ACT_FRAC_BITS, FEATURES, IntARM, IntLinear, Schedule, decode_waves, encode_order
from .fit import fit
from .model import ARM, DEFAULT, UPSAMPLING_4X4, Architecture, Decoder, Fitted

MODEL_ID = b"nicfit\x00\x01"  # the model field of every fitted file (its mode version is in the chunk)
CHUNK = b"FITM"
_HEAD = struct.Struct("<BBBBB")  # mode version, levels, context width, hidden layers, synthesis width
MODE_VERSION = 2  # what the encoder writes: version 1's header + the upsampling kind; a decoder reads both
ARM_STEPS = range(5, 13)  # candidate weight steps 2**-k of the context model, all layers (then a layer's: 0 to 12)
DECODER_STEPS = range(17)  # ... and of each decoder tensor
MAX_STEP = 24
# A fit holds the whole image's activations: 0.9 GB at peak for 768x512, 2.3 GB for 1536x1024, 2.9 GB for
# 2048x1024 (measured); larger images take the autoencoder's tiles (3 GB at most).
MAX_PIXELS = 2 << 20
MAX_SIDE = 4096  # decoding takes 3 * height + width steps: a 2 MP image at most 16,384 (a few seconds)


@dataclass
class CodedTensor:
    """One network tensor as coded: integers at step 2**-step, modelled by Laplace table `scale` (mean 0)."""

    values: torch.Tensor  # int64
    step: int
    scale: int

    @classmethod
    def of(cls, x: torch.Tensor, step: int) -> CodedTensor:
        v = torch.round(x.detach().double().cpu() * 2.0**step).to(torch.int64)
        return cls(v, step, scale_index(v))

    def float(self) -> torch.Tensor:
        return self.values.double().mul(2.0**-self.step).float()

    def table_ids(self) -> np.ndarray:
        return zero_mean_ids(self.scale, self.values.numel())

    def bits(self) -> float:
        return table_bits(self.values.reshape(-1), torch.zeros(1, dtype=torch.int64), self.table_ids())


def zero_mean_ids(scale: int, n: int) -> np.ndarray:
    """The table ids of n zero-mean values with Laplace scale index `scale`."""
    zero = torch.zeros(1, dtype=torch.int64)
    fraction = int(laplace.params(zero, zero + laplace.LN_SCALE_MIN_Q8)[1][0])  # scale index 0: the id is the fraction
    return np.full(n, scale * laplace.FRACTIONS + fraction, dtype=np.int64)


def scale_index(v: torch.Tensor) -> int:
    """The Laplace table whose scale fits v best (the mean absolute value is the scale's estimate)."""
    b = max(float(v.abs().double().mean()) if v.numel() else 0.0, 1e-3)
    ln_q8 = torch.tensor([round(math.log(b) * 256)], dtype=torch.int64)
    return int(laplace.params(torch.zeros(1, dtype=torch.int64), ln_q8)[1][0]) // laplace.FRACTIONS


def table_bits(symbols: torch.Tensor, centre: torch.Tensor, ids: np.ndarray) -> float:
    """What coding these symbols with these tables costs, in bits (escapes at their varint's size)."""
    t = laplace.tables()
    d = (symbols - centre).numpy().astype(np.int64)
    local = d - t.lows[ids]
    escape = t.lengths[ids] - 1
    out = (local < 0) | (local >= escape)
    counts = t.counts[t.offsets[ids] + np.where(out, escape, local)].astype(np.float64)
    return float(np.sum(COUNT_BITS - np.log2(counts))) + 8 * len(zigzag_varints(d[out].tolist()))


def arm_tensors(arm: ARM, steps: list[int]) -> list[CodedTensor]:
    """The float context model's weights and biases (first, hidden..., last), layer n's at step 2**-steps[n]."""
    return [
        CodedTensor.of(p, k) for layer, k in zip(arm.layers(), steps, strict=True) for p in (layer.weight, layer.bias)
    ]


def int_arm(tensors: list[CodedTensor]) -> IntARM:
    """The exact context model of coded tensors; a bias's step is its weights' (shifted to the accumulator's)."""
    layers = []
    pairs = list(zip(tensors[::2], tensors[1::2], strict=True))
    for k, (w, b) in enumerate(pairs):
        in_bits = 0 if k == 0 else ACT_FRAC_BITS
        layers.append(IntLinear(w.values, b.values << in_bits, w.step, relu=k < len(pairs) - 1))
    return IntARM(layers[0], layers[1:-1], layers[-1])


def latent_symbols(
    grids: list[torch.Tensor], arm: IntARM, schedule: Schedule | None = None
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Every latent in decoding order, its table's centre and its table id."""
    values, mean, log_scale = encode_order(grids, arm, schedule=schedule)
    centre, ids = laplace.params(mean, log_scale)
    return values, centre, ids.numpy()


@dataclass
class FittedImage(PreparedSource):
    """One image fitted at one quality: everything its file holds, and the pixels it decodes to."""

    img: Prepared
    q100: int
    arch: Architecture
    arm: list[CodedTensor]
    decoder: list[CodedTensor]
    grids: list[torch.Tensor]  # int64 latents, finest first
    pixels_: np.ndarray  # what the decoder shows (computed where the encoder ran)
    device: str  # where the fit ran

    def code(self, q100: int | None = None) -> bytes:
        """The .nic file (a fitted image has one quality: q100, if given, must be it)."""
        self._same(q100)
        tensors = self.arm + self.decoder
        a = self.arch
        head = _HEAD.pack(MODE_VERSION, a.levels, a.arm_width, a.arm_hidden, a.syn_width) + bytes([a.upsampling])
        head += bytes(v for t in tensors for v in (t.step, t.scale))
        sections: list = [(t.values.reshape(-1).numpy(), t.table_ids(), laplace.tables()) for t in tensors]
        sched = Schedule.of([tuple(g.shape) for g in self.grids])
        values, centre, ids = latent_symbols(self.grids, int_arm(self.arm), sched)
        sections.append(Ordered((values - centre).numpy(), ids, laplace.tables(), sched.bounds))
        ans, overflow = encode_sections(sections)
        height, width = self.img.rgb.shape[:2]
        chunks = {CHUNK: head, **self.img.chunks()}
        return NicFile(width, height, self.q100, MODEL_ID, ans, overflow, self.img.layout, chunks).to_bytes()

    def reconstruct(self, q100: int | None = None) -> np.ndarray:
        self._same(q100)
        return self.pixels_

    def _same(self, q100: int | None) -> None:
        if q100 is not None and q100 != self.q100:
            raise ValueError(f"this image was fitted at quality x 100 = {self.q100}, not {q100}")


def _to_pixels(out: torch.Tensor) -> np.ndarray:
    out = torch.nan_to_num(out[0], nan=0.0)  # a hostile file's weights may overflow float32
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def pixels_of(
    arch: Architecture, tensors: list[CodedTensor], grids: list[torch.Tensor], device: torch.device
) -> np.ndarray:
    """What the decoder shows: its float networks from the coded tensors, run on the latents."""
    decoder = Decoder(arch)
    _load(decoder, tensors)
    decoder.to(device)
    with torch.no_grad():
        return _to_pixels(decoder([g.to(device).float()[None, None] for g in grids]))


def _load(decoder: Decoder, tensors: list[CodedTensor]) -> None:
    with torch.no_grad():
        for p, t in zip(decoder.parameters(), tensors, strict=True):
            p.copy_(t.float().view_as(p))


@torch.no_grad()
def _quantise_decoder(model: Fitted, q: list[torch.Tensor], x: torch.Tensor, lam: float) -> list[CodedTensor]:
    """Each decoder tensor at the step with the least MSE + lam * bits per pixel (one tensor at a time, in order)."""
    pixels = x.shape[2] * x.shape[3]
    chosen = []
    for p in model.decoder.parameters():
        original = p.detach().clone()
        best = None
        for step in DECODER_STEPS:
            t = CodedTensor.of(original, step)
            if t.values.numel() and int(t.values.abs().max()) > MAX_SYMBOL:
                continue  # beyond what the coder takes
            p.copy_(t.float().view_as(p))
            cost = float((model.decoder(q).clamp(0, 1) - x).square().mean()) + lam * t.bits() / pixels
            if best is None or cost < best[0]:
                best = (cost, t)
        p.copy_(best[1].float().view_as(p))
        chosen.append(best[1])
    return chosen


def _quantise_arm(model: Fitted, grids: list[torch.Tensor]) -> list[CodedTensor]:
    """The context model's steps, a power of two per layer, that code latents and its own parameters in the fewest
    bits: the best step for all layers, then each layer's in turn, coarser while it pays, then finer. On 256x256
    crops of 2 training photos (600 iterations, lambda 0.01) the layers' own steps saved 720-777 bits (3.6 and
    9.5 % of the files): the hidden layer takes 2**-2 or 2**-3, the others 2**-4 to 2**-6."""
    sched = Schedule.of([tuple(g.shape) for g in grids])  # one for all the candidates
    layers = len(model.arm.layers())

    def cost(steps: tuple[int, ...]) -> tuple[float, list[CodedTensor]] | None:
        tensors = arm_tensors(model.arm, list(steps))
        try:
            arm = int_arm(tensors)
            arm.check()
        except ValueError:
            return None
        values, centre, ids = latent_symbols(grids, arm, sched)
        return table_bits(values, centre, ids) + sum(t.bits() for t in tensors), tensors

    tried = {(k,) * layers: cost((k,) * layers) for k in ARM_STEPS}
    ok = [(c[0], steps) for steps, c in tried.items() if c is not None]
    if not ok:
        raise NicError("the fitted context model does not fit the exact integer format (try a lower effort)")
    best = min(ok)[1]
    for n in range(layers):
        for direction in (-1, 1):  # coarser while it pays, then finer
            while 0 <= best[n] + direction <= ARM_STEPS[-1]:
                steps = best[:n] + (best[n] + direction,) + best[n + 1 :]
                if steps not in tried:
                    tried[steps] = cost(steps)
                if tried[steps] is None or tried[steps][0] >= tried[best][0]:
                    break
                best = steps
    return tried[best][1]


def fits(height: int, width: int) -> bool:
    """Whether the fitted mode takes an image of this size (its memory and its decoding steps are bounded)."""
    return height * width <= MAX_PIXELS and max(height, width) <= MAX_SIDE


def check_size(height: int, width: int) -> None:
    if not fits(height, width):
        raise NicError(
            f"efforts 4 and up fit images of at most {MAX_PIXELS:,} pixels and {MAX_SIDE} a side, in bounded "
            f"memory and decoding time ({width}x{height} given): use effort 3 or lower for larger images"
        )


def encode(
    img: Prepared,
    q100: int,
    lam: float,
    iterations: int,
    device: torch.device,
    arch: Architecture = DEFAULT,
    progress: Progress | None = None,
    resume: Path | None = None,
    seed: int = 0,
    warmup: tuple[int, int] = (1, 0),
) -> FittedImage:
    """Fit the image for MSE (0..1) + lam * bits per pixel, quantise, and return what its file holds.

    resume: where the fit keeps its state, to go on from it after an interruption; seed, warmup: `fit.fit`'s."""
    check_size(*img.rgb.shape[:2])
    x = torch.from_numpy(np.array(img.rgb, dtype=np.float32) / 255).to(device).permute(2, 0, 1)[None]
    model = fit(x, lam, iterations, arch, progress, seed, resume, warmup)
    grids = model.rounded()
    arm = _quantise_arm(model, grids)
    report(progress, "quantisation", 1, 2)
    q = [g.to(device).float()[None, None] for g in grids]
    decoder = _quantise_decoder(model, q, x, lam)
    report(progress, "quantisation", 2, 2)
    # The pixels as a CPU decoder shows them (a GPU's may differ by rounding: TF32 convolutions, other kernels).
    pixels = pixels_of(arch, decoder, grids, torch.device("cpu"))
    return FittedImage(img, q100, arch, arm, decoder, grids, pixels, str(device))


def _read_header(f: NicFile) -> tuple[Architecture, list[tuple[int, int]]]:
    head = f.chunks.get(CHUNK)
    if head is None or len(head) < _HEAD.size:
        raise NicError("corrupted .nic file (fitted header missing)")
    version, levels, arm_width, arm_hidden, syn_width = _HEAD.unpack_from(head)
    if version not in (1, 2):
        raise NicError(f"unsupported fitted mode version {version} (a newer nic may read it)")
    fixed = _HEAD.size + (version == 2)
    if len(head) < fixed:
        raise NicError("corrupted .nic file (fitted header missing)")
    upsampling = head[_HEAD.size] if version == 2 else UPSAMPLING_4X4
    arch = Architecture(levels, arm_width, arm_hidden, syn_width, upsampling)
    try:
        arch.check()
    except ValueError as e:
        raise NicError(f"corrupted .nic file ({e})") from None
    n = len(_shapes(arch))
    rest = head[fixed:]
    if len(rest) != 2 * n:
        raise NicError("corrupted .nic file (fitted header of the wrong length)")
    pairs = [(rest[2 * i], rest[2 * i + 1]) for i in range(n)]
    if any(step > MAX_STEP or scale >= laplace.SCALES for step, scale in pairs):
        raise NicError("corrupted .nic file (bad fitted tensor header)")
    return arch, pairs


def _arm_count(arch: Architecture) -> int:
    """How many of the coded tensors are the context model's (a weight and a bias per layer); the decoder's follow."""
    return 2 * (arch.arm_hidden + 2)


def _shapes(arch: Architecture) -> list[tuple[int, ...]]:
    """The coded tensors' shapes, in file order."""
    w, h = arch.arm_width, arch.arm_hidden
    arm = [(w, FEATURES), (w,)] + [(w, w), (w,)] * h + [(2, w), (2,)]
    return arm + [tuple(p.shape) for p in Decoder(arch).parameters()]


def decode_latents(
    f: NicFile, exact_path: str = "float64"
) -> tuple[Architecture, list[CodedTensor], list[torch.Tensor]]:
    """The mirror of `FittedImage.code`: the architecture, the coded tensors and the latent grids."""
    if exact_path not in ("float64", "int64"):
        raise NicError(f"unknown exact_path {exact_path!r} (float64 or int64)")
    arch, pairs = _read_header(f)
    if not fits(f.height, f.width):
        raise NicError(f"corrupted .nic file (a fitted image of {f.width}x{f.height} exceeds the mode's limits)")
    tables = laplace.tables()
    dec = SectionDecoder(f.ans, f.overflow)
    tensors = []
    for shape, (step, scale) in zip(_shapes(arch), pairs, strict=True):
        values = dec.decode(zero_mean_ids(scale, math.prod(shape)), tables)
        tensors.append(CodedTensor(torch.from_numpy(values).view(shape), step, scale))
    arm = int_arm(tensors[: _arm_count(arch)])
    try:
        arm.check()
    except ValueError as e:
        raise NicError(f"corrupted .nic file ({e})") from None

    def next_symbols(mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        centre, ids = laplace.params(mean.numpy(), log_scale.numpy())
        return torch.from_numpy(dec.decode_ordered(ids, tables) + centre)

    grids = decode_waves(arm, arch.shapes(f.height, f.width), next_symbols, reference=exact_path == "int64")
    dec.finish()
    return arch, tensors, grids


def decode_pixels(f: NicFile, device: torch.device, exact_path: str = "float64") -> np.ndarray:
    """The RGB pixels of a parsed fitted file."""
    arch, tensors, grids = decode_latents(f, exact_path)
    return pixels_of(arch, tensors[_arm_count(arch) :], grids, device)
