"""`spade-rt inspect`: what an engine or ONNX graph takes and gives, how it was built, whether it runs here.

torch-free: engines are described from their manifest (plus the installed TensorRT and GPU, if any);
graphs through ONNX Runtime's session metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

from spade_rt.errors import BackendUnavailableError, ModelFormatError
from spade_rt.runtime.synthesizer import model_kind


def inspect_model(path: str | Path) -> dict:
    kind = model_kind(path)
    if kind == "engine":
        return inspect_engine(Path(path))
    if kind == "onnx":
        return inspect_onnx(Path(path))
    raise ModelFormatError(f"{path} is a spade-rt model: use `spade-rt info {path}`")


def inspect_engine(path: Path) -> dict:
    from spade_rt.runtime.tensorrt_backend import load_manifest, staleness

    m = load_manifest(path)
    spec = m["spec"]
    info = {
        "file": str(path),
        "kind": "TensorRT engine",
        "preset": m["preset"],
        "precision": m["precision"],
        "output": spec["output"],
        "inputs": {k: f"{v['dtype']} min {v['min']} opt {v['opt']} max {v['max']}" for k, v in m["inputs"].items()},
        "outputs": {k: v["dtype"] for k, v in m["outputs"].items()},
        "builder": f"{m['builder']['module']} {m['builder']['version']}",
        "gpu_targets": ", ".join(m["target_compute_capabilities"]),
        "built_at": m.get("built_at", "?"),
        "engine_sha256": m.get("engine_sha256", "?"),
        "onnx": f"{m['onnx']} (sha256 {m['onnx_sha256'][:16]}...)",
    }
    info["runs_here"] = _runs_here(m, staleness)
    return info


def _runs_here(manifest: dict, staleness) -> str:
    from spade_rt.runtime.trt_adapter import TensorRT

    try:
        trt = TensorRT.load(manifest["builder"]["backend"])
    except BackendUnavailableError as exc:
        return f"no: {exc}"
    reason = staleness(manifest, trt, None)
    if reason:
        return f"no: {reason}"
    try:
        from spade_rt.runtime.cuda import Cuda

        device = Cuda().info
    except BackendUnavailableError as exc:
        return f"no: {exc}"
    reason = staleness(manifest, trt, device.compute_capability)
    return f"no: {reason}" if reason else f"yes: {device.name} (compute capability {device.compute_capability})"


def inspect_onnx(path: Path) -> dict:
    from spade_rt.runtime.onnxruntime_backend import SPEC_KEY, make_session

    session = make_session(path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta()
    spec = json.loads(meta.custom_metadata_map.get(SPEC_KEY, "{}"))
    info = {
        "file": str(path),
        "kind": "ONNX graph",
        "producer": meta.producer_name or "?",
        "preset": spec.get("preset", "?"),
        "precision": spec.get("precision", "?"),
        "output": spec.get("output", "?"),
        "batch_range": f"{spec.get('min_batch')}:{spec.get('opt_batch')}:{spec.get('max_batch')}",
        "inputs": {i.name: f"{i.type} {i.shape}" for i in session.get_inputs()},
        "outputs": {o.name: f"{o.type} {o.shape}" for o in session.get_outputs()},
        "label_ids": f"0..{spec['label_nc'] - (0 if spec.get('contain_dontcare_label') else 1)}" if spec else "?",
    }
    report = Path(f"{path}.json")
    if report.is_file():  # export's report: costs and verification
        r = json.loads(report.read_text())
        info["gmacs_per_image"] = f"{r['gmacs_per_image']} (original formulation {r['original_gmacs_per_image']})"
        if r.get("verification"):
            v = r["verification"]
            info["verified"] = f"relative L2 {v['max_rel_l2']:.2e} vs PyTorch (bound {v['bound']:g})"
    return info
