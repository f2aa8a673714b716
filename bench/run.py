"""`spade-rt bench`: every contestant on the same machine, the same weights and the same real label maps,
timed side by side in one run. See contestants.py for what each contestant is and harness.py for the method."""

from __future__ import annotations

import logging
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import torch

from spade_rt import __version__
from spade_rt.bench.contestants import Contestant, UnavailableError, factory, load_contestant, prepare_artifact
from spade_rt.bench.harness import WarmUp, interleaved, psnr_db, rel_l2, warm_up
from spade_rt.bench.memory import peak_memory_mb
from spade_rt.bench.report import default_stem, markdown_table, write_results
from spade_rt.errors import ConfigError, InputError
from spade_rt.labels import LabelSpec, load_inputs
from spade_rt.model.config import GeneratorConfig
from spade_rt.model.native_format import NativeModel, load_model, save_model
from spade_rt.model.networks import SPADEGenerator
from spade_rt.runtime.registry import all_contestants, default_contestants

log = logging.getLogger(__name__)

ALL_BACKENDS = all_contestants()  # from the backend registry: torch, torch-fp16, torch-compile, onnxruntime ...
BASELINE = "torch"
DEFAULT_BACKENDS = default_contestants()  # each backend entry's default_contestants, in table order


@dataclass
class BenchSettings:
    """One benchmark run: the model under test, the contestants, and the timing method."""

    preset: str = "ade20k"
    ngf: int = 64
    size: tuple[int, int] | None = None  # (H, W); None: the preset's
    model: Path | None = None  # a spade-rt model; None: random trained-looking weights
    data_dir: Path | None = None  # the COCO-Stuff sample; None: the default location
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    batches: tuple[int, ...] = (1, 4)
    device: str = "cpu"
    repeats: int = 10  # interleaved repetitions at batch 1
    warmup: int = 2  # warm-up calls per contestant and batch at least; then until the timings settle:
    settle_window: int = 5  # the last this many warm-up calls ...
    settle_tolerance: float = 0.05  # ... within this fraction of their median ((max - min) / median)
    warmup_max_calls: int = 60  # cap per contestant and batch (the record says whether it settled)
    warmup_max_seconds: float = 30.0  # and a time cap, counted after the first ``warmup`` calls
    throughput_repeats: int = 3
    json_path: Path | None = None  # None: bench/results/<machine>-<date>/<preset>-ngf<N>-<H>x<W>.json
    command: str | None = None
    measure_memory: bool = True
    contestants: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        unknown = [b for b in self.backends if b not in ALL_BACKENDS]
        if unknown:
            raise ConfigError(f"unknown backend(s) {', '.join(unknown)}: expected some of {', '.join(ALL_BACKENDS)}")
        self.contestants = self.backends if BASELINE in self.backends else (BASELINE, *self.backends)


# ---- the model under test ---------------------------------------------------------------------------------
CALIBRATION_MAPS = 4  # real maps whose activations give the random model's batch-norm statistics
REFERENCE_STD_MIN = 0.3  # eager output std of the bench's random model: real pictures spread (demo model ~0.47)
OUTPUT_STD_TARGET = 0.45


@torch.no_grad()
def realistic_model(cfg: GeneratorConfig, path: Path, maps: list, seed: int = 0) -> tuple[Path, dict]:
    """Random weights with the statistics of a trained net, for timing and for accuracy.

    - spectral norm: u, v converged (power iterations), as after training;
    - batch norm: running statistics from the network's own activations on real label maps (``maps``: the
      bench's COCO-Stuff sample), one pass with the norms in training mode (cumulative average), as a trained
      net's statistics come from its data; so every normalised activation is ~N(0, 1) on real inputs;
    - output spread: ``conv_img`` scaled until the eager output's std over the maps reaches
      ``OUTPUT_STD_TARGET`` (>= ``REFERENCE_STD_MIN``), like real pictures (the trained demo model: ~0.47).
      Without it the random net's pictures are almost flat (std ~0.02), which understates the relative error
      of reduced precisions.

    Timing does not depend on the weights; accuracy between formulations is measured on the same weights.
    Returns the path and what was done (recorded in the bench JSON).
    """
    from spade_rt.model.semantics import semantics_from_numpy

    torch.manual_seed(seed)
    net = SPADEGenerator(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if hasattr(m, "weight_orig"):
            w = m.weight_orig.flatten(1)
            u = torch.nn.functional.normalize(torch.randn(w.shape[0], generator=g), dim=0)
            for _ in range(3):
                v = torch.nn.functional.normalize(w.t() @ u, dim=0)
                u = torch.nn.functional.normalize(w @ v, dim=0)
            m.weight_u.copy_(u)
            m.weight_v.copy_(v)
    seg = torch.cat([semantics_from_numpy(ids, cfg.num_label_ids, edges) for ids, edges in maps])
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: the statistics of this pass
        m.train()
    net(seg)
    for m in norms:
        m.momentum = 0.1
        m.eval()
    scale, std = 1.0, float(net(seg).std())
    for _ in range(6):
        if abs(std - OUTPUT_STD_TARGET) < 0.02:
            break
        k = OUTPUT_STD_TARGET / max(std, 1e-3)
        net.conv_img.weight.mul_(k)
        net.conv_img.bias.mul_(k)
        scale *= k
        std = float(net(seg).std())
    what = {
        "kind": "random weights, batch-norm statistics from its own activations on real maps (bench)",
        "seed": seed,
        "calibration_maps": len(maps),
        "conv_img_scale": round(scale, 4),
        "output_std_on_calibration_maps": round(std, 4),
    }
    save_model(path, NativeModel(cfg, net.state_dict(), None, what))
    return path, what


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


# ---- the run, in pieces ------------------------------------------------------------------------------------
Inputs = list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]  # (ids, edges, z) per real map


def model_under_test(
    settings: BenchSettings, work: Path, data_dir: Path | None = None
) -> tuple[Path, GeneratorConfig, dict]:
    """The given model, or realistic random weights of the preset at the requested width and size
    (``realistic_model``: batch-norm statistics from real maps of ``data_dir``)."""
    if settings.model is not None:
        native = load_model(settings.model)
        return Path(settings.model), native.config, {"kind": "given", "file": Path(settings.model).name}
    cfg = GeneratorConfig.from_preset(settings.preset, ngf=settings.ngf)
    if settings.size is not None and settings.size != cfg.output_hw:
        cfg = cfg.replace(crop_size=settings.size[1], aspect_ratio=settings.size[1] / settings.size[0])
    maps = real_inputs(cfg.label_spec, data_dir or default_data_dir(), CALIBRATION_MAPS)
    path, what = realistic_model(cfg, work / "model.safetensors", maps)
    return path, cfg, what


def bench_inputs(cfg: GeneratorConfig, data_dir: Path, count: int) -> Inputs:
    """Real label maps (+ edges) at the model's size, and one fixed z per map for VAE models."""
    rng = np.random.default_rng(0)
    maps = real_inputs(cfg.label_spec, data_dir, count)
    return [
        (ids, edges, rng.standard_normal((1, cfg.z_dim)).astype(np.float32) if cfg.use_vae else None)
        for ids, edges in maps
    ]


def caller(inputs: Inputs) -> Callable[[Contestant, list[int]], np.ndarray]:
    """call(contestant, map indices) -> its output on that batch of real maps."""

    def call(c: Contestant, idx: list[int]) -> np.ndarray:
        ids = np.stack([inputs[i][0] for i in idx])
        edges = np.stack([inputs[i][1] for i in idx]) if inputs[0][1] is not None else None
        z = np.concatenate([inputs[i][2] for i in idx]) if inputs[0][2] is not None else None
        return c.run(ids, edges, z)

    return call


def load_contestants(settings: BenchSettings, model: Path, work: Path, inputs: Inputs, results: dict) -> dict:
    """Export/build (untimed), load (+ compile) and warm up one contestant at a time; its peak memory is
    measured in a fresh process (memory.py). Contestants that cannot run here go into ``results`` as skipped."""
    call = caller(inputs)
    contestants: dict[str, Contestant] = {}
    batch_max = max(settings.batches)
    sync = torch.cuda.synchronize if settings.device == "cuda" else None
    for name in settings.contestants:
        try:
            artifact = prepare_artifact(name, model, work, settings.device, batch_max)
            t0 = time.perf_counter()
            c = load_contestant(name, model, artifact, settings.device)
            rounds = iter(range(1 << 30))  # a different real map each warm-up call
            warm = settled_warm_up(settings, lambda c=c, r=rounds: call(c, [next(r) % len(inputs)]), sync)
        except UnavailableError as exc:
            results[name] = {"status": "skipped", "reason": str(exc)}
            log.info("%s: not run (%s)", name, exc)
            continue
        contestants[name] = c
        ids, edges, z = inputs[0]
        peak = None
        if settings.measure_memory:
            peak = peak_memory_mb(
                name, model, artifact, settings.device, ids[None], None if edges is None else edges[None], z
            )
        results[name] = {
            "status": "ok",
            "description": c.description,
            "load_and_warmup_seconds": round(time.perf_counter() - t0, 2),
            "warmup": {"calls": warm.calls, "settled": warm.settled},
            "peak_memory_mb": peak,
        }
        if c.extra.get("tier"):
            results[name]["tier"] = c.extra["tier"]
        if c.device_timing:
            results[name]["device_timing"] = c.device_timing
        log.info("%s ready in %.1f s (%d warm-up calls)", name, time.perf_counter() - t0, warm.calls)
    return contestants


def settled_warm_up(settings: BenchSettings, call, sync) -> WarmUp:
    """Warm up until the last ``settle_window`` calls agree within ``settle_tolerance`` (harness.warm_up)."""
    return warm_up(
        call,
        sync,
        min_calls=settings.warmup,
        max_calls=max(settings.warmup, settings.warmup_max_calls),
        window=settings.settle_window,
        tolerance=settings.settle_tolerance,
        max_seconds=settings.warmup_max_seconds,
    )


def measure_accuracy(contestants: dict[str, Contestant], inputs: Inputs, results: dict) -> None:
    """Every contestant on every real map, batch 1, against the eager fp32 baseline."""
    call = caller(inputs)
    reference = [call(contestants[BASELINE], [i]) for i in range(len(inputs))]
    results[BASELINE]["reference_std"] = float(np.std(np.concatenate(reference)))
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


def measure_latency(settings: BenchSettings, contestants: dict, inputs: Inputs, results: dict, sync) -> None:
    """Batch 1: interleaved repetitions, a different real map each round; speed-up against the baseline."""
    call = caller(inputs)
    rounds = {"i": 0}

    def make_call(c):
        return lambda: call(c, [rounds["i"] % len(inputs)])

    timings = interleaved(
        {n: make_call(c) for n, c in contestants.items()},
        settings.repeats,
        sync,
        progress=lambda r: rounds.__setitem__("i", r + 1),
        device_timers={n: c.device_timer for n, c in contestants.items() if c.device_timer is not None},
    )
    for name, t in timings.items():
        results[name]["latency_ms"] = t.summary()
        if t.device_ms:  # CUDA-event time of the same calls, beside the host-to-host time
            results[name]["device_ms"] = t.device_summary()
    base_p50 = results[BASELINE]["latency_ms"]["p50"]
    for name in contestants:
        results[name]["speedup_vs_baseline"] = base_p50 / results[name]["latency_ms"]["p50"]


def measure_throughput(
    settings: BenchSettings, contestants: dict, inputs: Inputs, results: dict, sync, model: Path, work: Path
) -> None:
    """Each batch size above 1: contestants whose artifacts have a tuned batch (engine profiles) get one tuned
    for this batch; each warms up at the batch until its timings settle; then interleaved repetitions."""
    call = caller(inputs)
    for b in [b for b in settings.batches if b > 1]:
        idx = list(range(b))
        at_batch = dict(contestants)
        tuned: dict[str, Contestant] = {}
        for name in contestants:
            if not factory(name).per_batch:
                continue
            try:
                artifact = prepare_artifact(name, model, work, settings.device, max(settings.batches), opt=b)
                tuned[name] = at_batch[name] = load_contestant(name, model, artifact, settings.device)
            except UnavailableError as exc:  # keep the batch-1 profile, and say so
                log.warning("%s: no profile tuned for batch %d (%s): timing the batch-1 one", name, b, exc)
        try:
            warm = {n: settled_warm_up(settings, lambda c=c, i=idx: call(c, i), sync) for n, c in at_batch.items()}
            t = interleaved(
                {n: (lambda c=c, i=idx: call(c, i)) for n, c in at_batch.items()},
                settings.throughput_repeats,
                sync,
                device_timers={n: c.device_timer for n, c in at_batch.items() if c.device_timer is not None},
            )
        finally:
            for c in tuned.values():
                backend = c.extra.get("backend")
                if backend is not None:
                    backend.close()
        for name, timing in t.items():
            p50 = timing.summary()["p50"]
            entry = {"p50_ms": p50, "images_per_s": b * 1e3 / p50, "warmup_calls": warm[name].calls}
            if timing.device_ms:
                entry["device_p50_ms"] = timing.device_summary()["p50"]
            if name in tuned:
                entry["profile_opt_batch"] = b
            results[name].setdefault("throughput", {})[str(b)] = entry


def run_bench(settings: BenchSettings) -> dict:
    """Every contestant on the same machine, weights and real maps; writes JSON + Markdown + PNG; returns the record."""
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: PyTorch sees no CUDA GPU here")
    data_dir = settings.data_dir or default_data_dir()
    load_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="spade-rt-bench-"))
    try:
        model, cfg, model_info = model_under_test(settings, work, data_dir)
        inputs = bench_inputs(cfg, data_dir, max(8, max(settings.batches)))
        sync = torch.cuda.synchronize if settings.device == "cuda" else None
        results: dict[str, dict] = {}
        contestants = load_contestants(settings, model, work, inputs, results)
        try:
            measure_accuracy(contestants, inputs, results)
            measure_latency(settings, contestants, inputs, results, sync)
            measure_throughput(settings, contestants, inputs, results, sync, model, work)
        finally:
            for c in contestants.values():
                backend = c.extra.get("backend")
                if backend is not None:
                    backend.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)  # exported graphs, engines, the random model: never left behind
    result = bench_record(settings, cfg, data_dir, len(inputs), results, model_info)
    result["load_average"] = {"start": load_start, "end": load_average()}
    json_path = settings.json_path or (
        Path("bench")
        / "results"
        / f"{machine_slug(result['machine'])}-{result['date']}"
        / f"{default_stem(result)}.json"
    )
    write_results(result, Path(json_path))
    sys.stdout.write(markdown_table(result))
    return result


def bench_record(
    settings: BenchSettings,
    cfg: GeneratorConfig,
    data_dir: Path,
    maps: int,
    results: dict,
    model_info: dict | None = None,
) -> dict:
    h, w = cfg.output_hw
    reference_std = results.get(BASELINE, {}).pop("reference_std", None)
    return {
        "spade_rt_bench": 1,
        "date": date.today().isoformat(),
        "command": settings.command or "spade-rt bench",
        "machine": machine_info(settings.device),
        "config": {
            "preset": cfg.preset,
            "ngf": cfg.ngf,
            "size": [h, w],
            "batches": list(settings.batches),
            "repeats": settings.repeats,
            "warmup": {
                "min_calls": settings.warmup,
                "settle_window": settings.settle_window,
                "settle_tolerance": settings.settle_tolerance,
                "max_calls": settings.warmup_max_calls,
            },
            "device": settings.device,
            "inputs": f"{maps} real label maps "
            f"from {data_dir.name} (COCO-Stuff val; ids folded into the label range for other presets)",
        },
        "method": "per contestant and batch, warm-up until the last calls settle, then interleaved round-robin "
        "repetitions; host ids in -> host float image out per call (host-to-host time); on GPUs also CUDA-event "
        "device time where the contestant has one (device_ms); GPU memory: the drop in free device memory over "
        "load + one call, the same measure for every contestant",
        "baseline": BASELINE,
        "model": model_info or {},
        # std of the eager fp32 pictures over the bench maps: relative errors mean something only on pictures
        # that spread like real ones (REFERENCE_STD_MIN)
        "reference_std": reference_std,
        "backends": {n: results[n] for n in settings.contestants if n in results},
    }


def load_average() -> list[float] | None:
    """1, 5 and 15 min load average at the end of the run (`uptime`): contention flatters ratios to eager."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def default_data_dir() -> Path:
    """The real COCO-Stuff sample that ships in the package (spade_rt/assets/coco_stuff_sample)."""
    from spade_rt.sample_data import coco_stuff_sample

    return coco_stuff_sample()


def command_line() -> str:
    return "spade-rt " + " ".join(shlex.quote(a) for a in sys.argv[1:])
