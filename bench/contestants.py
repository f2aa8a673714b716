"""The contestants. Each takes host numpy ids (+ edges, z) and returns the float image on the host, so every
backend is timed over the same boundary: label ids in host memory -> picture in host memory.

Which contestants exist, and which backend provides each, is the runtime's backend registry
(``spade_rt.runtime.registry``: ``contestants`` and ``bench`` of each entry); the entry's ``bench`` names one
of the ``ContestantFactory`` objects below (``TORCH``, ``ONNXRUNTIME``, ``TENSORRT``). A factory prepares what
a contestant loads (export, build: untimed, outside its memory figure) and loads it.

- ``torch``: the baseline, the original formulation: eager fp32, the one-hot (+ edge) semantics built on the
  device from the ids by scatter (as the original preprocess_input does), spectral norm recomputed from
  weight_orig/u/v every call (the hook's work), batch norm as a module;
- ``torch-fp16``: the same in fp16 with channels_last (GPU only: CPU fp16 convolutions are not a baseline);
- ``torch-compile``: the same through torch.compile (mode max-autotune-no-cudagraphs on CPU,
  reduce-overhead = CUDA graphs on GPU);
- ``onnxruntime``: our exported static graph (fp32 on CPU, the fp16 graph on the CUDA provider);
- ``onnxruntime-dedup``: our dedup graph (gamma/beta once per distinct label patch), fp32, CPU;
- ``tensorrt``: our fp16 engine through the spade_rt runtime (TensorRT or TensorRT-RTX).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spade_rt.model.native_format import build_generator, load_model
from spade_rt.model.semantics import one_hot_semantics
from spade_rt.runtime.registry import contestant_backend, load_attr

log = logging.getLogger(__name__)


class UnavailableError(Exception):
    """This backend cannot run here; the message says why (it goes into the results)."""


@dataclass
class Contestant:
    name: str
    description: str
    run: object = None  # callable(ids, edges, z) -> np.ndarray (N, 3, H, W) float32
    setup_seconds: float = 0.0
    device_timer: object = None  # optional callable(fn) -> ms, for device-event timing
    extra: dict = field(default_factory=dict)


def _torch_runner(net, num_ids: int, device: torch.device, dtype: torch.dtype, channels_last: bool):
    def run(ids: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
        with torch.inference_mode():
            t_ids = torch.from_numpy(ids).to(device, non_blocking=True)
            t_edges = None if edges is None else torch.from_numpy(edges).to(device, non_blocking=True)
            seg = one_hot_semantics(t_ids, num_ids, t_edges, dtype=dtype)  # built on the device, every call
            if channels_last:
                seg = seg.contiguous(memory_format=torch.channels_last)
            zt = None if z is None else torch.from_numpy(z).to(device, dtype)
            return net(seg, zt).float().cpu().numpy()

    return run


def torch_contestant(name: str, model_path: Path, artifact: Path | None, device: str) -> Contestant:
    dev = torch.device(device)
    native = load_model(model_path)
    cfg = native.config
    t0 = time.perf_counter()
    net = build_generator(native).to(dev)
    if name == "torch":
        return Contestant(
            name,
            "eager PyTorch fp32, one-hot input (the original formulation)",
            _torch_runner(net, cfg.num_label_ids, dev, torch.float32, False),
        )
    if name == "torch-fp16":
        if dev.type != "cuda":
            raise UnavailableError("fp16 + channels_last is a GPU baseline (CPU fp16 convolutions are not competitive)")
        net = net.half().to(memory_format=torch.channels_last)
        return Contestant(
            name, "eager PyTorch fp16 + channels_last", _torch_runner(net, cfg.num_label_ids, dev, torch.float16, True)
        )
    if name == "torch-compile":
        mode = "reduce-overhead" if dev.type == "cuda" else "max-autotune-no-cudagraphs"
        try:
            compiled = torch.compile(net, mode=mode, fullgraph=False)
        except Exception as exc:  # no compiler toolchain, unsupported platform ...
            raise UnavailableError(f"torch.compile failed: {str(exc).splitlines()[0][:200]}") from None
        runner = _torch_runner(compiled, cfg.num_label_ids, dev, torch.float32, False)
        c = Contestant(name, f"torch.compile ({mode}), fp32, one-hot input", runner)
        c.setup_seconds = time.perf_counter() - t0  # compilation happens on the first call (warm-up)
        return c
    raise ValueError(name)


def onnxruntime_contestant(name: str, model_path: Path, onnx_path: Path | None, device: str) -> Contestant:
    from spade_rt.runtime.onnxruntime_backend import OnnxRuntimeBackend

    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    try:
        backend = OnnxRuntimeBackend(onnx_path, providers=providers)
    except Exception as exc:
        raise UnavailableError(str(exc)) from None
    kind = backend.spec.extra.get("graph_options", {}).get("graph", "static")
    description = f"spade-rt {kind} graph ({backend.spec.precision}) on ONNX Runtime {providers[0]}"
    return Contestant(name, description, backend.run, extra={"backend": backend})


def tensorrt_contestant(name: str, model_path: Path, engine_path: Path | None, device: str) -> Contestant:
    if engine_path is None:
        raise UnavailableError("no engine")
    from spade_rt.engines.backend import TensorRTBackend

    try:
        backend = TensorRTBackend(engine_path)
    except Exception as exc:
        raise UnavailableError(str(exc)) from None
    return Contestant(
        name,
        f"spade-rt fp16 engine ({backend.trt.module_name} {backend.trt.version})",
        backend.run,
        extra={"backend": backend},
    )


# ---- what each contestant loads ----------------------------------------------------------------------------
def _graph(model_path: Path, work: Path, precision: str, batch_max: int, kind: str = "static") -> Path:
    """The exported graph a contestant loads, exported once per run into ``work``."""
    from spade_rt.export.exporter import export_model
    from spade_rt.export.onnx_graph import GraphOptions

    path = work / f"graph_{kind}_{precision}.onnx"
    if not path.is_file():
        export_model(model_path, path, GraphOptions(precision=precision, batch=(1, 1, batch_max), graph=kind))
    return path


def _no_artifact(name: str, model_path: Path, work: Path, device: str, batch_max: int) -> None:
    return None


def _onnx_artifact(name: str, model_path: Path, work: Path, device: str, batch_max: int) -> Path:
    if name == "onnxruntime-dedup":
        if device == "cuda":
            raise UnavailableError("the dedup graph is a CPU graph (its Unique ops run on the host)")
        return _graph(model_path, work, "fp32", batch_max, "dedup")
    return _graph(model_path, work, "fp16" if device == "cuda" else "fp32", batch_max)


def _engine_artifact(name: str, model_path: Path, work: Path, device: str, batch_max: int) -> Path:
    if device != "cuda":
        raise UnavailableError("needs an NVIDIA GPU (this run is on the CPU)")
    from spade_rt.engines.build import build_engine

    engine = work / "graph_fp16.engine"
    try:
        build_engine(_graph(model_path, work, "fp16", batch_max), engine, progress=False)
    except Exception as exc:
        raise UnavailableError(f"engine build failed: {str(exc).splitlines()[0][:300]}") from None
    return engine


@dataclass(frozen=True)
class ContestantFactory:
    """How the contestants of one backend are prepared (untimed) and loaded."""

    prepare: Callable[[str, Path, Path, str, int], Path | None]  # (name, model, work dir, device, max batch)
    load: Callable[[str, Path, Path | None, str], Contestant]  # (name, model, artifact, device)


TORCH = ContestantFactory(_no_artifact, torch_contestant)
ONNXRUNTIME = ContestantFactory(_onnx_artifact, onnxruntime_contestant)
TENSORRT = ContestantFactory(_engine_artifact, tensorrt_contestant)


def factory(name: str) -> ContestantFactory:
    entry = contestant_backend(name)
    return load_attr(entry, entry.bench)


def prepare_artifact(name: str, model_path: Path, work: Path, device: str, batch_max: int) -> Path | None:
    """Export / build what a contestant loads; UnavailableError if it cannot run here."""
    return factory(name).prepare(name, model_path, work, device, batch_max)


def load_contestant(name: str, model_path: Path, artifact: Path | None, device: str) -> Contestant:
    return factory(name).load(name, model_path, artifact, device)
