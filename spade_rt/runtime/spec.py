"""The contract between export, the engine builder and the runtime: tensor names and the model spec.

`spade-rt export` writes the spec as JSON into the ONNX graph's metadata (key ``SPEC_KEY``); `spade-rt build`
copies it into the engine's manifest (``"spec"``); every backend reads it back with ``spec_from_dict``. This
module is the only place that knows the key, the field names and the file names beside a graph (the export
report ``X.onnx.json``) and an engine (the manifest ``X.engine.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spade_rt.errors import ConfigError, ModelFormatError
from spade_rt.labels import LabelSpec
from spade_rt.limits import INT_RANGES, check_bool, check_choice, check_int, shown

LABELS, EDGES, Z, IMAGE = "labels", "edges", "z", "image"  # tensor names of the exported graphs and engines
SPEC_KEY = "spade_rt.spec"  # ONNX metadata key holding the spec JSON
MANIFEST_FORMAT = "spade-rt-engine-manifest"  # the "format" field of an engine manifest


@dataclass(frozen=True)
class ModelSpec:
    """What a loaded model takes and gives, whatever file it came from."""

    preset: str
    labels: LabelSpec
    use_vae: bool = False
    z_dim: int = 256
    output: str = "float"  # 'float': (N, 3, H, W) in [-1, 1]; 'uint8': (N, H, W, 3) RGB
    min_batch: int = 1
    max_batch: int | None = None  # None: any
    precision: str = "fp32"
    dynamic_size: bool = False  # the graph takes any H, W (multiples of size_multiple)
    opt_batch: int = 1  # the batch engine profiles are tuned for
    size_multiple: int = 1  # H and W of a dynamic graph must be multiples of this (the latent cell)
    extra: dict = field(default_factory=dict, compare=False)  # everything else the file recorded

    @property
    def uses_edges(self) -> bool:
        return self.labels.use_instance

    @property
    def dynamic_multiple(self) -> int | None:
        """What H and W of a map must be multiples of where the graph takes any size (each map is run at its
        own size, never resized); None for a fixed-size graph (maps are resized to its size)."""
        return self.size_multiple if self.dynamic_size else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields the runtime reads back (export adds provenance beside them)."""
        lab = self.labels
        return {
            "preset": self.preset,
            "label_nc": lab.label_nc,
            "contain_dontcare_label": lab.contain_dontcare_label,
            "use_instance": lab.use_instance,
            "height": lab.height,
            "width": lab.width,
            "use_vae": self.use_vae,
            "z_dim": self.z_dim,
            "output": self.output,
            "precision": self.precision,
            "min_batch": self.min_batch,
            "opt_batch": self.opt_batch,
            "max_batch": self.max_batch,
            "dynamic_size": self.dynamic_size,
            "size_multiple": self.size_multiple,
        }


def check_spec_values(s: dict[str, Any]) -> None:
    """Types and ranges of every spec field (``spade_rt.limits``); ConfigError naming the field and its range.

    The spec comes from files other people make (an ONNX graph's metadata, an engine's manifest): sizes and
    batch ranges decide what a backend allocates, so they are bounded before anything else reads them.
    """
    preset = s["preset"]
    if not isinstance(preset, str) or not 1 <= len(preset) <= 64:
        raise ConfigError(f"preset must be a name of 1..64 characters, got {shown(preset)}")
    for name in ("label_nc", "height", "width", "min_batch"):
        check_int(name, s[name])
    check_int("z_dim", s["z_dim"])
    for name in ("contain_dontcare_label", "use_instance", "use_vae", "dynamic_size"):
        check_bool(name, s[name])
    check_choice("output", s["output"], ("float", "uint8"))
    check_choice("precision", s["precision"], ("fp32", "fp16"))
    hi = INT_RANGES["max_batch"][1]
    if s["max_batch"] is not None:
        check_int("max_batch", s["max_batch"], s["min_batch"], hi)
    check_int("opt_batch", s.get("opt_batch", s["min_batch"]), s["min_batch"], s["max_batch"] or hi)
    check_int("size_multiple", s.get("size_multiple", 1))


def spec_from_dict(s: dict[str, Any], source: str) -> ModelSpec:
    """The spec of a graph or engine from its JSON; ModelFormatError naming ``source`` when unreadable or out
    of range."""
    if not isinstance(s, dict):
        raise ModelFormatError(f"{source}: unreadable spade-rt spec (not a JSON object)")
    try:
        check_spec_values(s)
    except KeyError as exc:
        raise ModelFormatError(f"{source}: unreadable spade-rt spec (missing field {exc})") from None
    except ConfigError as exc:
        raise ModelFormatError(f"{source}: spade-rt spec refused: {exc}") from None
    try:
        labels = LabelSpec(s["label_nc"], s["contain_dontcare_label"], s["use_instance"], s["height"], s["width"])
        return ModelSpec(
            preset=s["preset"],
            labels=labels,
            use_vae=s["use_vae"],
            z_dim=s["z_dim"],
            output=s["output"],
            min_batch=s["min_batch"],
            max_batch=s["max_batch"],
            precision=s["precision"],
            dynamic_size=s["dynamic_size"],
            opt_batch=s.get("opt_batch", s["min_batch"]),
            size_multiple=s.get("size_multiple", 1),
            extra=dict(s),
        )
    except (KeyError, TypeError) as exc:
        raise ModelFormatError(f"{source}: unreadable spade-rt spec (missing or bad field {exc})") from None


def spec_from_onnx_metadata(meta: dict[str, str], source: str) -> ModelSpec:
    """The spec `spade-rt export` wrote into a graph's metadata."""
    if SPEC_KEY not in meta:
        raise ModelFormatError(
            f"{source} has no spade-rt metadata: export it with `spade-rt export MODEL -o {Path(source).name}`"
        )
    try:
        raw = json.loads(meta[SPEC_KEY])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{source}: unreadable spade-rt metadata ({shown(str(exc), 120)})") from None
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{source}: unreadable spade-rt metadata (not a JSON object)")
    return spec_from_dict(raw, source)


def report_path(onnx_path: str | Path) -> Path:
    """`spade-rt export`'s JSON report beside a graph: costs, options, verification."""
    return Path(f"{onnx_path}.json")


def manifest_path(engine_path: str | Path) -> Path:
    """`spade-rt build`'s JSON manifest beside an engine: IO, builder, GPU targets, hashes, spec."""
    return Path(f"{engine_path}.json")
