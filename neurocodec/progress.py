"""How long work reports how far it has come: a callback the CLI turns into a progress bar."""

from __future__ import annotations

from collections.abc import Callable

# progress(stage, done, total): `done` of `total` steps of `stage` ("analysis", "refinement", "synthesis") are done.
Progress = Callable[[str, int, int], None]


def report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)
