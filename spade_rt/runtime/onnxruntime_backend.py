"""ONNX Runtime backend: CPU everywhere, CUDA / TensorRT execution providers where installed.

Session options are tuned once (all graph optimisations, threads = physical cores, sequential execution);
on GPU providers inputs and outputs go through IO binding so repeated calls reuse device buffers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from spade_rt.errors import BackendUnavailableError, InputError, ModelFormatError
from spade_rt.runtime.backend import Backend, StageTimes
from spade_rt.runtime.spec import EDGES, IMAGE, LABELS, SPEC_KEY, Z, report_path, spec_from_onnx_metadata

log = logging.getLogger(__name__)

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def default_threads() -> int:
    """The CPUs this process may run on (containers often allow fewer than the machine has)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def make_session(model: str | Path | bytes, providers: list[str] | None = None, threads: int | None = None):
    """An InferenceSession with spade-rt's settings; clear errors for missing packages and bad files."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailableError("ONNX Runtime is not installed: pip install onnxruntime") from None
    available = ort.get_available_providers()
    if providers is None:
        providers = [p for p in PROVIDER_ORDER if p in available]
    missing = [p for p in providers if p not in available]
    if missing:
        raise BackendUnavailableError(
            f"ONNX Runtime provider(s) {', '.join(missing)} not available here (have: {', '.join(available)})"
        )
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or default_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    source = "graph" if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes):
        path = Path(model)
        if not path.is_file():
            raise ModelFormatError(f"ONNX file not found: {path}")
        model = str(path)
    try:
        return ort.InferenceSession(model, so, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types, all of them user-facing here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(f"ONNX Runtime cannot load {source}: {first[:300]}") from None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: str | Path, providers: list[str] | None = None, threads: int | None = None) -> None:
        self.session = make_session(model, providers, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = spec_from_onnx_metadata(meta, str(model))
        self.providers = self.session.get_providers()
        self.on_gpu = self.providers[0] != "CPUExecutionProvider"
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.last_times = StageTimes()
        self._binding = self.session.io_binding() if self.on_gpu else None
        log.debug("onnxruntime session on %s", ", ".join(self.providers))

    def _feeds(self, labels, edges, z) -> dict[str, np.ndarray]:
        feeds = {LABELS: labels}
        if EDGES in self.input_names:
            feeds[EDGES] = edges
        if Z in self.input_names:
            feeds[Z] = z
        missing = [k for k, v in feeds.items() if v is None]
        if missing:
            raise InputError(f"the graph needs input(s) {', '.join(missing)}")
        return feeds

    def run(self, labels: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
        feeds = self._feeds(labels, edges, z)
        t0 = time.perf_counter()
        if self._binding is None:
            out = self.session.run([IMAGE], feeds)[0]
            total = (time.perf_counter() - t0) * 1e3
            self.last_times = StageTimes(0.0, total, 0.0, total)
            return out
        binding = self._binding
        binding.clear_binding_inputs()
        for name, arr in feeds.items():
            binding.bind_cpu_input(name, arr)
        binding.bind_output(IMAGE, "cuda")
        t1 = time.perf_counter()
        self.session.run_with_iobinding(binding)
        t2 = time.perf_counter()
        out = binding.copy_outputs_to_cpu()[0]
        t3 = time.perf_counter()
        self.last_times = StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t3 - t0) * 1e3)
        return out

    def close(self) -> None:
        self._binding = None
        self.session = None


def describe_graph(path: str | Path) -> dict:
    """`spade-rt inspect X.onnx`: IO, precision, batch range, and export's report when it is beside the graph."""
    path = Path(path)
    session = make_session(path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta()
    spec = (
        spec_from_onnx_metadata(meta.custom_metadata_map, str(path)) if SPEC_KEY in meta.custom_metadata_map else None
    )
    info = {
        "file": str(path),
        "kind": "ONNX graph",
        "producer": meta.producer_name or "?",
        "preset": spec.preset if spec else "?",
        "precision": spec.precision if spec else "?",
        "output": spec.output if spec else "?",
        "batch_range": f"{spec.min_batch}:{spec.opt_batch}:{spec.max_batch}" if spec else "?",
        "inputs": {i.name: f"{i.type} {i.shape}" for i in session.get_inputs()},
        "outputs": {o.name: f"{o.type} {o.shape}" for o in session.get_outputs()},
        "label_ids": f"0..{spec.labels.num_label_ids - 1}" if spec else "?",
    }
    report = report_path(path)
    if report.is_file():  # export's report: costs and verification
        r = json.loads(report.read_text())
        info["gmacs_per_image"] = f"{r['gmacs_per_image']} (original formulation {r['original_gmacs_per_image']})"
        if r.get("verification"):
            v = r["verification"]
            info["verified"] = f"relative L2 {v['max_rel_l2']:.2e} vs PyTorch (bound {v['bound']:g})"
    return info
