"""The JSON manifest beside every engine (``X.engine.json``) and what it decides before the GPU is touched.

Written by ``engines.build`` in the same atomic step as the engine. It records the engine's IO (dtypes and
profile shapes), the spec copied from the graph (``spade_rt.runtime.spec``), the builder module and version,
the GPU targets, and the sha256 of the engine and of the graph it came from. ``staleness`` answers "can this
engine run here?" from the manifest alone (plus the GPU's compute capability), so a stale engine is
reported with the command that fixes it instead of a deserialisation error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from spade_rt.engines.adapter import RTX_DEFAULT_TARGETS, TensorRT
from spade_rt.errors import EngineTrustError, ModelFormatError
from spade_rt.limits import INT_RANGES, MAX_HEADER_BYTES, shown
from spade_rt.runtime.spec import EDGES, IMAGE, LABELS, MANIFEST_FORMAT, ModelSpec, Z, manifest_path, spec_from_dict

__all__ = [
    "MANIFEST_FORMAT",
    "check_manifest",
    "load_manifest",
    "manifest_path",
    "read_checked_engine",
    "spec_from_manifest",
    "staleness",
]

log = logging.getLogger(__name__)
IO_DTYPES = ("uint8", "int32", "int64", "float16", "float32")  # what a manifest's inputs and output may be


def load_manifest(engine: Path) -> dict:
    """The manifest of ``engine``; ModelFormatError when the engine or its manifest is missing or unreadable."""
    path = manifest_path(engine)
    if not engine.is_file():
        raise ModelFormatError(f"engine not found: {engine}")
    if not path.is_file():
        raise ModelFormatError(
            f"{engine} has no manifest ({path.name}): build engines with `spade-rt build MODEL.onnx -o {engine.name}`"
        )
    size = path.stat().st_size
    if size > MAX_HEADER_BYTES:
        raise ModelFormatError(f"{path} is {size} bytes: an engine manifest is at most {MAX_HEADER_BYTES} bytes")
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise TypeError("not a JSON object")
        for key in ("spec", "builder", "inputs", "outputs", "onnx"):
            manifest[key]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{path} is not a spade-rt engine manifest ({shown(str(exc), 120)})") from None
    check_manifest(manifest, path)
    return manifest


def check_manifest(manifest: dict, path: Path) -> ModelSpec:
    """Every field the runtime reads, typed and bounded (the spec's ranges, IO shapes within the spec),
    before the engine is hashed, deserialised or any buffer allocated. ModelFormatError naming the field."""
    spec = spec_from_dict(manifest["spec"], str(path))
    builder, onnx_name = manifest["builder"], manifest["onnx"]
    fields = ("module", "version", "backend")
    if not isinstance(builder, dict) or not all(isinstance(builder.get(k), str) for k in fields):
        raise ModelFormatError(f"{path}: builder must name its module, version and backend, got {shown(builder)}")
    if not isinstance(onnx_name, str) or Path(onnx_name).name != onnx_name or onnx_name in ("", ".", ".."):
        raise ModelFormatError(f"{path}: onnx must be a file name beside the engine, got {shown(onnx_name)}")
    targets = manifest.get("target_compute_capabilities", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ModelFormatError(f"{path}: target_compute_capabilities must be a list of strings, got {shown(targets)}")
    inputs, outputs = manifest["inputs"], manifest["outputs"]
    if not isinstance(inputs, dict) or LABELS not in inputs or not set(inputs) <= {LABELS, EDGES, Z}:
        raise ModelFormatError(f"{path}: inputs must be {LABELS} [, {EDGES}, {Z}], got {shown(inputs)}")
    if not isinstance(outputs, dict) or set(outputs) != {IMAGE}:
        raise ModelFormatError(f"{path}: outputs must be {IMAGE}, got {shown(outputs)}")
    scale = 2 if spec.dynamic_size else 1
    batch = spec.max_batch or INT_RANGES["max_batch"][1]
    for name, io in (*inputs.items(), *outputs.items()):
        if not isinstance(io, dict) or io.get("dtype") not in IO_DTYPES:
            got = io.get("dtype") if isinstance(io, dict) else io
            raise ModelFormatError(f"{path}: {name} dtype {shown(got)} is not one of {', '.join(IO_DTYPES)}")
        if name == IMAGE:
            continue
        highest = (batch, spec.z_dim) if name == Z else (batch, scale * spec.labels.height, scale * spec.labels.width)
        shapes = [io.get(k) for k in ("min", "opt", "max")]
        ok = all(
            isinstance(s, list)
            and len(s) == len(highest)
            and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= h for d, h in zip(s, highest))
            for s in shapes
        )
        if not ok:
            raise ModelFormatError(
                f"{path}: input {name} profile min {shown(shapes[0], 30)} opt {shown(shapes[1], 30)} max "
                f"{shown(shapes[2], 30)} is outside its spec: each must be {len(highest)} sizes of at most "
                f"{list(highest)}"
            )
    return spec


def read_checked_engine(engine: Path, manifest: dict, trust: bool = False) -> bytes:
    """The engine's bytes, read once, after their size and sha256 were checked against its manifest.

    An engine carries code TensorRT runs; one that is not the file `spade-rt build` wrote is refused
    (EngineTrustError) unless ``trust`` (``--trust-engine``), which logs a warning instead. The bytes returned
    are the bytes hashed, so nothing can swap the file between the check and deserialisation.
    """
    recorded = manifest.get("engine_sha256")
    size = engine.stat().st_size
    data = b""
    if manifest.get("engine_bytes") not in (None, size):
        why = f"it is {size} bytes, its manifest records {shown(manifest.get('engine_bytes'))}"
    elif not isinstance(recorded, str) or len(recorded) != 64:
        why = "its manifest records no engine_sha256"
    else:
        data = engine.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest == recorded.lower():
            return data
        why = f"its sha256 is {digest[:16]}..., its manifest records {recorded[:16]}..."
    if trust:
        log.warning("%s does not match its manifest (%s): loading it anyway (trust_engine)", engine.name, why)
        return data or engine.read_bytes()
    raise EngineTrustError(
        f"{engine} is not the engine its manifest describes ({why}): refused, engines can carry code; rebuild it "
        f"with `spade-rt build {engine.parent / str(manifest['onnx'])} -o {engine}`, or pass --trust-engine "
        "(trust_engine=True) if you trust this file"
    )


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
        if trt.is_rtx and not trt.supports_gpu(device_cc):  # no TensorRT-RTX build can run on it
            return (
                f"TensorRT-RTX does not support this GPU (compute capability {device_cc}; it runs on Turing 7.5, "
                "Ampere 8.0/8.6, Ada 8.9 and Blackwell RTX 12.x GPUs, not on Hopper, data-centre Blackwell or Jetson)"
            )
        if trt.is_rtx:
            later = "later" in targets and float(device_cc) >= float(RTX_DEFAULT_TARGETS[-1])
            if device_cc not in targets and not later:
                return f"it targets compute capability {', '.join(targets)}, this GPU is {device_cc}"
        elif manifest.get("device_compute_capability") not in (None, device_cc):
            return f"it was built on a {manifest['device_compute_capability']} GPU, this one is {device_cc}"
    return None
