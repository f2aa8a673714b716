"""Where the time goes: per-op-type time of our graphs on ONNX Runtime and OpenVINO (CPU), batch 1.

    python -m spade_rt.bench.profile --preset coco --ngf 64 [--model M] [--calls 3] [-o profile.md]

The model is the bench's (``realistic_model``, or ``--model``); the graphs are exported as the bench exports
them (static and dedup, fp32). ONNX Runtime: its session profiler (``enable_profiling``), node times summed
per op type; OpenVINO: its performance counters (``PERF_COUNT``), real time summed per layer type, for the
exact and half tiers. Each figure is the mean over ``--calls`` calls after one warm-up call on real maps.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from spade_rt.bench.contestants import _graph
from spade_rt.bench.run import BenchSettings, bench_inputs, default_data_dir, load_average, model_under_test


def _ort_profile(path: Path, feeds: list[dict], calls: int) -> tuple[float, dict[str, float]]:
    import onnxruntime as ort

    from spade_rt.runtime.onnxruntime_backend import default_threads

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = default_threads()
    so.enable_profiling = True
    so.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    session.run(None, feeds[0])
    t0 = time.perf_counter()
    for i in range(calls):
        session.run(None, feeds[(i + 1) % len(feeds)])
    wall = (time.perf_counter() - t0) * 1e3 / calls
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"].get("op_name", "?")] += e["dur"] / 1e3
    # the first (warm-up) call is in the profile too: the mean over all profiled calls
    return wall, {k: v / (calls + 1) for k, v in per_op.items()}


def _ov_profile(path: Path, feeds: list[dict], calls: int, precision: str) -> tuple[float, dict[str, float]]:
    import openvino as ov

    from spade_rt.runtime.onnxruntime_backend import default_threads

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({k: list(v.shape) for k, v in feeds[0].items()})
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": str(default_threads()),
        "PERF_COUNT": "YES",
    }
    request = core.compile_model(model, "CPU", config).create_infer_request()
    request.infer(feeds[0])
    per_op: dict[str, float] = defaultdict(float)
    t0 = time.perf_counter()
    for i in range(calls):
        request.infer(feeds[(i + 1) % len(feeds)])
        for p in request.profiling_info:
            per_op[p.node_type] += p.real_time.total_seconds() * 1e3
    wall = (time.perf_counter() - t0) * 1e3 / calls
    return wall, {k: v / calls for k, v in per_op.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="coco")
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--model")
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("-o", "--output", default="profile.md")
    args = ap.parse_args()
    start_load = load_average()
    settings = BenchSettings(preset=args.preset, ngf=args.ngf, model=Path(args.model) if args.model else None)
    lines = []
    with tempfile.TemporaryDirectory(prefix="spade-rt-profile-") as tmp:
        work = Path(tmp)
        model, cfg, _ = model_under_test(settings, work, default_data_dir())
        inputs = bench_inputs(cfg, default_data_dir(), 4)
        feeds = []
        for ids, edges, _z in inputs:
            f = {"labels": ids[None]}
            if edges is not None:
                f["edges"] = edges[None]
            feeds.append(f)
        for graph in ("static", "dedup"):
            path = _graph(model, work, "fp32", 1, graph)
            runs = [("onnxruntime", *_ort_profile(path, feeds, args.calls))]
            for precision in ("f32", "bf16"):
                runs.append((f"openvino {precision}", *_ov_profile(path, feeds, args.calls, precision)))
            for runtime, wall, per_op in runs:
                total = sum(per_op.values())
                top = sorted(per_op.items(), key=lambda kv: -kv[1])[:8]
                lines.append(
                    f"- **{graph} graph, {runtime}**: {wall:.0f} ms per call (ops {total:.0f} ms): "
                    + ", ".join(f"{k} {v:.0f} ms ({100 * v / total:.0f}%)" for k, v in top)
                )
    head = (
        f"Profile, {args.preset} ngf {args.ngf} {cfg.output_hw[0]}x{cfg.output_hw[1]}, batch 1, "
        f"{os.cpu_count()} CPUs, load average start {start_load} end {load_average()}; "
        f"`python -m spade_rt.bench.profile --preset {args.preset} --ngf {args.ngf}`"
    )
    text = "\n".join([head, "", *lines]) + "\n"
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
