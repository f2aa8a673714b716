"""Picture grids of training progress: label map (in colour) | synthesized | real, one column per sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from spade_rt.io_utils import atomic_path
from spade_rt.training.procedural_data import LANDSCAPE_PALETTE


def label_palette(num_ids: int, preset: str = "") -> np.ndarray:
    """(num_ids, 3) uint8 colours: the landscape palette, else the classic bit-interleaved label colormap."""
    if preset == "landscape" and num_ids <= len(LANDSCAPE_PALETTE):
        return LANDSCAPE_PALETTE[:num_ids]
    out = np.zeros((num_ids, 3), np.uint8)
    for i in range(num_ids):
        code, rgb = i + 1, [0, 0, 0]  # +1: id 0 gets a colour too
        for bit in range(7, -1, -1):  # spread the id's bits over r, g, b from the high bit down
            for ch in range(3):
                rgb[ch] |= ((code >> ch) & 1) << bit
            code >>= 3
        out[i] = rgb
    return out


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) float in [-1, 1] -> (N, H, W, 3) uint8."""
    return np.clip((images.transpose(0, 2, 3, 1) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


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
    rows = [palette[np.clip(ids, 0, len(palette) - 1)], to_uint8(fake)]
    if real is not None:
        rows.append(to_uint8(real))
    return make_grid(rows)


def save_png(path: str | Path, picture: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
