"""Dataset presets: the label conventions of the original SPADE code, as data. One table, ``PRESETS``.

Shared by the runtime (label validation, resizing, colour-coded maps) and the toolchain (network shapes),
so both read the same numbers; every command's ``--preset`` choices derive from it. A new preset is one
``Preset(...)`` line; its ``palette`` names a colour table of ``spade_rt.palettes`` (None: SPADE's generic
bit-interleaved colours) and the class names of ``spade_rt.class_names`` under the same key. torch-free.

Label conventions, as the original test pipeline applies them (data/pix2pix_dataset.py):
- every label map is resized with NEAREST to the crop size, then stored 255 ("unlabeled") becomes id
  ``label_nc``; that id is a real input channel only when the preset has a dontcare label;
- ade20k ids are used *as stored* (0 = "other", 1..150 classes): the original ``ADE20KDataset.postprocess``
  shifts a local copy and never writes it back, so the pretrained ADE20K models saw raw ids;
- the instance edge channel (when used) comes last, after the label channels.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from spade_rt.errors import ConfigError

UPSAMPLING_LAYERS = {"normal": 5, "more": 6, "most": 7}
DONTCARE_STORED_ID = 255  # what the dataset PNGs store for "unlabeled"


@dataclass(frozen=True)
class Preset:
    """Label conventions and default geometry of one dataset."""

    name: str
    label_nc: int  # classes without the dontcare id
    contain_dontcare_label: bool  # 255 -> label_nc is an input channel
    use_instance: bool  # an instance edge channel follows the label channels
    crop_size: int  # output width
    aspect_ratio: float  # width / height
    num_upsampling_layers: str  # normal | more | most
    palette: str | None  # colour table of colour-coded label maps (spade_rt.palettes.PALETTES), None: generic
    summary: str

    def class_names(self, num_ids: int | None = None) -> list[str]:
        """The name of each id: the label set its ``palette`` names (spade_rt.class_names.CLASS_NAMES)."""
        from spade_rt.class_names import id_names

        return id_names(self.palette, self.label_nc + self.contain_dontcare_label if num_ids is None else num_ids)


def describe_channels(label_nc: int, contain_dontcare_label: bool, use_instance: bool) -> str:
    """The input channels in words: '182 labels + dontcare + instance edge'."""
    parts = [f"{label_nc} labels"] + (["dontcare"] if contain_dontcare_label else [])
    return " + ".join(parts + (["instance edge"] if use_instance else []))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("coco", 182, True, True, 256, 1.0, "normal", "coco", "COCO-Stuff 256x256, instance edges"),
        Preset("ade20k", 150, True, False, 256, 1.0, "normal", "ade20k", "ADE20K 256x256, ids as stored (0 = other)"),
        Preset("cityscapes", 35, False, True, 512, 2.0, "more", "cityscapes", "Cityscapes 256x512, instance edges"),
        Preset("facades", 13, False, False, 256, 1.0, "normal", None, "CMP Facades 256x256"),
        Preset("custom", 13, False, False, 256, 1.0, "normal", None, "your own labels (set label_nc and flags)"),
        Preset(
            "landscape", 10, False, False, 256, 1.0, "normal", "landscape", "procedural landscapes (the demo), ids 0..9"
        ),
    )
}


def _by_preset(field: str) -> str:
    """'preset: 256, cityscapes 512': the value most presets have, then the others by name."""
    values = [getattr(p, field) for p in PRESETS.values()]
    common = max(values, key=values.count)
    shown = "{:g}".format if isinstance(common, int | float) else str
    others = [f"{p.name} {shown(getattr(p, field))}" for p in PRESETS.values() if getattr(p, field) != common]
    return ", ".join([f"preset: {shown(common)}", *others])


def _presets_with(field: str) -> str:
    return "preset: " + ", ".join(p.name for p in PRESETS.values() if getattr(p, field))


def add_network_flags(group: Any, default: Any) -> None:
    """The flags that override a preset's network shape, their dest the ``Preset`` field (convert and train):
    --label-nc, --instance, --dontcare, --num-upsampling-layers, --crop-size, --aspect-ratio, each help naming
    the presets' values. ``default``: what an absent flag leaves (None, or argparse.SUPPRESS)."""
    cells = ", ".join(f"{2**n} for '{name}'" for name, n in UPSAMPLING_LAYERS.items())
    group.add_argument(
        "--label-nc",
        type=int,
        default=default,
        help="classes without dontcare (preset: " + ", ".join(f"{p.name} {p.label_nc}" for p in PRESETS.values()) + ")",
    )
    switches = (
        ("--instance", "use_instance", "an instance edge channel after the label channels"),
        ("--dontcare", "contain_dontcare_label", "stored 255 becomes id label_nc, an input channel of its own"),
    )
    for flag, dest, what in switches:
        group.add_argument(
            flag,
            dest=dest,
            action=argparse.BooleanOptionalAction,
            default=default,
            help=f"{what} ({_presets_with(dest)})",
        )
    group.add_argument(
        "--num-upsampling-layers",
        choices=tuple(UPSAMPLING_LAYERS),
        default=default,
        help="how often the generator doubles its first map: "
        + ", ".join(f"{name} {n}" for name, n in UPSAMPLING_LAYERS.items())
        + f" ({_by_preset('num_upsampling_layers')})",
    )
    group.add_argument(
        "--crop-size",
        type=int,
        default=default,
        help=f"output width, a multiple of {cells} ({_by_preset('crop_size')})",
    )
    group.add_argument(
        "--aspect-ratio", type=float, default=default, help=f"width / height ({_by_preset('aspect_ratio')})"
    )


def preset_names() -> tuple[str, ...]:
    """Every preset name, for ``choices=``."""
    return tuple(PRESETS)


def get_preset(name: str) -> Preset:
    """Look a preset up by name, with an error that lists the accepted names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}") from None


def latent_size(crop_size: int, aspect_ratio: float, num_upsampling_layers: str) -> tuple[int, int]:
    """(sh, sw): the generator's first feature map, exactly as the original computes it."""
    if num_upsampling_layers not in UPSAMPLING_LAYERS:
        raise ConfigError(
            f"num_upsampling_layers {num_upsampling_layers!r} is not one of {', '.join(UPSAMPLING_LAYERS)}"
        )
    sw = crop_size // (2 ** UPSAMPLING_LAYERS[num_upsampling_layers])
    sh = round(sw / aspect_ratio)
    if sw < 1 or sh < 1:
        raise ConfigError(
            f"crop_size {crop_size} with aspect_ratio {aspect_ratio} and {num_upsampling_layers!r} upsampling "
            f"gives an empty {sh}x{sw} latent map: crop_size must be at least "
            f"{2 ** UPSAMPLING_LAYERS[num_upsampling_layers] * max(1, round(aspect_ratio))}"
        )
    return sh, sw


def output_size(crop_size: int, aspect_ratio: float, num_upsampling_layers: str) -> tuple[int, int]:
    """(H, W) of the generated image (and of the label map the network is fed)."""
    sh, sw = latent_size(crop_size, aspect_ratio, num_upsampling_layers)
    scale = 2 ** UPSAMPLING_LAYERS[num_upsampling_layers]
    return sh * scale, sw * scale
