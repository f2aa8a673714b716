"""Dataset colour palettes: colour-coded label maps <-> ids.

- coco: the palette the original SPADE code draws COCO-Stuff with (``util.labelcolormap(182)``: the
  bit-interleaved PASCAL-style map of id+1, with its fixed colours for sea, sky, tree, clouds and grass);
- ade20k: the CSAIL scene-parsing palette of the 150 classes (ids 1..150; id 0 "other" is black);
- cityscapes: the official label colours by labelId (0..33; SPADE's 35-entry table adds 34).
- landscape: the demo's 10 classes in natural colours (sky blue, grass green ...).

Some palettes give two ids one colour (cityscapes: ids 0-4 are all black, 17/18 and 26/34 share colours;
ade20k: two classes share (140, 140, 140)): decoding takes the smallest id, and says so in the docs.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from spade_rt.errors import InputError, LabelError

# fmt: off
ADE20K_CLASS_COLOURS = [  # ids 1..150
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80), (140, 140, 140),
    (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70),
    (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3), (0, 102, 200),
    (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220),
    (255, 9, 92), (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140),
    (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0), (0, 0, 255),
    (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255), (11, 200, 200), (255, 82, 0), (0, 255, 245),
    (0, 61, 255), (0, 255, 112), (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0),
    (0, 255, 153), (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194), (0, 255, 82),
    (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255), (0, 255, 163), (255, 153, 0),
    (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112),
    (92, 255, 0), (0, 224, 255), (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0),
    (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255), (255, 255, 0),
    (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0), (0, 133, 255), (255, 214, 0),
    (25, 194, 194), (102, 255, 0), (92, 0, 255),
]
CITYSCAPES_COLOURS = [  # labelIds 0..34
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81), (128, 64, 128),
    (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (180, 165, 180), (150, 100, 100), (150, 120, 90), (153, 153, 153), (153, 153, 153), (250, 170, 30),
    (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142),
    (0, 0, 70), (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32), (0, 0, 142),
]
# fmt: on
LANDSCAPE_COLOURS = [  # compact landscape ids 0..9: the mean colour of each class in the renderings
    (110, 160, 225),
    (235, 238, 242),
    (115, 110, 120),
    (85, 120, 60),
    (35, 75, 30),  # sky clouds mountain hill tree
    (105, 170, 60),
    (225, 205, 150),
    (40, 95, 150),
    (60, 115, 125),
    (130, 125, 115),  # grass sand sea river rock
]
COCO_FIXED = {154: (54, 62, 167), 156: (95, 219, 255), 168: (140, 104, 47), 105: (170, 170, 170), 123: (29, 195, 49)}


def bit_interleaved(n: int) -> np.ndarray:
    """(n, 3) uint8: colour of id i from the bits of i+1 (SPADE's labelcolormap for generic label sets)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        code, rgb = i + 1, [0, 0, 0]
        for j in range(7):
            for c in range(3):
                rgb[c] |= ((code >> c) & 1) << (7 - j)
            code >>= 3
        cmap[i] = rgb
    return cmap


def _coco() -> np.ndarray:
    cmap = bit_interleaved(183)  # 182 classes + dontcare (drawn like any id)
    for i, colour in COCO_FIXED.items():
        cmap[i] = colour
    return cmap


# name -> (num_ids, 3) uint8 table builder; presets name one of these (spade_rt.presets.Preset.palette)
PALETTES = {
    "coco": _coco,
    "ade20k": lambda: np.array([(0, 0, 0), *ADE20K_CLASS_COLOURS], dtype=np.uint8),
    "cityscapes": lambda: np.array(CITYSCAPES_COLOURS, dtype=np.uint8),
    "landscape": lambda: np.array(LANDSCAPE_COLOURS, dtype=np.uint8),
}


@cache
def palette(name: str) -> np.ndarray:
    """(num_ids, 3) uint8 colours indexed by model id."""
    if name not in PALETTES:
        raise InputError(f"no palette {name!r}: expected one of {', '.join(PALETTES)}")
    table = PALETTES[name]()
    table.setflags(write=False)  # cached and shared: nobody may paint over it
    return table


def colorize(ids: np.ndarray, name: str) -> np.ndarray:
    """(..., H, W) ids -> (..., H, W, 3) RGB."""
    cmap = palette(name)
    if ids.size and int(ids.max()) >= len(cmap):
        raise LabelError(f"id {int(ids.max())} has no colour in the {name} palette (0..{len(cmap) - 1})")
    return cmap[ids]


def decode_colours(rgb: np.ndarray, name: str, source: str = "label map") -> np.ndarray:
    """(H, W, 3) colour-coded map -> (H, W) ids (uint8 / int32); unknown colours are named with pixel counts."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise InputError(f"{source}: expected an RGB image, got shape {rgb.shape}")
    cmap = palette(name).astype(np.int64)
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    table_codes = (cmap[:, 0] << 16) | (cmap[:, 1] << 8) | cmap[:, 2]
    # smallest id wins where a palette repeats a colour: unique() returns first occurrences
    uniq_codes, first = np.unique(table_codes, return_index=True)
    pos = np.searchsorted(uniq_codes, codes)
    pos = np.clip(pos, 0, len(uniq_codes) - 1)
    known = uniq_codes[pos] == codes
    if not known.all():
        bad, counts = np.unique(codes[~known], return_counts=True)
        pairs = zip(bad[:4].tolist(), counts[:4].tolist())
        shown = ", ".join(f"rgb({c >> 16}, {(c >> 8) & 255}, {c & 255}) ({n} px)" for c, n in pairs)
        raise LabelError(
            f"{source} has colours outside the {name} palette: {shown}"
            f"{' and more' if len(bad) > 4 else ''} (save label maps losslessly, e.g. PNG, never JPEG)"
        )
    ids = first[pos]
    return ids.astype(np.uint8 if len(cmap) <= 256 else np.int32)


def palette_for(preset: str) -> str | None:
    """The palette colour-coded maps of a preset are decoded with (None: the preset has no standard one)."""
    from spade_rt.presets import PRESETS

    p = PRESETS.get(preset)
    return p.palette if p is not None else None


def preset_colours(preset: str, num_ids: int) -> np.ndarray:
    """(num_ids, 3) uint8: the preset's palette where it covers every id, else SPADE's bit-interleaved map."""
    name = palette_for(preset)
    if name is not None and num_ids <= len(palette(name)):
        return palette(name)[:num_ids]
    return bit_interleaved(num_ids)
