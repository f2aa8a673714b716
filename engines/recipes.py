"""Build recipes: export + engine options per preset and resolution (``recipes.json``).

`spade-rt build MODEL --recipe NAME` exports the model with the recipe's options and builds the engine into
the per-user cache (``spade_rt.cache.built_dir``), or wherever ``-o`` / ``--cache-dir`` say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from spade_rt.errors import ConfigError

RECIPES_FILE = Path(__file__).with_name("recipes.json")


@dataclass(frozen=True)
class Recipe:
    name: str
    preset: str
    size: tuple[int, int]
    batch: tuple[int, int, int]
    precision: str
    output: str

    def engine_path(self, directory: Path) -> Path:
        return directory / f"{self.name}.engine"

    def onnx_path(self, directory: Path) -> Path:
        return directory / f"{self.name}.onnx"


def load_recipes() -> dict[str, Recipe]:
    raw = json.loads(RECIPES_FILE.read_text())
    return {
        name: Recipe(name, r["preset"], tuple(r["size"]), tuple(r["batch"]), r["precision"], r["output"])
        for name, r in raw.items()
        if not name.startswith("_")
    }


def get_recipe(name: str) -> Recipe:
    recipes = load_recipes()
    if name not in recipes:
        raise ConfigError(f"unknown recipe {name!r}: expected one of {', '.join(recipes)}")
    return recipes[name]
