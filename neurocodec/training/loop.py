"""Plain training loop: random crops, R + lambda*D over the quality ladder, Adam.

    python -m neurocodec.training --data ../shared/data/train --valid ../shared/data/valid

It resumes from the local checkpoint (with optimizer state) if there is one,
otherwise from the shipped weights or, when there is one and it has trained
longer, a committed candidate (weights/candidate.pt), so training never starts over.
`--export` writes the shipped weights (with their integer tables) at every
checkpoint. Under torchrun it trains on every GPU of every node with
DistributedDataParallel (`distributed`):

    torchrun --nproc_per_node 8 -m neurocodec.training --device cuda ...
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import click
import numpy as np
import torch

from .. import distortion
from ..autoencoder.model import STRIDE, NicModel
from ..autoencoder.modelfiles import DEFAULT_WEIGHTS, tuned_weights_path
from ..autoencoder.weights import export_weights
from ..devices import pick_device
from ..errors import NicError
from ..options import device_option
from ..settings import DEFAULT_TUNE, TUNES
from . import distributed
from .checkpoints import DEFAULT_CANDIDATE, load_start, save_checkpoint
from .data import DeviceImages, ImageCache, list_images, load_rgb

# Ranks of a torchrun run agree on the clock and on stopping every this many steps (one host sync each).
SYNC_EVERY = 10
# Seconds kept free before --deadline besides the longest checkpoint write (twice) and the steps
# that may run before the next check (`past_deadline`).
DEADLINE_RESERVE_S = 10.0


def train_step(
    step_model,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    level: torch.Tensor,
    lambdas: torch.Tensor,
    bf16: bool,
    kind: str = "mse",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Adam step on R + lambda*D; returns (loss, bpp per image, distortion per image).

    bf16 runs the convolutions in bfloat16 (autocast; on CPUs with AMX several
    times faster); the rates, the distortion (`kind`: MSE or 1 - MS-SSIM) and
    the weights stay float32.
    """
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        r = step_model(x, level)
    bpp = (r["y_bits"].float() + r["z_bits"].float()) / (x.shape[2] * x.shape[3])
    mse = distortion.per_image(kind, r["x_hat"].float(), x)
    loss = (bpp + lambdas[level] * mse).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], 1.0)
    opt.step()
    return loss.detach(), bpp.detach(), mse.detach()


def past_deadline(now: float, deadline: float, ckpt_seconds: float, typical_step: float, sync_every: int) -> bool:
    """Whether to stop now to have the last checkpoint written by `deadline`.

    Ranks check every `sync_every` steps, so a run that goes on may take that
    many steps before it looks again, and one more to stop: all of them must
    fit before the checkpoint (twice its longest write, for a slower disk).
    """
    return now + DEADLINE_RESERVE_S + 2 * ckpt_seconds + (sync_every + 1) * typical_step > deadline


def cosine_span(
    ranks: distributed.Ranks, minutes: float, deadline: float | None, ckpt_seconds: float
) -> tuple[float | None, float]:
    """The deadline and the training seconds the learning rate's cosine spans, rank 0's on every rank.

    Each rank reads its own clock (and, in `gpu_session`, its own process
    start): computed on each, the spans would differ a little, and so would
    the learning rates and the weights of the ranks.
    """
    schedule = minutes * 60
    if deadline is not None:
        schedule = min(schedule, deadline - time.time() - DEADLINE_RESERVE_S - 2 * ckpt_seconds)
    return distributed.from_main(ranks, (deadline, schedule))


def rank_seeds(seed: int, rank: int) -> tuple[int, int, int]:
    """Seeds of this rank's crops (numpy), of torch's global generators and of the device generator.

    Each rank draws its own stream; torch's global CUDA generator (the
    training noise) and the device generator (crops, levels on the device)
    are both Philox on a GPU, and the same seed would give them the same draws.
    """
    return seed + rank, 2 * (seed + rank), 2 * (seed + rank) + 1


def state_like_params(opt: torch.optim.Optimizer) -> None:
    """Give each tensor of Adam's state the memory layout of its parameter (after `model.to(memory_format=)`).

    Moments loaded from a checkpoint, or grown by `growth` (contiguous), keep
    their layout when the parameters become channels_last (or contiguous,
    for a --no-channels-last run): CUDA's fused Adam then fails, and the
    CPU's would pair the wrong entries of moment and parameter.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for k, v in state.items():
                if k != "step" and isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


class RunClock:
    """Seconds of training so far, not counting pauses.

    The learning-rate schedule and --minutes follow it, so a run paused with
    SIGSTOP (for a benchmark) or starved by another job resumes its schedule
    where it was instead of skipping ahead. A step longer than 5x the recent
    typical step counts as a typical step.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.steps = 0
        self.typical = 0.0

    def tick(self, dt: float) -> None:
        self.steps += 1
        if self.steps <= 2:  # compilation and warm-up count in full; the second step sets the pace
            self.seconds += dt
            self.typical = dt
            return
        step = min(dt, 5 * self.typical)
        self.typical = 0.95 * self.typical + 0.05 * step
        self.seconds += step


@torch.no_grad()
def validate(model: NicModel, images: list[np.ndarray]) -> list[tuple[float, float]]:
    """(estimated bpp, PSNR) per quality level, on centre crops of the validation photos."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for level in range(model.cfg.levels):
        bpps, psnrs = [], []
        for a in images:
            x = torch.from_numpy(a).permute(2, 0, 1)[None].float().to(device)
            r = model(x, torch.tensor([level], device=device))
            mse = (r["x_hat"].clamp(0, 255).round() - x).square().mean().item()
            bpps.append(((r["y_bits"] + r["z_bits"]) / (x.shape[2] * x.shape[3])).item())
            psnrs.append(10 * math.log10(255**2 / max(mse, 1e-10)))
        out.append((float(np.mean(bpps)), float(np.mean(psnrs))))
    model.train()
    return out


def centre_crop(a: np.ndarray, h: int = 512, w: int = 768) -> np.ndarray:
    h = min(h, a.shape[0]) // STRIDE * STRIDE
    w = min(w, a.shape[1]) // STRIDE * STRIDE
    y, x = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    return np.ascontiguousarray(a[y : y + h, x : x + w])


def _fresh_sums(device: torch.device) -> dict:
    """Running sums of loss, bpp and MSE between two log lines."""
    return {"sums": torch.zeros(3, device=device), "n": 0}


def _growth_option(flag: str, text: str):
    return click.option(flag, default=None, type=int, help=text + " The model keeps what it learned.")


@click.command()
@click.option("--data", default="../shared/data/train", show_default=True, help="Folder of training photos.")
@click.option(
    "--valid", default="../shared/data/valid", show_default=True, help="Folder of validation photos (never trained on)."
)
@click.option(
    "--tune",
    type=click.Choice(TUNES),
    default=DEFAULT_TUNE,
    show_default=True,
    help="What the weights are for: PSNR (MSE loss) or MS-SSIM (1 - MS-SSIM loss; its first run starts from the "
    "PSNR weights).",
)
@click.option(
    "--weights",
    "shipped",
    default=None,
    help="Shipped weights: start point and export target [default: weights/nic.pt, weights/nic-ssim.pt for --tune "
    "ssim].",
)
@click.option(
    "--ckpt",
    default=None,
    help="Local checkpoint with optimizer state [default: .cache/train/ckpt.pt, .cache/train-ssim/ckpt.pt for "
    "--tune ssim].",
)
@click.option(
    "--candidate",
    default=DEFAULT_CANDIDATE,
    show_default=True,
    help="Committed model not shipped yet; used when it has seen more pixels than the shipped weights ('': never).",
)
@click.option(
    "--minutes", default=60.0, show_default=True, help="Stop after this much training time (pauses do not count)."
)
@click.option("--batch", default=8, show_default=True)
@click.option(
    "--crop",
    default=128,
    show_default=True,
    help="Crop size in pixels (128 or more: smaller crops starve the hyperprior).",
)
@click.option("--lr", default=7e-4, show_default=True, help="Adam learning rate at the start of this run.")
@click.option(
    "--lr-end", default=None, type=float, help="Learning rate at the end of the run (cosine decay) [default: --lr]."
)
@click.option("--checkpoint-every", default=10.0, show_default=True, help="Minutes between checkpoints.")
@click.option("--log-every", default=60.0, show_default=True, help="Seconds between progress lines.")
@click.option("--valid-every", default=30.0, show_default=True, help="Minutes between validations.")
@click.option(
    "--valid-images", default=6, show_default=True, help="How many validation photos to evaluate (centre crops)."
)
@_growth_option("--latent-channels", "Grow the model's latent channels (y) to this many.")
@_growth_option("--deep-channels", "Widen the 1/8-resolution layers of g_a and g_s to this many channels.")
@_growth_option("--channels", "Widen the 1/2- and 1/4-resolution layers of g_a and g_s to this many channels.")
@_growth_option("--context-channels", "Give a model without one a checkerboard context model of this many channels.")
@_growth_option(
    "--encoder-blocks", "Give the analysis this many residual blocks on y (encoder only; decoding costs no more)."
)
@click.option(
    "--encoder-only",
    is_flag=True,
    help="Train only what the encoder runs (analysis, hyper-analysis); the decoder's networks stay fixed.",
)
@device_option
@click.option("--threads", default=2, show_default=True)
@click.option("--export/--no-export", default=False, help="Write the shipped weights at each checkpoint.")
@click.option("--seed", default=None, type=int)
@click.option(
    "--channels-last/--no-channels-last", default=True, show_default=True, help="NHWC layout (faster on CPU)."
)
@click.option(
    "--compile/--no-compile", "use_compile", default=False, help="torch.compile the model (needs a C++ compiler)."
)
@click.option(
    "--bf16/--no-bf16", default=False, help="bfloat16 convolutions (autocast); fast on CPUs with AMX and on GPUs."
)
@click.option("--steps", default=None, type=click.IntRange(0), help="Stop after this many steps of this run.")
@click.option(
    "--deadline",
    default=None,
    type=float,
    help="Unix time by which the last checkpoint is written: training stops early enough for it. The cosine is "
    "planned to end there, but it follows training time, which leaves out checkpoint writes, validation and "
    "pauses (a step over 5x the typical one counts as one), so the learning rate may stop short of --lr-end.",
)
@click.option("--images", default=None, type=click.IntRange(1), help="Train on the first N photos of --data only.")
@click.option(
    "--data-on-device/--no-data-on-device",
    default=False,
    help="Keep the decoded photos on the device and cut crops there (for GPUs: no pixels copied per step).",
)
@click.option(
    "--ema",
    "ema_decay",
    default=None,
    type=click.FloatRange(0, 1, max_open=True),
    help="Also keep an exponential moving average of the weights (e.g. 0.999), written beside --ckpt as *-ema.pt "
    "(unmeasured: whether it beats the last weights is not known).",
)
@click.option(
    "--split-mib",
    default=None,
    type=click.FloatRange(1),
    help="Write checkpoints as parts of at most this many MiB and a list of them (--ckpt.parts).",
)
def main(
    data,
    valid,
    tune,
    shipped,
    ckpt,
    candidate,
    minutes,
    batch,
    crop,
    lr,
    lr_end,
    checkpoint_every,
    log_every,
    valid_every,
    valid_images,
    latent_channels,
    deep_channels,
    channels,
    context_channels,
    encoder_blocks,
    encoder_only,
    device,
    threads,
    export,
    seed,
    channels_last,
    use_compile,
    bf16,
    steps,
    deadline,
    images,
    data_on_device,
    ema_decay,
    split_mib,
) -> None:
    """Train (or keep training) the neurocodec model on a folder of photos.

    Stops after --minutes (or --steps, or before --deadline), or on Ctrl-C /
    SIGTERM, always with a checkpoint. Under torchrun, every rank trains on
    its own share of the photos and rank 0 writes the files.
    """
    torch.set_num_threads(threads)
    try:
        dev = pick_device(device)
    except NicError as e:
        raise click.UsageError(str(e)) from None
    ranks = distributed.start(dev)
    dev = ranks.device
    kind = TUNES[tune]
    ckpt = Path(ckpt or (".cache/train/ckpt.pt" if tune == DEFAULT_TUNE else f".cache/train-{tune}/ckpt.pt"))
    shipped = Path(shipped or tuned_weights_path(Path("weights/nic.pt"), tune))
    if tune != DEFAULT_TUNE and candidate == DEFAULT_CANDIDATE:
        candidate = ""  # the candidate is a PSNR model
    start = None
    if ranks.main:  # the others get rank 0's start point: a node of its own may not have the checkpoint
        try:
            start = load_start(
                ckpt,
                shipped,
                latent_channels,
                deep_channels,
                Path(candidate) if candidate else None,
                context_channels,
                channels,
                encoder_blocks,
                encoder_only,
                kind,
                DEFAULT_WEIGHTS if kind != "mse" else None,  # a first run of another tuning starts from PSNR's
            )
        except NicError as e:  # under torchrun, the others are stopped by it when this rank exits
            raise click.ClickException(f"{e}; nothing was trained") from None
    model, opt_state, progress = distributed.from_main(ranks, start)
    model = model.to(dev)  # before the optimizer, so that its state lives beside the parameters
    opt = torch.optim.Adam(model.trainable(encoder_only), lr=lr, fused=dev.type == "cuda")
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    for g in opt.param_groups:
        g["lr"] = lr
    try:
        cache = ImageCache(data, limit=images) if ranks.local == 0 else None  # decoded once per machine
        distributed.barrier(ranks)
        if cache is None:
            cache = ImageCache(data, limit=images)
        shard = cache.subset(distributed.shard(len(cache), ranks)) if ranks.world > 1 else cache
    except (OSError, ValueError) as e:  # no such folder, no photos, fewer photos than ranks
        raise click.ClickException(f"--data {data}: {e}") from None
    val = [centre_crop(load_rgb(p)) for p in list_images(valid)[:valid_images]] if valid and ranks.main else []
    seeds = None if seed is None else rank_seeds(seed, ranks.rank)  # each rank its own crops and noise
    rng = np.random.default_rng(None if seeds is None else seeds[0])
    if seeds is not None:
        torch.manual_seed(seeds[1])
    on_device, gen = None, torch.Generator(dev)
    if data_on_device:
        on_device = DeviceImages(shard, dev)
        if seeds is None:
            gen.seed()
        else:
            gen.manual_seed(seeds[2])
    lambdas = torch.tensor(model.cfg.lambdas, device=dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    state_like_params(opt)
    step_model = distributed.wrap(model, ranks)
    step_model = torch.compile(step_model) if use_compile else step_model
    ema = None
    if ema_decay is not None and ranks.main:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay)
        )
    lr_end = lr if lr_end is None else lr_end
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    say = print if ranks.main else lambda *_, **__: None
    say(
        f"start: step {progress['step']} pixels {progress['pixels']:.3e} images {len(cache)} "
        f"lr {lr} batch {batch}x{crop}^2 on {dev}" + (f" x {ranks.world} ranks" if ranks.world > 1 else ""),
        flush=True,
    )

    def crops() -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next batch: crops (in `fmt`) and a quality level for each."""
        if on_device is not None:
            x = on_device.crops(batch, crop, gen)
            level = torch.randint(0, model.cfg.levels, (batch,), device=dev, generator=gen)
        else:
            x = shard.crops(batch, crop, rng).to(dev, non_blocking=True)
            level = torch.from_numpy(rng.integers(0, model.cfg.levels, size=batch)).to(dev)
        return x.contiguous(memory_format=fmt), level

    ckpt_seconds = 5.0  # the longest checkpoint write so far (a guess until the first)

    def checkpoint() -> None:
        nonlocal ckpt_seconds
        if not ranks.main:
            return
        t = time.time()
        state = {
            "config": model.cfg.to_dict(),
            "state": model.state_dict(),
            "optimizer": opt.state_dict(),
            "encoder_only": encoder_only,
            "progress": dict(progress),
        }
        save_checkpoint(state, ckpt, split_mib)
        if ema is not None:
            averaged = {"config": model.cfg.to_dict(), "state": ema.module.state_dict(), "progress": dict(progress)}
            save_checkpoint(averaged, ckpt.with_name(f"{ckpt.stem}-ema{ckpt.suffix}"), split_mib)
        if export:
            export_weights(model, shipped, progress, cache.crops(16, 256, np.random.default_rng(0)))
        print(f"checkpoint: step {progress['step']}", flush=True)
        ckpt_seconds = max(ckpt_seconds, time.time() - t)

    deadline, schedule = cosine_span(ranks, minutes, deadline, ckpt_seconds)
    last_ckpt = last_val = last_log = prev = time.time()
    clock = RunClock()
    acc = _fresh_sums(dev)
    sync_every = 1 if ranks.world == 1 else SYNC_EVERY
    done_steps = 0
    while steps is None or done_steps < steps:
        if done_steps % sync_every == 0:
            late = deadline is not None and past_deadline(
                time.time(), deadline, ckpt_seconds, clock.typical, sync_every
            )
            seconds, stopping = distributed.agree(ranks, clock.seconds, bool(stop) or clock.seconds >= schedule or late)
            if stopping:
                break
            frac = min(1.0, seconds / schedule)
            for g in opt.param_groups:
                g["lr"] = lr_end + (lr - lr_end) * 0.5 * (1 + math.cos(math.pi * frac))
        x, level = crops()
        loss, bpp, mse = train_step(step_model, opt, x, level, lambdas, bf16, kind)
        if ema is not None:
            ema.update_parameters(model)
        done_steps += 1
        progress["step"] += 1
        progress["pixels"] += batch * crop * crop * ranks.world
        # Sums stay on the device: reading them every step would stall a GPU on the next batch's crops.
        acc["sums"] += torch.stack([loss, bpp.mean(), mse.mean()])
        acc["n"] += 1
        now = time.time()
        clock.tick(now - prev)
        prev = now
        if ranks.main and now - last_log > log_every:
            n = acc["n"] * ranks.world  # batches of all ranks; loss, bpp and mse are rank 0's
            loss_m, bpp_m, mse_m = (acc["sums"] / acc["n"]).tolist()
            print(
                f"step {progress['step']} loss {loss_m:.4f} bpp {bpp_m:.3f} "
                f"{'mse' if kind == 'mse' else '1-msssim'} {mse_m:.{2 if kind == 'mse' else 5}f} lr {opt.param_groups[0]['lr']:.2e} img/s {n * batch / (now - last_log):.1f} "
                f"Mpix/s {n * batch * crop * crop / (now - last_log) / 1e6:.3f} pixels {progress['pixels']:.3e}",
                flush=True,
            )
            acc = _fresh_sums(dev)
            last_log = now
        if now - last_ckpt > checkpoint_every * 60:
            checkpoint()
            last_ckpt = now
        if val and now - last_val > valid_every * 60:
            rd = validate(model, val)
            print("valid: " + " | ".join(f"q{i} {b:.3f}bpp {p:.2f}dB" for i, (b, p) in enumerate(rd)), flush=True)
            last_val = time.time()
    checkpoint()
    distributed.stop(ranks)


if __name__ == "__main__":
    main()
