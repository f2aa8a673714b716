"""Photo-like renderings of the procedural landscape label maps: the images the demo GAN learns to make.

``spade_rt.procedural.landscape`` draws the label map (COCO-Stuff ids); this module paints it: a sky
gradient, soft clouds, hazy mountains with snow on the highest peaks, textured hills, grass, sand and rock,
water with waves and a reflection of the sky, dark round trees. Everything is numpy + Pillow and
deterministic per seed, so the dataset needs no download and a scene is the same on every machine.

The ``landscape`` preset uses compact ids 0..9 (the order of ``LANDSCAPE_NAMES``); the COCO ids stay
available for training a ``coco``-preset model on the same scenes.
"""

from __future__ import annotations

import numpy as np

from spade_rt.palettes import colorize
from spade_rt.procedural import COCO_TO_LANDSCAPE, LANDSCAPE_CLASSES, LANDSCAPE_NAMES, landscape, value_noise

NUM_LANDSCAPE_CLASSES = len(LANDSCAPE_NAMES)


def fractal_noise(rng: np.random.Generator, h: int, w: int, base: int, octaves: int = 4, stretch: float = 1.0):
    """(h, w) float32, zero-mean-ish, amplitude ~0.5: octaves of value noise; stretch > 1 elongates it sideways."""
    total = np.zeros((h, w), np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        cy = max(1, int(base * 2**o))
        cx = max(1, int(cy / stretch))
        total += amp * (value_noise(rng, h, w, cy, cx) - 0.5)
        norm += amp
        amp *= 0.5
    return total / norm


def render_landscape(ids: np.ndarray, seed: int) -> np.ndarray:
    """COCO-Stuff landscape ids (h, w) -> (h, w, 3) uint8 RGB picture; deterministic per ``seed``."""
    h, w = ids.shape
    rng = np.random.default_rng([seed, 7])  # own stream: the label map used default_rng(seed)
    c = LANDSCAPE_CLASSES
    yy = np.broadcast_to((np.arange(h, dtype=np.float32)[:, None] + 0.5) / h, (h, w))  # 0 top .. 1 bottom
    img = np.zeros((h, w, 3), np.float32)
    mask = {name: ids == cid for name, cid in c.items()}

    # per-scene light: a little warmer or cooler, brighter or darker
    warmth = rng.uniform(-0.06, 0.08)
    tint = np.array([1.0 + warmth, 1.0, 1.0 - warmth], np.float32)
    exposure = rng.uniform(0.9, 1.08)

    # the horizon: first row where water starts (fallback 0.6), used for haze and reflections
    water = mask["sea"] | mask["river"]
    rows = np.flatnonzero(water.any(axis=1))
    horizon = (rows[0] / h) if rows.size else 0.6

    # sky: deep blue at the top, pale near the horizon
    top = np.array([55, 110, 200], np.float32) + rng.uniform(-15, 15, 3)
    low = np.array([175, 205, 235], np.float32) + rng.uniform(-10, 10, 3)
    t = np.clip(yy / max(horizon, 0.2), 0, 1)[..., None] ** 0.8
    sky = top * (1 - t) + low * t
    img[mask["sky"]] = sky[mask["sky"]]

    # clouds: bright tops, grey undersides, soft texture
    n = fractal_noise(rng, h, w, 4, 4, stretch=2.5)
    shade = np.clip(0.92 + 0.5 * n - 0.6 * (yy - 0.15), 0.6, 1.05)[..., None]
    cloud = np.array([240, 242, 246], np.float32) * shade
    img[mask["clouds"]] = cloud[mask["clouds"]]

    # mountains: grey-violet rock, vertical streaks, snow above a snowline, bluish haze
    streaks = fractal_noise(rng, h, w, 3, 4, stretch=0.25)  # tall, thin features
    rock_col = np.array([118, 110, 122], np.float32) + rng.uniform(-12, 12, 3)
    mountain = rock_col * (1 + 0.55 * streaks)[..., None]
    m = mask["mountain"]
    if m.any():
        tops = np.where(m.any(axis=0), m.argmax(axis=0), h) / h  # (w,) first mountain row per column
        snowline = tops.min() + rng.uniform(0.035, 0.07)
        snow = m & (yy < snowline + 0.02 * fractal_noise(rng, h, w, 6, 2)) & (rng.random() < 0.8)
        mountain[snow] = np.array([235, 238, 245], np.float32) * (0.9 + 0.3 * streaks[snow, None])
        haze = np.clip((yy - tops.min()) / max(horizon - tops.min(), 0.05), 0, 1)[..., None] * 0.35
        mountain = mountain * (1 - haze) + low * haze
        img[m] = mountain[m]

    # hills: olive green with soft blotches, slightly hazy
    blot = fractal_noise(rng, h, w, 5, 4)
    hill = np.array([80, 118, 62], np.float32) * (1 + 0.6 * blot)[..., None]
    hill = hill * 0.8 + low * 0.2
    img[mask["hill"]] = hill[mask["hill"]]

    # water: depth gradient, horizontal wave stripes, sky reflection near the horizon, glints
    depth = np.clip((yy - horizon) / 0.25, 0, 1)[..., None]
    waves = fractal_noise(rng, h, w, 10, 3, stretch=6.0)
    for name, near, far in (
        ("sea", np.array([40, 90, 150], np.float32), np.array([120, 165, 205], np.float32)),
        ("river", np.array([50, 105, 115], np.float32), np.array([120, 160, 170], np.float32)),
    ):
        col = far * (1 - depth) + near * depth
        col = col * (1 + 0.5 * waves)[..., None]
        glint = (waves > 0.28)[..., None] * np.array([60, 60, 50], np.float32)
        col = col + glint
        img[mask[name]] = col[mask[name]]

    # sand: warm beige with fine grain and ripples
    grain = rng.normal(0, 0.05, (h, w)).astype(np.float32)
    ripples = fractal_noise(rng, h, w, 12, 2, stretch=4.0)
    sand = np.array([222, 200, 150], np.float32) * (1 + grain + 0.25 * ripples)[..., None]
    img[mask["sand"]] = sand[mask["sand"]]

    # grass: fresh green, darker blades (vertical fine noise), lighter far away
    blades = fractal_noise(rng, h, w, 24, 2, stretch=0.2)
    patches = fractal_noise(rng, h, w, 4, 3)
    grass = np.array([100, 165, 55], np.float32) * (1 + 0.7 * blades + 0.5 * patches)[..., None]
    grass = grass * (0.85 + 0.3 * (1 - yy))[..., None]
    img[mask["grass"]] = grass[mask["grass"]]

    # trees: dark green crowns, lit from the top-left, leafy texture
    leaves = fractal_noise(rng, h, w, 16, 3)
    light = np.clip(1.15 - 1.2 * (yy - yy[mask["tree"]].min() if mask["tree"].any() else 0), 0.6, 1.2)
    tree = np.array([38, 80, 32], np.float32) * (1 + 1.0 * leaves)[..., None] * light[..., None]
    img[mask["tree"]] = tree[mask["tree"]]

    # rocks: grey boulders with cracks
    cracks = fractal_noise(rng, h, w, 14, 3)
    rock = np.array([128, 124, 116], np.float32) * (1 + 0.9 * cracks)[..., None]
    img[mask["rock"]] = rock[mask["rock"]]

    img = img * tint * exposure
    img += rng.normal(0, 2.0, img.shape).astype(np.float32)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def render_scene(h: int, w: int, seed: int, compact: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Scene ``seed`` at (h, w): (label ids (h, w) uint8, picture (h, w, 3) uint8)."""
    coco_ids = landscape(h, w, seed)
    rgb = render_landscape(coco_ids, seed)
    return (COCO_TO_LANDSCAPE[coco_ids] if compact else coco_ids), rgb


def colorize_landscape(ids: np.ndarray) -> np.ndarray:
    """Compact landscape ids (..., h, w) -> (..., h, w, 3) uint8 flat-colour picture (the docs' label panels)."""
    return colorize(ids, "landscape")
