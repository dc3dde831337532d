"""Shared fixtures: small synthetic photos-like images and the shipped weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def example_crop() -> np.ndarray:
    """A real photo crop (96x80) from the examples."""
    with Image.open(EXAMPLES / "fig.png") as im:
        return np.asarray(im.convert("RGB"))[60:140, 200:296].copy()
