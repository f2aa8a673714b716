"""``spade-rt export``: native model -> verified ONNX graph + JSON report, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import onnx

from spade_rt import __version__
from spade_rt.errors import ExportError
from spade_rt.export.cuda_ep import cuda_ep_gaps
from spade_rt.export.folding import fold_generator
from spade_rt.export.graph_stats import graph_macs, op_counts
from spade_rt.export.onnx_graph import GraphOptions, build_graph
from spade_rt.export.verify import measure_tiers, verify_graph
from spade_rt.io_utils import atomic_path, check_output_file
from spade_rt.model.costs import generator_macs
from spade_rt.model.header import model_config
from spade_rt.model.native_format import build_generator, load_model
from spade_rt.runtime.spec import report_path

log = logging.getLogger(__name__)


def export_model(
    model_path: str | Path,
    output: str | Path,
    options: GraphOptions,
    *,
    verify: bool = True,
    verify_samples: int = 2,
    verify_labels=(),
    announce: bool = True,
    measure_precision_tiers: bool = True,
    tier: str = "exact",
    cache_dir: str | Path | None = None,
) -> dict:
    """Fold, emit, check, verify, then write ``output`` and ``output.json``; nothing is written on failure.

    Both output paths are checked first (not a folder, in a writable place), then every option against the
    model's header, before any weight is read. ``announce=False``: the "wrote" line goes to the debug log
    (for a caller that writes the graph somewhere temporary and announces the final place itself).

    ``tier="int8"``: the verified fp32 graph is quantized (export/quantize.py: calibrated on real maps,
    accuracy-aware) and written only if its picture is within the int8 tier's bound; ``cache_dir``: where the
    quantized graph is cached (default: the user cache)."""
    t0 = time.perf_counter()
    if tier not in ("exact", "int8"):
        raise ExportError(f"tier must be exact or int8 (half is measured on every fp32 graph), got {tier!r}")
    if tier == "int8" and (options.precision != "fp32" or options.output != "float" or not verify):
        raise ExportError("the int8 tier quantizes a verified fp32 graph with float output (no --no-verify)")
    check_output_file(output, "output")
    check_output_file(report_path(Path(output)), "report")
    options.check(model_config(model_path))  # header only: cheap mistakes before the weights are read
    native = load_model(model_path)
    net = build_generator(native)
    folded = fold_generator(net)
    source = {"model": Path(native.path).name, "model_config": native.config.to_dict(), **native.source}
    model = build_graph(folded, options, {"source": source})
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"internal: the emitted graph fails the ONNX checker: {str(exc).splitlines()[0]}") from None
    data = model.SerializeToString()
    t_emit = time.perf_counter() - t0
    hw = options.validate(folded)

    data, verification, tiers, quantized = _verify_and_measure(
        data, native, options, hw, verify=verify, samples=verify_samples, labels=verify_labels,
        measure_precision_tiers=measure_precision_tiers, tier=tier, cache_dir=cache_dir,
    )  # fmt: skip
    report = _report(Path(output).name, model, quantized, data, native, options, hw, verification, tier, tiers, source)
    report["seconds"] = {"emit": round(t_emit, 2)}
    report["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    output = Path(output)
    with atomic_path(output) as tmp_onnx, atomic_path(report_path(output)) as tmp_json:
        tmp_onnx.write_bytes(data)
        tmp_json.write_text(json.dumps(report, indent=2) + "\n")
    (log.info if announce else log.debug)(
        "wrote %s (%.1f MB, %s, %.1f GMACs/image vs %.1f in the original formulation)",
        output,
        len(data) / 1e6,
        options.precision,
        report["gmacs_per_image"],
        report["original_gmacs_per_image"],
    )
    return report


def _verify_and_measure(
    data: bytes, native, options: GraphOptions, hw: tuple[int, int], *, verify: bool, samples: int, labels,
    measure_precision_tiers: bool, tier: str, cache_dir,
) -> tuple[bytes, dict | None, dict | None, object]:
    """The emitted graph checked against the PyTorch network, then its precision tiers measured (or, for the
    int8 tier, quantized). Returns (the graph's bytes: the int8 graph's for that tier, the verification
    record, the tiers record, the quantized ONNX model or None)."""
    verification = tiers = quantized = None
    if verify:
        verified = verify_graph(
            data, native.config, native.generator, options.precision, options.output, hw,
            max_batch=options.batch[2], samples=samples, user_labels=labels,
        )  # fmt: skip
        verification = verified.to_dict()
        if tier == "int8":
            from spade_rt.export.quantize import quantize_int8

            fp32_sha = hashlib.sha256(data).hexdigest()
            data, int8 = quantize_int8(data, verified, native.config, native.generator, hw, cache_dir=cache_dir)
            quantized = onnx.load_from_string(data)  # costs below: the fp32 graph's MACs; its ops: this graph's
            int8["fp32_graph_sha256"] = fp32_sha  # what "verification" below verified, before quantization
            note = "this file is the int8 graph: its own tier only"
            tiers = {"int8": int8, **{t: {"offered": False, "reason": note} for t in ("exact", "half")}}
        elif options.precision == "fp32" and options.output == "float" and measure_precision_tiers:
            tiers = measure_tiers(data, verified, native.config, native.generator, hw)
    else:
        log.warning("verification skipped (--no-verify): the graph was not compared with the PyTorch network")
    return data, verification, tiers, quantized


def _report(name: str, model, quantized, data: bytes, native, options: GraphOptions, hw, verification, tier: str, tiers,
            source: dict) -> dict:  # fmt: skip
    """The report written beside the graph (``X.onnx.json``): hashes, options, costs, ops, verification, tiers."""
    macs = graph_macs(model, batch=1)
    cfg = native.config
    original = generator_macs(cfg.replace(crop_size=hw[1], aspect_ratio=hw[1] / hw[0]) if hw != cfg.output_hw else cfg)
    report = {
        "onnx": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "spade_rt": __version__,
        "onnx_version": onnx.__version__,
        "options": {
            "precision": options.precision,
            "output": options.output,
            "batch": list(options.batch),
            "size": list(hw),
            "dynamic": options.dynamic,
            "opset": options.opset,
            "graph": options.graph,
            "index_pad": options.index_pad,
            "lookup": options.lookup,
        },
        # nodes ONNX Runtime's CUDA provider has no kernel for (each would run on the CPU between two copies
        # and rule out its CUDA graphs); empty: the whole graph runs on the GPU there
        "cuda_ep_gaps": cuda_ep_gaps(model),
        "inputs": {i.name: _shape(i) for i in (quantized or model).graph.input},
        "outputs": {o.name: _shape(o) for o in model.graph.output},
        "gmacs_per_image": round(sum(v for k, v in macs.items() if k != "data_dependent_matmuls") / 1e9, 2),
        "gmacs_by_op": {k: round(v / 1e9, 2) for k, v in macs.items() if k != "data_dependent_matmuls"},
        "data_dependent_matmuls": macs.get("data_dependent_matmuls", 0),
        "original_gmacs_per_image": round(original / 1e9, 2),
        "ops": op_counts(quantized or model),
        "verification": verification,  # an int8 graph: of the fp32 graph it was quantized from
        "tier": tier,
        # precision tiers measured on the verification inputs (export/verify.py: measure_tiers); a backend
        # offers a tier other than exact only when it is recorded here within its bound
        "tiers": tiers,
        "seconds": {},  # filled in by export_model
        "source": source,
    }
    return report


def _shape(value_info) -> dict:
    t = value_info.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in t.shape.dim]
    return {"dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims}
