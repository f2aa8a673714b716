"""The JSON manifest beside every engine (``X.engine.json``) and what it decides before the GPU is touched.

Written by ``engines.build`` in the same atomic step as the engine. It records the engine's IO (dtypes and
profile shapes), the spec copied from the graph (``spade_rt.runtime.spec``), the builder module and version,
the GPU targets, and the sha256 of the engine and of the graph it came from. ``staleness`` answers "can this
engine run here?" from the manifest alone (plus the GPU's compute capability), so a stale engine is
reported with the command that fixes it instead of a deserialisation error.
"""

from __future__ import annotations

import json
from pathlib import Path

from spade_rt.engines.adapter import RTX_DEFAULT_TARGETS, TensorRT
from spade_rt.errors import ModelFormatError
from spade_rt.runtime.spec import MANIFEST_FORMAT, ModelSpec, manifest_path, spec_from_dict

__all__ = ["MANIFEST_FORMAT", "load_manifest", "manifest_path", "spec_from_manifest", "staleness"]


def load_manifest(engine: Path) -> dict:
    """The manifest of ``engine``; ModelFormatError when the engine or its manifest is missing or unreadable."""
    path = manifest_path(engine)
    if not engine.is_file():
        raise ModelFormatError(f"engine not found: {engine}")
    if not path.is_file():
        raise ModelFormatError(
            f"{engine} has no manifest ({path.name}): build engines with `spade-rt build MODEL.onnx -o {engine.name}`"
        )
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise TypeError("not a JSON object")
        for key in ("spec", "builder", "inputs", "outputs", "onnx"):
            manifest[key]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path} is not a spade-rt engine manifest ({exc})") from None
    return manifest


def spec_from_manifest(manifest: dict, source: str = "engine manifest") -> ModelSpec:
    return spec_from_dict(manifest["spec"], source)


def staleness(manifest: dict, trt: TensorRT, device_cc: str | None) -> str | None:
    """Why this engine cannot run here, or None. Pure: no GPU needed except for the compute capability."""
    built = manifest["builder"]
    if built["module"] != trt.module_name or built["version"] != trt.version:
        here = f"{trt.module_name} {trt.version}"
        return f"it was built with {built['module']} {built['version']}, this machine has {here}"
    if device_cc is not None:
        targets = manifest.get("target_compute_capabilities", [])
        if trt.is_rtx:
            later = "later" in targets and float(device_cc) >= float(RTX_DEFAULT_TARGETS[-1])
            if device_cc not in targets and not later:
                return f"it targets compute capability {', '.join(targets)}, this GPU is {device_cc}"
        elif manifest.get("device_compute_capability") not in (None, device_cc):
            return f"it was built on a {manifest['device_compute_capability']} GPU, this one is {device_cc}"
    return None
