"""Picture grids of training progress: label map (in colour) | synthesized | real, one column per sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from spade_rt.images import float_to_uint8
from spade_rt.io_utils import atomic_path


def make_grid(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Rows of (N, H, W, 3) uint8 pictures -> one (R*(H+pad)+pad, N*(W+pad)+pad, 3) picture on white."""
    n, h, w, _ = rows[0].shape
    grid = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, pic in enumerate(row):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[y : y + h, x : x + w] = pic
    return grid


def sample_grid(ids: np.ndarray, fake: np.ndarray, real: np.ndarray | None, palette: np.ndarray) -> np.ndarray:
    """ids (N, H, W), fake/real (N, 3, H, W) in [-1, 1] -> grid: labels / synthesized [/ real]."""
    rows = [palette[np.clip(ids, 0, len(palette) - 1)], float_to_uint8(fake)]
    if real is not None:
        rows.append(float_to_uint8(real))
    return make_grid(rows)


def save_png(path: str | Path, picture: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
