"""The real test data that ships in the package: a small COCO-Stuff sample (origin and licence in its README).

``spade_rt/assets/coco_stuff_sample/`` holds label maps, instance maps and photos in the original SPADE
``--dataset_mode coco`` layout (``train_img/``, ``train_label/``, ``train_inst/``, ``val_img/``, ``val_label/``,
``val_inst/``), about 3 MB. The tests and ``spade-rt bench`` use it, from a fresh clone or an installed wheel;
nothing outside the package is needed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from spade_rt.errors import InputError

COCO_STUFF_SAMPLE = "assets/coco_stuff_sample"
SAMPLE_FOLDERS = ("train_img", "train_label", "train_inst", "val_img", "val_label", "val_inst")


def coco_stuff_sample() -> Path:
    """The shipped COCO-Stuff sample folder; InputError (with the fix) when the installation lacks it."""
    path = Path(str(resources.files("spade_rt").joinpath(COCO_STUFF_SAMPLE)))
    if not (path / "val_label").is_dir() or not any((path / "val_label").glob("*.png")):
        raise InputError(f"the COCO-Stuff sample that ships with spade-rt is missing ({path}): reinstall spade-rt")
    return path
