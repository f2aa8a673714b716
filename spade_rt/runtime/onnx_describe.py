"""`spade-rt inspect` / `info` of an ONNX graph, for both ONNX backends (their registry entries' ``describe``).

torch-free and onnxruntime-free: the producer, metadata and IO come from the file's own protobuf fields
(``spade_rt.runtime.onnx_meta.read_onnx_header``), costs and the tiers' figures from export's report beside
the graph, so `inspect` works on an OpenVINO-only install.
"""

from __future__ import annotations

import json
from pathlib import Path

from spade_rt.runtime.onnx_meta import read_onnx_header
from spade_rt.runtime.registry import auto_backend
from spade_rt.runtime.spec import SPEC_KEY, report_path, spec_from_onnx_metadata
from spade_rt.runtime.tiers import describe_entry


def describe_graph(path: str | Path) -> dict:
    """`spade-rt inspect X.onnx`: IO, precision, batch range, and export's report when it is beside the graph."""
    path = Path(path)
    header = read_onnx_header(path)  # the file's own fields, as ONNX Runtime's session reports them
    custom, producer, inputs, outputs = header.metadata, header.producer, header.inputs, header.outputs
    spec = spec_from_onnx_metadata(custom, str(path)) if SPEC_KEY in custom else None
    info = {
        "file": str(path),
        "kind": "ONNX graph",
        "producer": producer or "?",
        "preset": spec.preset if spec else "?",
        "precision": spec.precision if spec else "?",
        "output": spec.output if spec else "?",
        "batch_range": f"{spec.min_batch}:{spec.opt_batch}:{spec.max_batch}" if spec else "?",
        "inputs": {name: f"{kind} {shape}" for name, kind, shape in inputs},
        "outputs": {name: f"{kind} {shape}" for name, kind, shape in outputs},
        "label_ids": f"0..{spec.labels.num_label_ids - 1}" if spec else "?",
    }
    info.update(describe_report(report_path(path)))
    info["auto_backend_here"] = auto_backend("onnx", path).name  # the registry's fixed rule (AUTO_ONNX_CPU)
    return info


def describe_report(report: Path) -> dict:
    """Costs and verification from export's report beside a graph; nothing when it is absent or unreadable
    (the report is a convenience written by `spade-rt export`, never needed to run the graph)."""
    try:
        r = json.loads(report.read_text()) if report.is_file() and report.stat().st_size < 1 << 20 else None
    except (OSError, ValueError):
        r = None
    if not isinstance(r, dict):
        return {}
    info = {}
    if "gmacs_per_image" in r:
        info["gmacs_per_image"] = f"{r['gmacs_per_image']} (original formulation {r.get('original_gmacs_per_image')})"
    v = r.get("verification")
    if isinstance(v, dict):
        try:
            if v.get("output") == "uint8":  # the bound is in uint8 levels: report the figure in levels too
                info["verified"] = f"max {int(v['max_abs_levels'])} uint8 level(s) vs PyTorch (bound {v['bound']:g})"
            else:
                info["verified"] = f"relative L2 {float(v['max_rel_l2']):.2e} vs PyTorch (bound {v['bound']:g})"
        except (KeyError, TypeError, ValueError):
            pass
    tiers = r.get("tiers")
    if isinstance(tiers, dict):
        for name, t in tiers.items():
            if not isinstance(t, dict):
                continue
            try:
                info[f"tier {name}"] = describe_entry(name, t)
                where = ", ".join(f"{k} {_figure(v)}" for k, v in t.get("measured", {}).items())
                info[f"tier {name} measured"] = where or "nothing"
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
    return info


def _figure(v) -> str:
    """A measurement of export's tier record: a relative L2, or {psnr_db, max_levels, ...} of a picture."""
    if isinstance(v, dict):
        return f"{float(v['psnr_db']):.1f} dB, max {int(v['max_levels'])} level(s)"
    return f"{float(v):.1e}"
