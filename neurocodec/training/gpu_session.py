"""A lent GPU's minutes in one command: resume, train, checkpoint often, be done before the lease is.

    python -m neurocodec.training.gpu_session --minutes 9 --out $OUT/ckpt --data .gpu/train

It is the training loop (`loop`) with the settings measured fastest on a GPU
(crops, flips and quality levels drawn on the device from photos decoded once
into its memory, bfloat16 autocast, channels_last, fused Adam,
torch.compile), a checkpoint every 2 minutes written into --out in parts of
at most 15 MiB (a device machine returns files up to 16 MiB; `read_checkpoint`
and `python -m neurocodec.training.export --ckpt OUT/ckpt.pt` read them, or
`cat` joins them in the order ckpt.pt.parts lists), and a deadline: --minutes
counts from the start of the process, so interpreter start, decoding and
compilation are inside it, and the last checkpoint is written before it
runs out. It resumes the checkpoint in --out if there is one, else the
shipped weights. The training photos and the constriction wheel do not travel
with the checkout: `benchmarks/gpu_payload.py` puts a subset that fits in
.gpu/train and the wheel in .whl/, to be carried (README, Training). Every other option goes to the loop as it is (see
`python -m neurocodec.training --help`), after these defaults, so it wins:
on the CPU, `--device cpu --steps 3 --images 4 --crop 64 --batch 2` is a
smoke test of the same code.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from ..devices import pick_device
from ..errors import NicError
from ..options import device_option
from . import loop

PART_MIB = 15  # under the device tool's 16 MiB a file


def process_start() -> float:
    """Unix time this process started (Linux), else now: the interpreter's and torch's start count too."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return boot + int(after_name[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--minutes",
    type=click.FloatRange(0, min_open=True),
    required=True,
    help="Wall-clock minutes from the process's start to its last checkpoint written.",
)
@click.option("--out", required=True, help="Folder for the checkpoint (ckpt.pt in parts); resumed if it holds one.")
@device_option
@click.pass_context
def main(ctx: click.Context, minutes: float, out: str, device: str) -> None:
    """Train on a lent GPU for --minutes in all, then stop with a checkpoint in --out."""
    deadline = process_start() + minutes * 60  # under torchrun, the loop takes rank 0's on every rank
    try:
        on_gpu = pick_device(device).type == "cuda"
    except NicError as e:
        raise click.UsageError(str(e)) from None
    args = [
        *("--ckpt", str(Path(out) / "ckpt.pt"), "--split-mib", str(PART_MIB)),
        *("--device", device, "--minutes", str(minutes), "--deadline", f"{deadline:.3f}"),
        *("--candidate", "", "--valid", "", "--no-export", "--data-on-device"),
        *("--checkpoint-every", "2", "--log-every", "30", "--threads", str(min(16, os.cpu_count() or 1))),
        *("--batch", "16", "--crop", "256", "--lr", "1e-4", "--lr-end", "1e-5"),
        *(("--bf16", "--compile") if on_gpu else ()),
        *ctx.args,
    ]
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone says it
        click.echo("gpu_session: python -m neurocodec.training " + " ".join(a or "''" for a in args), err=True)
    loop.main.main(args=args, prog_name="python -m neurocodec.training.gpu_session", standalone_mode=True)


if __name__ == "__main__":
    main(prog_name="python -m neurocodec.training.gpu_session")
