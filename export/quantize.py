"""The int8 tier: post-training quantization of a verified fp32 graph into a QDQ ONNX graph, judged by its picture.

NNCF (``pip install 'spade-rt[int8]'``) quantizes the graph's convolutions (weights per channel, activations per
tensor; ONNX Runtime and OpenVINO both run the QuantizeLinear/DequantizeLinear pairs as int8 kernels),
calibrated on the shipped real maps (COCO-Stuff train maps; random region maps for other label sets). It is
accuracy-aware: the graph is judged by the worst-map PSNR of its 8-bit picture against the PyTorch network's fp32
picture on the judging maps (the val maps), and while it misses the int8 bound export keeps a growing tail of
the network in fp32 and judges again, within a bounded number of tries (``KEEP_TAIL``; NNCF's own accuracy
control, ``nncf.quantize_with_accuracy_control``, ranks every quantized layer one at a time: over 5 minutes on
a 4-channel test model on the shared 2-core machine, hours for the full-size network). Which layers stay in
fp32, and every try, are recorded in the report. A graph that cannot reach the bound is refused: nothing is
written.

The result is cached in the user cache (``<cache>/built/int8/<key>.onnx``, key: the fp32 graph's sha256 and the
settings below), so exporting the same model again skips the quantization (not the judging).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from spade_rt.errors import BackendUnavailableError, ExportError
from spade_rt.export.verify import VerifyCase, VerifyReport, figures, run_cases, tier_entry, tier_maps
from spade_rt.model.config import GeneratorConfig
from spade_rt.runtime.spec import EDGES, LABELS, SPEC_KEY, Z
from spade_rt.runtime.tiers import PSNR_CAP_DB, TIERS

log = logging.getLogger(__name__)

INT8_INSTALL = "pip install 'spade-rt[int8]'"
METRIC_CAP_DB = 60.0  # the accuracy control's metric: worst-map PSNR, capped (the fp32 graph's own is infinite)
MARGIN_DB = 0.5  # aim above the bound on the judging maps, so other maps keep it too
# the tries of the accuracy-aware loop: the fraction of the network's layers, counted from the picture's end,
# kept in fp32 (0: every layer quantized; then the output conv alone; then a quarter; then half)
KEEP_TAIL = (0.0, 1e-9, 0.25, 0.5)
QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _nncf():
    try:
        import nncf
    except ImportError:
        raise BackendUnavailableError(f"the int8 tier needs NNCF: {INT8_INSTALL}") from None
    return nncf


def feeds(model: onnx.ModelProto, cases: list[VerifyCase]) -> list[dict[str, np.ndarray]]:
    names = {i.name for i in model.graph.input}
    out = []
    for c in cases:
        f = {LABELS: c.ids[None]}
        if EDGES in names:
            f[EDGES] = c.edges[None]
        if Z in names:
            f[Z] = c.z[None]
        out.append(f)
    return out


def kept_in_fp32(model: onnx.ModelProto) -> list[str]:
    """The graph's convolutions (and matmuls) whose weights are not dequantized from int8: kept in fp32."""
    produced_by = {o: n for n in model.graph.node for o in n.output}
    kept = []
    for n in model.graph.node:
        if n.op_type in QUANTIZED_OPS and len(n.input) > 1:
            src = produced_by.get(n.input[1])
            if src is None or src.op_type != "DequantizeLinear":
                kept.append(n.name)
    return kept


def mark_int8(model: onnx.ModelProto) -> None:
    """The spec in the graph's metadata says ``tier: int8`` (``spade_rt.runtime.tiers.graph_tier`` reads it)."""
    for prop in model.metadata_props:
        if prop.key == SPEC_KEY:
            spec = json.loads(prop.value)
            spec["tier"] = "int8"
            prop.value = json.dumps(spec)
            return
    raise ExportError("internal: the graph has no spade-rt spec to mark as int8")


def _ort_session(data: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _psnrs(session, batch: list[dict], reference: np.ndarray) -> list[float]:
    from spade_rt.runtime.tiers import picture_figures

    got = np.concatenate([session.run(None, f)[0] for f in batch])
    return picture_figures(got, reference)["per_map_psnr_db"]


def quantize_int8(
    model_bytes: bytes,
    report: VerifyReport,
    config: GeneratorConfig,
    state: dict,
    hw: tuple[int, int],
    *,
    cache_dir: Path | None = None,
    bound: float | None = None,
) -> tuple[bytes, dict]:
    """The int8 QDQ graph of a verified fp32 graph and the int8 tier's record; ExportError if it misses the bound.

    ``bound``: the int8 tier's (``spade_rt.runtime.tiers``) unless given (tests)."""
    nncf = _nncf()
    bound = TIERS["int8"].bound if bound is None else bound
    t0 = time.perf_counter()
    judge, reference, judged_on = tier_maps(config, state, hw, report, "val")
    calib, _, calibrated_on = tier_maps(config, state, hw, report, "train")
    fp32 = onnx.load_from_string(model_bytes)
    settings = {
        "quantizer": f"nncf {nncf.__version__}",
        "preset": "mixed",
        "calibration": f"{len(calib)} {calibrated_on}",
        "judged_on": f"{len(judge)} {judged_on}",
        "bound_db": bound,
        "margin_db": MARGIN_DB,
        "keep_tail_tries": list(KEEP_TAIL),
    }
    key = hashlib.sha256(model_bytes + json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]
    cached = _cache_folder(cache_dir) / f"{key}.onnx"
    how, tries = "cached", []
    if cached.is_file():
        quantized = onnx.load(str(cached))
        log.info("int8: the quantized graph from the cache (%s)", cached)
    else:
        quantized, how, tries = _quantize(nncf, fp32, feeds(fp32, calib), feeds(fp32, judge), reference, bound)
        mark_int8(quantized)
        from spade_rt.io_utils import atomic_path

        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:
            tmp.write_bytes(quantized.SerializeToString())
    data = quantized.SerializeToString()
    entry = judge_int8(data, judge, reference, judged_on)
    entry.update(
        quantization={**settings, "how": how, "tries": tries, "seconds": round(time.perf_counter() - t0, 1)},
        kept_in_fp32=kept_in_fp32(quantized),
        quantized_layers=sum(1 for n in quantized.graph.node if n.op_type in QUANTIZED_OPS)
        - len(kept_in_fp32(quantized)),
    )
    if not (entry["measured"] and entry["psnr_db"] >= bound):
        worst = entry.get("psnr_db", float("nan"))
        tried = ", ".join(f"{t['kept_in_fp32']}/{t['of']} kept {t['worst_psnr_db']:.1f} dB" for t in tries)
        raise ExportError(
            f"the int8 tier misses its bound: worst-map PSNR {worst:.1f} dB < {bound:g} dB on {len(judge)} "
            f"{judged_on}, with {len(entry['kept_in_fp32'])} layer(s) kept in fp32 (tried: {tried or 'cached'}); "
            "nothing was written"
        )
    log.info(
        "int8: worst-map PSNR %.1f dB (bound %g dB), max %d level(s) off, %d layer(s) kept in fp32",
        entry["psnr_db"],
        bound,
        entry["max_levels"],
        len(entry["kept_in_fp32"]),
    )
    return data, entry


def _cache_folder(cache_dir: Path | None) -> Path:
    from spade_rt.cache import built_dir

    return built_dir(cache_dir) / "int8"


def _quantize(nncf, fp32: onnx.ModelProto, calib: list, judge: list, reference: np.ndarray, bound: float):
    """Accuracy-aware post-training quantization, within a bounded number of tries: every convolution first;
    while the picture misses the bound (+ margin) keep a growing tail of the network in fp32 (``KEEP_TAIL``:
    the convolutions nearest the picture, in graph order: the high-resolution blocks and the output conv, where
    an error reaches the picture least attenuated). Returns (graph, how, the tries); the last try's graph when
    none reached the bound (the caller refuses it)."""
    convs = [n.name for n in fp32.graph.node if n.op_type in QUANTIZED_OPS]
    dataset = nncf.Dataset(calib)
    tries, best = [], None
    for fraction in KEEP_TAIL:
        keep = convs[len(convs) - max(1 if fraction else 0, round(fraction * len(convs))) :] if fraction else []
        scope = nncf.IgnoredScope(names=keep, validate=False) if keep else None
        quantized = nncf.quantize(
            fp32, dataset, subset_size=len(calib), preset=nncf.QuantizationPreset.MIXED, ignored_scope=scope
        )
        worst = min(_psnrs(_ort_session(quantized.SerializeToString()), judge, reference))
        tries.append({"kept_in_fp32": len(keep), "of": len(convs), "worst_psnr_db": round(worst, 2)})
        log.info("int8: %d of %d layers kept in fp32: worst-map PSNR %.1f dB", len(keep), len(convs), worst)
        best = quantized
        if worst >= bound + MARGIN_DB:
            break
    how = "post-training quantization, every layer" if len(tries) == 1 else "accuracy-aware: fp32 tail kept"
    return best, how, tries


def judge_int8(data: bytes, cases: list[VerifyCase], reference: np.ndarray, maps_from: str) -> dict:
    """The int8 graph on ONNX Runtime and on OpenVINO (where installed) against the fp32 picture."""
    measured = {}
    session = _ort_session(data)
    names = {i.name for i in session.get_inputs()}

    class _Ort:
        def run(self, ids, edges, z):
            f = {LABELS: ids}
            if EDGES in names:
                f[EDGES] = edges
            if Z in names:
                f[Z] = z
            return session.run(None, f)[0]

    measured["onnxruntime CPUExecutionProvider"] = figures(run_cases(_Ort(), cases), reference)
    try:
        import openvino  # noqa: F401
    except ImportError:
        pass
    else:
        from spade_rt.runtime.openvino_backend import OpenVinoBackend

        with tempfile.TemporaryDirectory(prefix="spade-rt-int8-") as tmp:
            path = Path(tmp) / "graph.onnx"
            path.write_bytes(data)
            backend = OpenVinoBackend(path, "CPU", "int8", cache=False, require_measured=False)
            try:
                measured[f"openvino CPU int8 ({backend.config['INFERENCE_PRECISION_HINT']} elsewhere)"] = figures(
                    run_cases(backend, cases), reference
                )
            finally:
                backend.close()
    entry = tier_entry("int8", measured, len(cases), maps_from)
    entry["psnr_db"] = min(entry["psnr_db"], PSNR_CAP_DB)
    return entry
