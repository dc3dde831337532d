"""Prepare what a lent GPU needs beside the checkout: training photos in .gpu/train, wheels in .whl/.

    python benchmarks/gpu_payload.py [--data ../shared/data/train] [--limit-mib 60] [--session N]

The device tool sends the working tree (tracked and untracked-not-ignored
files) plus the ignored paths a call carries, 64 MiB in all; the training
photos live outside the checkout, and the device's Python has torch, numpy,
Pillow and click but not constriction. So this copies as many training photos
as fit under --limit-mib (with what travels anyway counted), picked evenly over
the sorted folder so every source of photos is in, into `.gpu/train`, and the
constriction wheel this venv runs into `.whl/`, both ignored through
.git/info/exclude, to be carried: run(carry=[".gpu", ".whl"]). --session N
shifts the picks so that later sessions train on other photos. Nothing it
writes is tracked; run it again after the tree changes size.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import click

from neurocodec.training.data import list_images

ROOT = Path(__file__).resolve().parent.parent
GPU_DIR, WHEEL_DIR = ".gpu", ".whl"
MIB = 2**20
GOLDEN = 0.6180339887498949  # successive sessions' shifts: as far from all earlier ones as can be


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True).stdout


def size_of(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def travelling_bytes() -> tuple[int, int]:
    """Bytes of the tracked files and of the untracked files git does not ignore (both travel)."""
    tracked = [ROOT / n.decode() for n in git("ls-files", "-z").split(b"\0") if n]
    untracked = [ROOT / n.decode() for n in git("ls-files", "-z", "-o", "--exclude-standard").split(b"\0") if n]
    return size_of(tracked), size_of(untracked)


def exclude(*patterns: str) -> None:
    """Ignore these folders in this checkout only (.git/info/exclude is never committed)."""
    path = ROOT / git("rev-parse", "--git-path", "info/exclude").decode().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.is_file() else []
    missing = [p for p in patterns if p not in lines]
    if missing:
        path.write_text("".join(f"{line}\n" for line in lines + missing))


def spread(files: list[Path], budget: int, shift: float) -> list[Path]:
    """The most files, picked evenly over the sorted list (shifted by `shift` of a step), whose bytes fit `budget`."""
    n = len(files)
    for k in range(n, 0, -1):
        picks = [files[min(n - 1, int((i + shift) * n / k))] for i in range(k)]
        if size_of(picks) <= budget:
            return picks
    return []


def wheels(folder: Path, source: Path) -> list[Path]:
    """The constriction wheel for the device's CPython 3.12 in `folder`: copied from `source`, else downloaded."""
    folder.mkdir(exist_ok=True)
    version = importlib.metadata.version("constriction")
    found = sorted(source.glob(f"constriction-{version}-*.whl")) if source.is_dir() else []
    for whl in found:
        if not (folder / whl.name).is_file():
            shutil.copy2(whl, folder / whl.name)
    if not found and not list(folder.glob(f"constriction-{version}-*.whl")):
        platforms = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
        cmd += ["--implementation", "cp", *(a for p in platforms for a in ("--platform", p)), "-d", str(folder)]
        subprocess.run([*cmd, f"constriction=={version}"], check=True)
    for old in folder.glob("constriction-*.whl"):  # two versions would stop the install there
        if not old.name.startswith(f"constriction-{version}-"):
            old.unlink()
    return sorted(folder.glob("*.whl"))


@click.command()
@click.option("--data", default=str(ROOT.parent / "shared" / "data" / "train"), show_default=True)
@click.option("--limit-mib", default=60.0, show_default=True, help="Everything that travels, at most (the tool's: 64).")
@click.option("--margin-mib", default=1.0, show_default=True, help="Kept free for untracked files that grow.")
@click.option("--wheels-from", default="/tmp/whl", show_default=True, help="Folder with a constriction wheel.")
@click.option("--session", default=0, show_default=True, help="Another N picks other photos (0: the first set).")
def main(data: str, limit_mib: float, margin_mib: float, wheels_from: str, session: int) -> None:
    """Fill .gpu/train and .whl/ so that everything that travels stays under --limit-mib."""
    exclude(f"/{GPU_DIR}/", f"/{WHEEL_DIR}/")
    whls = wheels(ROOT / WHEEL_DIR, Path(wheels_from))
    tracked, untracked = travelling_bytes()
    budget = int((limit_mib - margin_mib) * MIB) - tracked - untracked - size_of(whls)
    photos = list_images(data)
    picks = spread(photos, budget, (0.5 + session * GOLDEN) % 1.0)
    if not picks:
        raise click.ClickException(f"no photo fits: {tracked / MIB:.1f} MiB tracked already")
    out = ROOT / GPU_DIR / "train"
    out.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in picks}
    for old in out.iterdir():
        if old.name not in names:
            old.unlink()
    for p in picks:
        if not (out / p.name).is_file() or (out / p.name).stat().st_size != p.stat().st_size:
            shutil.copyfile(p, out / p.name)
    carried = size_of(list((ROOT / GPU_DIR).rglob("*"))) + size_of(whls)
    total = tracked + untracked + carried
    click.echo(
        f"{len(picks)} of {len(photos)} photos ({size_of(picks) / MIB:.1f} MiB) in {out.relative_to(ROOT)}; "
        f"{', '.join(w.name for w in whls)} in {WHEEL_DIR}/\n"
        f"travels: {tracked / MIB:.1f} MiB tracked + {untracked / MIB:.1f} untracked + {carried / MIB:.1f} carried "
        f"= {total / MIB:.1f} MiB (limit {limit_mib:g})"
    )


if __name__ == "__main__":
    main()
