"""Build recipes (one per preset / resolution) and the default place built engines go (git-ignored)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from spade_rt.errors import ConfigError

RECIPES_FILE = Path(__file__).with_name("recipes.json")
BUILT_DIR = Path("engines") / "built"  # relative to the working directory: a checkout's engines/built/


@dataclass(frozen=True)
class Recipe:
    name: str
    preset: str
    size: tuple[int, int]
    batch: tuple[int, int, int]
    precision: str
    output: str

    def engine_path(self, directory: Path = BUILT_DIR) -> Path:
        return directory / f"{self.name}.engine"

    def onnx_path(self, directory: Path = BUILT_DIR) -> Path:
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
