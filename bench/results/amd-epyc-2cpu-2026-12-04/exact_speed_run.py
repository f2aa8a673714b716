"""Old vs new dedup graph, both CPU runtimes and eager PyTorch, interleaved in one process (issue 25 item 4).

    python bench/results/amd-epyc-2cpu-2026-12-04/exact_speed_run.py coco d128,d32_u0,d16_u0 6 --eager

Variants: ``d<S>`` = dedup graph with ``dedup_min_pixels = S*S`` and ``Unique(sorted=1)`` (``d128``: the graph
main exported before this change); a ``_u0`` suffix = ``Unique(sorted=0)`` (first-occurrence order, the new
default). The model is the bench's realistic coco / ade20k model (``spade_rt.bench.run.model_under_test``),
the maps the bench's 8 real ones; ONNX Runtime and OpenVINO sessions as the backends make them (2 threads,
OpenVINO LATENCY hint, f32). Each repetition calls every contestant once, in turn, on the same map; the
relative L2 of each against eager on one map is printed first.
"""

import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch

import spade_rt.export.onnx_graph as og
from spade_rt.bench.contestants import torch_contestant
from spade_rt.bench.run import BenchSettings, bench_inputs, default_data_dir, model_under_test
from spade_rt.export.exporter import export_model
from spade_rt.export.onnx_graph import GraphOptions
from spade_rt.model.native_format import load_model

preset, variants, reps = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
work = Path(f"/tmp/es/{preset}")
work.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(2)
if (work / "model.safetensors").exists():
    model = work / "model.safetensors"
    cfg = load_model(model).config
else:
    model, cfg, _ = model_under_test(BenchSettings(preset=preset, ngf=64), work)
inputs = bench_inputs(cfg, default_data_dir(), 8)
for v in variants:
    p = work / f"{v}.onnx"
    side = int(v[1:].split("_")[0])
    og.UNIQUE_SORTED = 0 if "_u0" in v else 1
    if not p.exists():  # checked below against eager instead of export's verification (faster)
        options = GraphOptions(graph="dedup", batch=(1, 1, 1), dedup_min_pixels=side * side)
        export_model(model, p, options, verify=False, measure_precision_tiers=False)


def feeds(i):
    ids, edges, _ = inputs[i]
    f = {"labels": ids[None]}
    if edges is not None:
        f["edges"] = edges[None]
    return f


runners = {}
for v in variants:
    p = str(work / f"{v}.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    sess = ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
    runners[f"ort:{v}"] = lambda i, sess=sess: sess.run(None, feeds(i))[0]
    core = ov.Core()
    m = core.read_model(p)
    m.reshape({k: list(a.shape) for k, a in feeds(0).items()})
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "2"}
    req = core.compile_model(m, "CPU", config).create_infer_request()

    def ovrun(i, req=req):
        req.infer(feeds(i))
        return np.array(req.get_output_tensor(0).data, copy=True)

    runners[f"ov:{v}"] = ovrun
if "--eager" in sys.argv:
    tc = torch_contestant("torch", model, None, "cpu")
    runners["eager"] = lambda i: tc.run(inputs[i][0][None], None if inputs[i][1] is None else inputs[i][1][None], None)
outs = {}
for name, r in runners.items():
    for i in range(2):
        outs[name] = r(i)
refo = outs.get("eager", next(iter(outs.values())))
for name, o in outs.items():
    print(f"relL2 {name} {np.linalg.norm(o - refo) / np.linalg.norm(refo):.2e}", flush=True)
times = {k: [] for k in runners}
print("load", Path("/proc/loadavg").read_text().strip(), flush=True)
for rep in range(reps):
    for name, r in runners.items():
        t = time.perf_counter()
        r(rep % 8)
        times[name].append((time.perf_counter() - t) * 1e3)
        print(rep, name, f"{times[name][-1]:.0f}", flush=True)
print("load", Path("/proc/loadavg").read_text().strip(), flush=True)
base = np.median(times["eager"]) if "eager" in times else None
for k, v in times.items():
    ratio = f"  {base / np.median(v):.2f}x" if base else ""
    print(f"{k:20s} p50 {np.median(v):8.1f}  min {np.min(v):8.1f}{ratio}")
