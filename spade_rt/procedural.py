"""Label maps the project makes itself: random blobs (verification inputs) and landscape scenes (the demo).

torch-free and deterministic per seed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def value_noise(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int | None = None) -> np.ndarray:
    """(h, w) float32 smooth noise in about [0, 1]: a random (cells_y+1, cells_x+1) grid, bicubic-upsampled.

    The one value noise: the label maps here and the training pictures (training/procedural_data.py) use it."""
    cells_x = cells_y if cells_x is None else cells_x
    coarse = rng.random((cells_y + 1, cells_x + 1)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.float32)  # mode F


def random_label_maps(n: int, h: int, w: int, num_ids: int, seed: int = 0, regions: int = 12) -> np.ndarray:
    """(n, h, w) int32 maps of irregular regions (Voronoi cells with wavy borders) plus a few specks.

    Like real segmentation maps: large uniform areas, curved boundaries, some thin structures; every id
    may appear, so the whole lookup table is exercised over a few samples.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n, h, w), dtype=np.int32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        centres = rng.random((regions, 2)) * (h, w)
        ids = rng.integers(0, num_ids, size=regions)
        warp_y = (value_noise(rng, h, w, 4) - 0.5) * h * 0.3
        warp_x = (value_noise(rng, h, w, 4) - 0.5) * w * 0.3
        d = (yy[None] + warp_y[None] - centres[:, 0, None, None]) ** 2 + (
            xx[None] + warp_x[None] - centres[:, 1, None, None]
        ) ** 2
        out[i] = ids[np.argmin(d, axis=0)]
        specks = rng.random((h, w)) < 0.002  # isolated pixels: every tap of the 3x3 kernels differs
        out[i][specks] = rng.integers(0, num_ids, size=int(specks.sum()))
    return out


# ---- landscapes (the embedded demo) -----------------------------------------------------------------
# Class ids of the landscape scenes, chosen from COCO-Stuff's 182 labels so a coco-preset model can be
# trained on them and the palette stays meaningful.
LANDSCAPE_CLASSES = {
    "sky": 156,
    "clouds": 105,
    "mountain": 134,
    "hill": 126,
    "tree": 168,
    "grass": 123,
    "sand": 153,
    "sea": 154,
    "river": 147,
    "rock": 149,
}


LANDSCAPE_NAMES: tuple[str, ...] = tuple(LANDSCAPE_CLASSES)  # compact id i = the i-th class
COCO_TO_LANDSCAPE = np.full(256, 255, dtype=np.uint8)  # COCO-Stuff id -> compact id (255: not a landscape class)
COCO_TO_LANDSCAPE[list(LANDSCAPE_CLASSES.values())] = np.arange(len(LANDSCAPE_CLASSES), dtype=np.uint8)


def landscape_labels(h: int, w: int, seed: int = 0, compact: bool = True) -> np.ndarray:
    """(h, w) uint8 label map of scene ``seed``: the ``landscape`` preset's ids 0..9, or COCO-Stuff ids."""
    ids = landscape(h, w, seed)
    return COCO_TO_LANDSCAPE[ids] if compact else ids


def landscape(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w) uint8 COCO-Stuff ids of a scene: sky (+ clouds), mountains, hills, water, beach, grass, trees."""
    rng = np.random.default_rng(seed)
    c = LANDSCAPE_CLASSES
    x = np.arange(w, dtype=np.float32) / w
    ids = np.full((h, w), c["sky"], dtype=np.uint8)
    yy = np.arange(h, dtype=np.float32)[:, None] / h

    def ridge(base: float, amp: float, freq: float) -> np.ndarray:
        phase = rng.random(3) * 6.28
        wave = sum(np.sin(x * freq * (k + 1) * 6.28 + phase[k]) / (k + 1) for k in range(3))
        return base + amp * wave

    clouds = value_noise(rng, h, w, 6) > 0.72
    ids[clouds & (yy < 0.35)] = c["clouds"]  # (h, w) & (h, 1)
    mountains = ridge(rng.uniform(0.25, 0.4), 0.08, rng.uniform(0.8, 1.6))
    ids[yy > mountains[None]] = c["mountain"]
    horizon = rng.uniform(0.5, 0.62)
    water_kind = c["sea"] if rng.random() < 0.6 else c["river"]
    hills = ridge(horizon - 0.05, 0.04, rng.uniform(1.5, 3))
    ids[yy > hills[None]] = c["hill"]
    ids[np.broadcast_to(yy > horizon, ids.shape)] = water_kind
    shore = ridge(horizon + rng.uniform(0.08, 0.15), 0.03, rng.uniform(1, 2.5))
    ids[yy > shore[None]] = c["sand"]
    meadow = ridge(shore.mean() + rng.uniform(0.06, 0.12), 0.04, rng.uniform(1, 3))
    ids[yy > meadow[None]] = c["grass"]
    # trees: blobs standing on the meadow line
    for _ in range(rng.integers(2, 6)):
        cx, r = rng.uniform(0, 1), rng.uniform(0.04, 0.09)
        cy = meadow[min(int(cx * w), w - 1)] - r * 0.6
        blob = ((x[None] - cx) / r) ** 2 + ((yy - cy) / (r * 1.4)) ** 2 < 1.0
        ids[blob] = c["tree"]
    rocks = (value_noise(rng, h, w, 10) > 0.8) & (ids == c["sand"])
    ids[rocks] = c["rock"]
    return ids
