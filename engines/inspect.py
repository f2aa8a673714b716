"""`spade-rt inspect X.engine`: what an engine takes and gives, how it was built, and whether it runs here.

Read from the manifest (no GPU, no deserialisation), plus the installed TensorRT and the GPU, if any.
"""

from __future__ import annotations

from pathlib import Path

from spade_rt.engines.manifest import load_manifest, staleness
from spade_rt.errors import BackendUnavailableError
from spade_rt.io_utils import sha256_file


def describe_engine(path: str | Path) -> dict:
    path = Path(path)
    m = load_manifest(path)
    spec = m["spec"]
    info = {
        "file": str(path),
        "kind": "TensorRT engine",
        "preset": m.get("preset", spec.get("preset", "?")),
        "precision": m.get("precision", spec.get("precision", "?")),
        "output": spec.get("output", "?"),
        "inputs": {k: f"{v['dtype']} min {v['min']} opt {v['opt']} max {v['max']}" for k, v in m["inputs"].items()},
        "outputs": {k: v["dtype"] for k, v in m["outputs"].items()},
        "builder": f"{m['builder']['module']} {m['builder']['version']}",
        "gpu_targets": ", ".join(m.get("target_compute_capabilities", [])),
        "built_at": m.get("built_at", "?"),
        "engine_sha256": m.get("engine_sha256", "?"),
        "onnx": onnx_status(path, m),
        "runs_here": runs_here(m),
    }
    return info


def onnx_status(engine: Path, manifest: dict) -> str:
    """The graph the engine was built from, and whether the file of that name beside it is still that graph
    (its sha256 against the manifest's): a graph re-exported after the build is flagged with the fix."""
    recorded = str(manifest.get("onnx_sha256") or "")
    onnx_path = engine.parent / manifest["onnx"]
    built_from = f"{manifest['onnx']} (sha256 {recorded[:16] or '?'}...)"
    if not onnx_path.is_file():
        return f"{built_from}, not beside the engine"
    now = sha256_file(onnx_path)
    if recorded and now != recorded:
        return (
            f"{built_from}; CHANGED since the build: {onnx_path.name} beside it now has sha256 {now[:16]}..., so "
            f"this engine is not that graph: rebuild it with `spade-rt build {onnx_path} -o {engine}`"
        )
    return f"{built_from}, unchanged beside the engine"


def runs_here(manifest: dict) -> str:
    """'yes: GPU (compute capability)' or 'no: why', checking TensorRT, then the GPU."""
    from spade_rt.engines.adapter import TensorRT

    try:
        trt = TensorRT.load(manifest["builder"]["backend"])
    except BackendUnavailableError as exc:
        return f"no: {exc}"
    reason = staleness(manifest, trt, None)
    if reason:
        return f"no: {reason}"
    try:
        from spade_rt.engines.cuda import Cuda

        device = Cuda().info
    except BackendUnavailableError as exc:
        return f"no: {exc}"
    reason = staleness(manifest, trt, device.compute_capability)
    return f"no: {reason}" if reason else f"yes: {device.name} (compute capability {device.compute_capability})"
