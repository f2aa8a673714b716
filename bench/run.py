"""`spade-rt bench`: every contestant on the same machine, the same weights and the same real label maps,
timed side by side in one run. See backends.py for what each contestant is and harness.py for the method."""

from __future__ import annotations

import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from spade_rt import __version__
from spade_rt.bench.backends import (
    Contestant,
    UnavailableError,
    onnxruntime_contestant,
    tensorrt_contestant,
    torch_contestant,
)
from spade_rt.bench.harness import interleaved, psnr_db, rel_l2
from spade_rt.bench.memory import peak_memory_mb
from spade_rt.bench.report import default_stem, markdown_table, write_results
from spade_rt.errors import ConfigError, InputError
from spade_rt.labels import LabelSpec, load_inputs
from spade_rt.training.config import GeneratorConfig
from spade_rt.training.model_io import NativeModel, load_model, save_model
from spade_rt.training.networks import SPADEGenerator

log = logging.getLogger(__name__)

ALL_BACKENDS = ("torch", "torch-fp16", "torch-compile", "onnxruntime", "onnxruntime-dedup", "tensorrt")
BASELINE = "torch"


# ---- the model under test ---------------------------------------------------------------------------------
@torch.no_grad()
def trained_looking_model(cfg: GeneratorConfig, path: Path, seed: int = 0) -> Path:
    """Random weights with the statistics of a trained net (BN running stats, biases, converged u/v).

    Timing does not depend on the weights; accuracy between formulations is measured on the same weights.
    """
    torch.manual_seed(seed)
    net = SPADEGenerator(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
        if hasattr(m, "weight_orig"):
            w = m.weight_orig.flatten(1)
            u = torch.nn.functional.normalize(torch.randn(w.shape[0], generator=g), dim=0)
            for _ in range(3):
                v = torch.nn.functional.normalize(w.t() @ u, dim=0)
                u = torch.nn.functional.normalize(w @ v, dim=0)
            m.weight_u.copy_(u)
            m.weight_v.copy_(v)
    save_model(
        path, NativeModel(cfg, net.state_dict(), None, {"kind": "random, trained-looking (bench)", "seed": seed})
    )
    return path


# ---- inputs -----------------------------------------------------------------------------------------------
def real_inputs(spec: LabelSpec, data_dir: Path, count: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """COCO-Stuff sample maps at the model's size; ids folded into the model's range for other label sets."""
    labels = sorted((data_dir / "val_label").glob("*.png"))
    if not labels:
        raise InputError(f"no label maps in {data_dir / 'val_label'} (pass --data DIR with the COCO-Stuff sample)")
    out = []
    for i in range(count):
        label = labels[i % len(labels)]
        inst = data_dir / "val_inst" / label.name
        coco_spec = LabelSpec(182, True, spec.use_instance, spec.height, spec.width)
        ids, edges = load_inputs(coco_spec, label, inst if inst.is_file() and spec.use_instance else None)
        ids = (ids.astype(np.int32) % spec.num_label_ids).astype(spec.id_dtype)  # coco ids -> this label set
        out.append((ids, edges))
    return out


# ---- machine -----------------------------------------------------------------------------------------------
def machine_info(device: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(),
        "device": device,
        "device_name": cpu if device == "cpu" else torch.cuda.get_device_name(0),
    }
    versions = {
        "python": platform.python_version(),
        "spade_rt": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    for mod in ("onnxruntime", "onnx", "tensorrt", "tensorrt_rtx"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # absent or a stub: not part of this run
            continue
    info["versions"] = versions
    return info


def machine_slug(info: dict) -> str:
    name = info["device_name"].lower()
    for junk in ("(r)", "(tm)", "processor", "cpu", "nvidia", "@"):
        name = name.replace(junk, " ")
    words = [w for w in name.replace("-", " ").split() if w.isalnum()][:3]
    suffix = f"{info['cpus']}cpu" if info["device"] == "cpu" else "gpu"
    return "-".join([*words, suffix])


# ---- the run -----------------------------------------------------------------------------------------------
def prepare_artifact(name: str, model_path: Path, work: Path, device: str, batch_max: int) -> Path | None:
    """Export / build what a contestant loads (not timed, not counted in its memory); UnavailableError if it can't."""
    from spade_rt.export.exporter import export_model
    from spade_rt.export.onnx_graph import GraphOptions

    def graph(precision: str, kind: str = "static") -> Path:
        path = work / f"graph_{kind}_{precision}.onnx"
        if not path.is_file():
            export_model(model_path, path, GraphOptions(precision=precision, batch=(1, 1, batch_max), graph=kind))
        return path

    if name.startswith("torch"):
        return None
    if name == "onnxruntime":
        return graph("fp16" if device == "cuda" else "fp32")
    if name == "onnxruntime-dedup":
        if device == "cuda":
            raise UnavailableError("the dedup graph is a CPU graph (its Unique ops run on the host)")
        return graph("fp32", "dedup")
    if name == "tensorrt":
        if device != "cuda":
            raise UnavailableError("needs an NVIDIA GPU (this run is on the CPU)")
        from spade_rt.export.trt_build import build_engine

        engine = work / "graph_fp16.engine"
        try:
            build_engine(graph("fp16"), engine, progress=False)
        except Exception as exc:
            raise UnavailableError(f"engine build failed: {str(exc).splitlines()[0][:300]}") from None
        return engine
    raise ConfigError(f"unknown backend {name!r}: expected some of {', '.join(ALL_BACKENDS)}")


def load_contestant(name: str, model_path: Path, artifact: Path | None, device: str) -> Contestant:
    if name.startswith("torch"):
        return torch_contestant(name, model_path, device)
    if name.startswith("onnxruntime"):
        return onnxruntime_contestant(artifact, device, name)
    return tensorrt_contestant(artifact, None)


def run_bench(
    preset: str = "ade20k",
    ngf: int = 64,
    size: tuple[int, int] | None = None,
    backends=("torch", "torch-compile", "onnxruntime", "onnxruntime-dedup", "tensorrt"),
    batches=(1, 4),
    device: str = "cpu",
    model: Path | None = None,
    data_dir: Path | None = None,
    repeats: int = 10,
    warmup: int = 2,
    throughput_repeats: int = 3,
    json_path: Path | None = None,
    command: str | None = None,
    measure_memory: bool = True,
) -> dict:
    if BASELINE not in backends:
        backends = (BASELINE, *backends)
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: PyTorch sees no CUDA GPU here")
    work = Path(tempfile.mkdtemp(prefix="spade-rt-bench-"))
    if model is None:
        cfg = GeneratorConfig.from_preset(preset, ngf=ngf)
        if size is not None and size != cfg.output_hw:
            cfg = cfg.replace(crop_size=size[1], aspect_ratio=size[1] / size[0])
        model = trained_looking_model(cfg, work / "model.safetensors")
    else:
        cfg = load_model(model).config
    h, w = cfg.output_hw
    batch_max = max(batches)
    data_dir = data_dir or default_data_dir()
    inputs = real_inputs(cfg.label_spec, data_dir, max(8, batch_max))
    z_rng = np.random.default_rng(0)
    zs = [z_rng.standard_normal((1, cfg.z_dim)).astype(np.float32) if cfg.use_vae else None for _ in inputs]
    sync = torch.cuda.synchronize if device == "cuda" else None

    def call(c: Contestant, idx: list[int]):
        ids = np.stack([inputs[i][0] for i in idx])
        edges = np.stack([inputs[i][1] for i in idx]) if cfg.use_instance else None
        z = np.concatenate([zs[i] for i in idx]) if cfg.use_vae else None
        return c.run(ids, edges, z)

    # export/build first (untimed), then load (+ compile) and warm up one contestant at a time; its peak
    # memory is measured in a fresh process (see memory.py)
    contestants: dict[str, Contestant] = {}
    results: dict[str, dict] = {}
    for name in backends:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            artifact = prepare_artifact(name, Path(model), work, device, batch_max)
            t0 = time.perf_counter()
            c = load_contestant(name, Path(model), artifact, device)
            for i in range(warmup):
                call(c, [i % len(inputs)])
        except UnavailableError as exc:
            results[name] = {"status": "skipped", "reason": str(exc)}
            log.info("%s: not run (%s)", name, exc)
            continue
        contestants[name] = c
        ids, edges = inputs[0]
        peak = (
            peak_memory_mb(
                name, Path(model), artifact, device, ids[None], None if edges is None else edges[None], zs[0]
            )
            if measure_memory
            else None
        )
        results[name] = {
            "status": "ok",
            "description": c.description,
            "load_and_warmup_seconds": round(time.perf_counter() - t0, 2),
            "peak_memory_mb": peak,
        }
        log.info("%s ready in %.1f s", name, time.perf_counter() - t0)

    # accuracy on every real map, batch 1, against the eager fp32 baseline
    reference = [call(contestants[BASELINE], [i]) for i in range(len(inputs))]
    for name, c in contestants.items():
        outs = [call(c, [i]) for i in range(len(inputs))]
        errs = [rel_l2(o, r) for o, r in zip(outs, reference)]
        psnrs = [psnr_db(o, r) for o, r in zip(outs, reference)]
        results[name]["accuracy"] = {
            "max_rel_l2": max(errs),
            "mean_rel_l2": float(np.mean(errs)),
            "psnr_db": min(psnrs),
            "maps": len(inputs),
        }

    # latency at batch 1: interleaved repetitions, a different real map each round
    rounds = {"i": 0}

    def make_call(c):
        def f():
            return call(c, [rounds["i"] % len(inputs)])

        return f

    timings = interleaved(
        {n: make_call(c) for n, c in contestants.items()},
        repeats,
        sync,
        progress=lambda r: rounds.__setitem__("i", r + 1),
    )
    for name, t in timings.items():
        results[name]["latency_ms"] = t.summary()
    base_p50 = results[BASELINE]["latency_ms"]["p50"]
    for name in contestants:
        results[name]["speedup_vs_baseline"] = base_p50 / results[name]["latency_ms"]["p50"]

    # throughput at larger batches
    for b in [b for b in batches if b > 1]:
        idx = list(range(b))
        for c in contestants.values():  # warm-up at this batch: buffers and arenas for the new shapes
            call(c, idx)
        t = interleaved(
            {n: (lambda c=c, idx=idx: call(c, idx)) for n, c in contestants.items()}, throughput_repeats, sync
        )
        for name, timing in t.items():
            p50 = timing.summary()["p50"]
            results[name].setdefault("throughput", {})[str(b)] = {"p50_ms": p50, "images_per_s": b * 1e3 / p50}

    for c in contestants.values():
        backend = c.extra.get("backend")
        if backend is not None:
            backend.close()
    machine = machine_info(device)
    result = {
        "spade_rt_bench": 1,
        "date": date.today().isoformat(),
        "command": command or "spade-rt bench",
        "machine": machine,
        "config": {
            "preset": cfg.preset,
            "ngf": cfg.ngf,
            "size": [h, w],
            "batches": list(batches),
            "repeats": repeats,
            "warmup": warmup,
            "device": device,
            "inputs": f"{len(inputs)} real label maps "
            f"from {data_dir.name} (COCO-Stuff val; ids folded into the label range for other presets)",
        },
        "method": "warm-up, then interleaved round-robin repetitions; host ids in -> host float image out per call",
        "baseline": BASELINE,
        "backends": {n: results[n] for n in backends if n in results},
    }
    if json_path is None:
        json_path = (
            Path("bench") / "results" / f"{machine_slug(machine)}-{result['date']}" / f"{default_stem(result)}.json"
        )
    write_results(result, Path(json_path))
    sys.stdout.write(markdown_table(result))
    return result


def default_data_dir() -> Path:
    env = os.environ.get("SPADE_RT_SHARED")
    candidates = [Path(env) / "data" / "coco_stuff_sample"] if env else []
    here = Path(__file__).resolve().parents[1]
    candidates += [here.parent / "shared" / "data" / "coco_stuff_sample", Path("../shared/data/coco_stuff_sample")]
    for c in candidates:
        if (c / "val_label").is_dir():
            return c
    raise InputError("cannot find the COCO-Stuff sample (../shared/data/coco_stuff_sample): pass --data DIR")


def command_line() -> str:
    return "spade-rt " + " ".join(shlex.quote(a) for a in sys.argv[1:])
