"""`spade-rt inspect X.engine`: what an engine takes and gives, how it was built, and whether it runs here.

Read from the manifest (no GPU, no deserialisation), plus the installed TensorRT and the GPU, if any.
"""

from __future__ import annotations

from pathlib import Path

from spade_rt.engines.manifest import load_manifest, staleness
from spade_rt.errors import BackendUnavailableError


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
        "onnx": f"{m['onnx']} (sha256 {m.get('onnx_sha256', '?')[:16]}...)",
        "runs_here": runs_here(m),
    }
    return info


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
