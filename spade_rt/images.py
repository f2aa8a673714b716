"""Network output -> pictures and files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from spade_rt.errors import InputError
from spade_rt.io_utils import atomic_path

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # RGB pictures Pillow writes
OUTPUT_SUFFIXES = (".npy", *PICTURE_SUFFIXES)  # .npy: the float network output as is


def float_to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8, as the original ``tensor2im``: (x+1)/2*255, clip, truncate."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"expected images of shape (N, 3, H, W), got {images.shape}")
    scaled = (np.transpose(images, (0, 2, 3, 1)).astype(np.float32) + 1.0) / 2.0 * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def save_output(path: str | Path, images: np.ndarray) -> list[Path]:
    """Write ``.npy`` (the array as is) or an image per batch item (``.png``/``.jpg``; ``name_1.png`` ...).

    ``images``: float (N, 3, H, W) in [-1, 1] or uint8 (N, H, W, 3). Writes are atomic.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, images)
        return [path]
    if suffix not in PICTURE_SUFFIXES:
        raise InputError(f"output {path}: expected a file name ending in {', '.join(OUTPUT_SUFFIXES)}")
    rgb = images if images.dtype == np.uint8 else float_to_uint8(images)
    written = []
    for i, frame in enumerate(rgb):
        target = path if len(rgb) == 1 else path.with_name(f"{path.stem}_{i}{path.suffix}")
        with atomic_path(target) as tmp:
            Image.fromarray(frame).save(tmp, format=Image.registered_extensions()[suffix])
        written.append(target)
    return written
