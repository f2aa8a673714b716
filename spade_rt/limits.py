"""What spade-rt accepts from a file it did not write itself: value ranges, header sizes, image pixels.

Model files, ONNX graphs, label maps and instance maps come from other people; their headers are checked
against these limits before anything is allocated for them (docs/runtime.md, "What is trusted"). The ranges
are generous (every published SPADE model sits far inside them) but finite, so a hostile header cannot ask
for terabytes of weights or a billion-pixel image. torch-free: the runtime and the toolchain share them.
"""

from __future__ import annotations

import math
import os
from typing import Any

from spade_rt.errors import ConfigError

# integer settings of a model, from any file: name -> (lowest, highest) accepted
INT_RANGES: dict[str, tuple[int, int]] = {
    "label_nc": (1, 65535),  # classes; ids (plus dontcare) still fit 16-bit PNGs and int32 graph inputs
    "ngf": (2, 1024),  # generator width (the published models use 64)
    "z_dim": (1, 4096),  # VAE style vector (the published models use 256)
    "crop_size": (8, 4096),  # output width
    "height": (1, 4096),  # output height and width of a graph or engine
    "width": (1, 4096),
    "size_multiple": (1, 4096),
    "min_batch": (1, 4096),
    "opt_batch": (1, 4096),
    "max_batch": (1, 4096),
}
MAX_OUTPUT_SIDE = 4096  # a model's output height and width (crop_size / aspect_ratio included)
ASPECT_RATIO_RANGE = (1 / 16, 16.0)  # width / height
MAX_HEADER_BYTES = 16 << 20  # a safetensors JSON header or an engine manifest (real ones: tens of KB)

# label and instance maps: refused from their header when larger than this (pixels); see pixel_limit
MAX_PIXELS_ENV = "SPADE_RT_MAX_PIXELS"
PIXEL_FACTOR = 16  # the default limit: this many times the model's output size ...
MIN_PIXEL_LIMIT = 4096 * 4096  # ... but never less than this (a 4096 x 4096 map is always accepted)


def shown(value: Any, width: int = 60) -> str:
    """repr of a value for a one-line message, cut to ``width`` characters (headers can hold anything)."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An int (not a bool) in [lo, hi] (default: ``INT_RANGES[name]``), else ConfigError naming both."""
    if lo is None or hi is None:
        lo, hi = INT_RANGES[name]
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, got {shown(value)}")
    return value


def check_float(name: str, value: Any, lo: float, hi: float) -> float:
    """A finite number (int or float, not a bool) in [lo, hi], else ConfigError naming both."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and lo <= value <= hi
    if not ok:
        raise ConfigError(f"{name} must be a number in {lo:g}..{hi:g}, got {shown(value)}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {shown(value)}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {shown(value)}")
    return value


def pixel_limit(height: int | None = None, width: int | None = None, max_pixels: int | None = None) -> int:
    """The largest label or instance map (in pixels) read for a model of ``height`` x ``width``.

    ``max_pixels`` (the API keyword, the CLI's ``--max-pixels``) wins, then ``$SPADE_RT_MAX_PIXELS``, then
    the larger of ``PIXEL_FACTOR`` times the model's size and ``MIN_PIXEL_LIMIT``.
    """
    if max_pixels is None and os.environ.get(MAX_PIXELS_ENV):
        text = os.environ[MAX_PIXELS_ENV]
        try:
            max_pixels = int(text)
        except ValueError:
            raise ConfigError(f"${MAX_PIXELS_ENV} must be a number of pixels, got {shown(text)}") from None
    if max_pixels is not None:
        return check_int("max_pixels", max_pixels, 1, 1 << 40)
    model = (height or 0) * (width or 0)
    return max(PIXEL_FACTOR * model, MIN_PIXEL_LIMIT)
