"""Many files at once: which output each input gets, and running them (in parallel).

`nic encode a.png photos/ -o out/` mirrors photos/ under out/. One job per
file; a failing file is reported and the rest go on. Jobs are top-level
functions so that a process pool can run them; each worker gets its share of
the CPU threads.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..errors import NicError
from .common import STDIO


@dataclass
class Job:
    src: Path
    dst: Path


@dataclass
class Done:
    """What one converted file read and wrote, and the lines that say so (normal, and -v)."""

    bytes_in: int
    bytes_out: int
    line: str
    detail: str = ""


@dataclass
class Result:
    job: Job
    bytes_in: int = 0
    bytes_out: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    line: str = ""
    detail: str = ""


def image_suffixes() -> set[str]:
    """File extensions Pillow can open (what `nic encode DIR` picks up)."""
    from PIL import Image

    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN and ext != ".nic"}


def _walk(folder: Path, suffixes: set[str]) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in suffixes and not name.startswith("."):
                yield Path(root) / name


def plan(inputs: Iterable[Path], output: str | Path | None, suffix: str, suffixes: set[str]) -> list[Job]:
    """Input files and folders -> jobs. Folders are searched recursively and mirrored
    under `output`; with several inputs `output` is a folder; without it, outputs go
    beside their inputs. An output written with a trailing slash is a folder. Refused
    before any work: several inputs with an output that names a file, and inputs whose
    outputs would be the same file."""
    as_folder = isinstance(output, str) and output.endswith(("/", os.sep))
    output = Path(output) if output is not None else None
    inputs = list(inputs)
    many = len(inputs) > 1 or any(p.is_dir() for p in inputs)
    if many and output == STDIO:
        raise NicError("several inputs cannot all go to stdout; give -o a folder")
    if many and output is not None and output.exists() and not output.is_dir():
        raise NicError(f"{output} is a file; with several inputs -o must be a folder")
    if many and output is not None and not output.exists() and output.suffix and not as_folder:
        raise NicError(
            f"with several inputs -o must be a folder, and {output} looks like a file name "
            f"(write {output}{os.sep} for a folder of that name)"
        )
    jobs = []
    for src in inputs:
        if src == STDIO:
            if many:
                raise NicError("'-' (stdin) cannot be mixed with other inputs")
            jobs.append(Job(src, output or STDIO))
        elif src.is_dir():
            found = list(_walk(src, suffixes))
            if not found:
                raise NicError(f"no {'/'.join(sorted(suffixes)) if len(suffixes) < 4 else 'image'} files in {src}")
            for f in found:
                rel = f.relative_to(src).with_suffix(suffix)
                jobs.append(Job(f, (output / rel) if output else f.with_suffix(suffix)))
        elif many:
            jobs.append(Job(src, (output / src.with_suffix(suffix).name) if output else src.with_suffix(suffix)))
        else:
            dst = output if output is not None else src.with_suffix(suffix)
            if dst != STDIO and (dst.is_dir() or as_folder):
                dst = dst / src.with_suffix(suffix).name
            jobs.append(Job(src, dst))
    _refuse_collisions(jobs)
    return jobs


def _refuse_collisions(jobs: list[Job]) -> None:
    """Two inputs that would write one output (photo.png and photo.jpg -> photo.nic) lose one of them: refuse."""
    by_output: dict[str, list[Job]] = {}
    for job in jobs:
        if job.dst != STDIO:
            by_output.setdefault(os.path.normcase(os.path.abspath(job.dst)), []).append(job)
    clashes = [group for group in by_output.values() if len(group) > 1]
    if clashes:
        shown = "; ".join(f"{g[0].dst} <- {', '.join(str(j.src) for j in g)}" for g in clashes[:5])
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise NicError(f"several inputs would write the same output, nothing was converted: {shown}{more}")


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def attempt(fn: Callable[[dict, Job], Done], opts: dict, job: Job) -> Result:
    """Run one job; its failure becomes a Result (one bad file must not stop a batch)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            done = fn(opts, job)
            r = Result(job, done.bytes_in, done.bytes_out, line=done.line, detail=done.detail)
        except NicError as e:
            r = Result(job, error=str(e))
        except OSError as e:
            r = Result(job, error=f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
        except MemoryError:
            r = Result(job, error="out of memory")
    r.warnings = [str(w.message) for w in caught]
    return r


def run(
    jobs: list[Job], fn: Callable[[dict, Job], Done], opts: dict, n_jobs: int = 1, threads: int = 0
) -> Iterator[Result]:
    """Results of `fn(opts, job)` for every job, in order; `n_jobs` worker processes of `threads` threads
    (default: the cores shared out)."""
    work = partial(attempt, fn, opts)
    if n_jobs <= 1 or len(jobs) <= 1:
        yield from map(work, jobs)
        return
    threads = threads or max(1, (os.cpu_count() or 1) // n_jobs)
    with ProcessPoolExecutor(n_jobs, initializer=_init_worker, initargs=(threads,)) as pool:
        yield from pool.map(work, jobs)


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
