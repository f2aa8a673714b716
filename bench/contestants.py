"""The contestants. Each takes host numpy ids (+ edges, z) and returns the float image on the host, so every
backend is timed over the same boundary: label ids in host memory -> picture in host memory.

Which contestants exist, and which backend provides each, is the runtime's backend registry
(``spade_rt.runtime.registry``: ``contestants`` and ``bench`` of each entry); the entry's ``bench`` names one
of the ``ContestantFactory`` objects below (``TORCH``, ``ONNXRUNTIME``, ``OPENVINO``, ``TENSORRT``). A factory
prepares what a contestant loads (export, build: untimed, outside its memory figure) and loads it.

- ``torch``: the baseline, the original formulation: eager fp32, the one-hot (+ edge) semantics built on the
  device from the ids by scatter (as the original preprocess_input does), spectral norm recomputed from
  weight_orig/u/v every call (the hook's work), batch norm as a module;
- ``torch-fp16``: the same in fp16 with channels_last (GPU only: CPU fp16 convolutions are not a baseline);
- ``torch-compile``: the same through torch.compile (mode max-autotune-no-cudagraphs on CPU,
  reduce-overhead = CUDA graphs on GPU);
- ``torch-compile-fp16``: torch.compile reduce-overhead (CUDA graphs) on the fp16 + channels_last network:
  the strongest PyTorch contestant (GPU only);
- ``onnxruntime``: our exported static graph (fp32 on CPU; on the CUDA provider the fp16 graph with the
  float index pad, so that every node runs there: IO binding, CUDA graphs, NHWC, exhaustive conv search);
- ``onnxruntime-onehot``: the same with the one-hot conv formulation of the lookups (GPU only: which of the
  two is faster there is what this contestant measures);
- ``onnxruntime-dedup``: our dedup graph (gamma/beta once per distinct label patch), fp32, CPU;
- ``onnxruntime-plain``: the peer a user without spade-rt runs: the original network (one-hot input, spectral
  and batch norm as in the checkpoint) exported with ``torch.onnx.export`` as it is, on an ONNX Runtime session
  with default settings; the one-hot (+ edge) input is built on the host from the ids each call;
- ``openvino``, ``openvino-dedup``: our static / dedup graph on OpenVINO's CPU device, exact tier (fp32);
- ``openvino-half``, ``openvino-dedup-half``: the same at the half tier (bf16 where the CPU has it), offered
  only when export measured its picture within the tier's bound (spade_rt.runtime.tiers: >= 40 dB PSNR);
- ``onnxruntime-int8``, ``openvino-int8``, ``openvino-dedup-int8``: the int8 tier (`spade-rt export --tier int8`:
  the static / dedup graph quantized by NNCF, calibrated on the real maps, accuracy-aware), where export got its
  picture within the tier's bound (else skipped, with export's one line);
- ``openvino-plain-int8``: the int8 peer: NNCF's default quantization (``nncf.quantize`` with its defaults,
  calibrated on the bench's real maps) of the plain export converted by ``openvino.convert_model``, compiled
  with OpenVINO's defaults: what a user of OpenVINO's own tools gets without spade-rt;
- ``openvino-plain``: the plain export on OpenVINO with its defaults (``compile_model(path, "CPU")``; on CPUs
  with bf16 that default is bf16, so the record names the precision it ran); ``openvino-plain-exact``: the
  same with the fp32 hint, the exact plain peer;
- ``tensorrt``: our fp16 engine through the spade_rt runtime (TensorRT or TensorRT-RTX); throughput batches
  get an engine whose profile's optimum is that batch.

On GPUs each contestant may also report its device time from CUDA events (``device_timer``), beside the
host-to-host time every contestant gets.
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
    # callable() -> the last call's device time in ms from CUDA events (GPU runs), or None where the contestant
    # has none; ``device_timing`` says what its span covers
    device_timer: object = None
    device_timing: str = ""
    extra: dict = field(default_factory=dict)


def _torch_runner(net, num_ids: int, device: torch.device, dtype: torch.dtype, channels_last: bool):
    events: dict[str, object] = {}
    if device.type == "cuda":
        events = {"start": torch.cuda.Event(enable_timing=True), "end": torch.cuda.Event(enable_timing=True)}

    def run(ids: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
        with torch.inference_mode():
            if events:
                events["start"].record()
            t_ids = torch.from_numpy(ids).to(device, non_blocking=True)
            t_edges = None if edges is None else torch.from_numpy(edges).to(device, non_blocking=True)
            seg = one_hot_semantics(t_ids, num_ids, t_edges, dtype=dtype)  # built on the device, every call
            if channels_last:
                seg = seg.contiguous(memory_format=torch.channels_last)
            zt = None if z is None else torch.from_numpy(z).to(device, dtype)
            out = net(seg, zt).float()
            if events:
                events["end"].record()
            return out.cpu().numpy()

    def device_ms() -> float | None:  # read after the call (``.cpu()`` synchronised the stream)
        return float(events["start"].elapsed_time(events["end"])) if events else None

    run.device_ms = device_ms
    return run


def _torch_contestant(name: str, description: str, runner, device: torch.device) -> Contestant:
    c = Contestant(name, description, runner)
    if device.type == "cuda":
        c.device_timer = runner.device_ms
        c.device_timing = "CUDA events on the current stream: ids to the device, one-hot, network (not the copy out)"
    return c


def torch_contestant(name: str, model_path: Path, artifact: Path | None, device: str) -> Contestant:
    dev = torch.device(device)
    native = load_model(model_path)
    cfg = native.config
    t0 = time.perf_counter()
    net = build_generator(native).to(dev)
    ids = cfg.num_label_ids
    if name == "torch":
        runner = _torch_runner(net, ids, dev, torch.float32, False)
        return _torch_contestant(name, "eager PyTorch fp32, one-hot input (the original formulation)", runner, dev)
    if name in ("torch-fp16", "torch-compile-fp16") and dev.type != "cuda":
        raise UnavailableError("fp16 + channels_last is a GPU baseline (CPU fp16 convolutions are not competitive)")
    if name == "torch-fp16":
        net = net.half().to(memory_format=torch.channels_last)
        runner = _torch_runner(net, ids, dev, torch.float16, True)
        return _torch_contestant(name, "eager PyTorch fp16 + channels_last", runner, dev)
    if name in ("torch-compile", "torch-compile-fp16"):
        # GPU: reduce-overhead = CUDA graphs (one per input shape, recorded during the warm-up)
        mode = "reduce-overhead" if dev.type == "cuda" else "max-autotune-no-cudagraphs"
        fp16 = name == "torch-compile-fp16"
        if fp16:  # the strongest PyTorch contestant: fp16, channels_last, CUDA graphs
            net = net.half().to(memory_format=torch.channels_last)
        try:
            compiled = torch.compile(net, mode=mode, fullgraph=False)
        except Exception as exc:  # no compiler toolchain, unsupported platform ...
            raise UnavailableError(f"torch.compile failed: {str(exc).splitlines()[0][:200]}") from None
        runner = _torch_runner(compiled, ids, dev, torch.float16 if fp16 else torch.float32, fp16)
        what = "fp16 + channels_last" if fp16 else "fp32"
        c = _torch_contestant(name, f"torch.compile ({mode}), {what}, one-hot input", runner, dev)
        c.setup_seconds = time.perf_counter() - t0  # compilation happens on the first calls (warm-up)
        return c
    raise ValueError(name)


def onnxruntime_contestant(name: str, model_path: Path, onnx_path: Path | None, device: str) -> Contestant:
    if name == "onnxruntime-plain":
        return plain_contestant(name, model_path, onnx_path, device)
    from spade_rt.runtime.onnxruntime_backend import OnnxRuntimeBackend

    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    try:
        backend = OnnxRuntimeBackend(onnx_path, providers=providers)
    except Exception as exc:
        raise UnavailableError(str(exc)) from None
    options = backend.spec.extra.get("graph_options", {})
    kind = options.get("graph", "static")
    detail = ", ".join(f"{k} {options[k]}" for k in ("index_pad", "lookup") if k in options)
    where = providers[0] + (", IO binding" if backend.io_binding else "")
    where += ", CUDA graphs" if backend.cuda_graph else ""
    description = f"spade-rt {kind} graph ({backend.spec.precision}; {detail}) on ONNX Runtime {where}"
    c = Contestant(
        name,
        description,
        backend.run,
        extra={"backend": backend, "tier": backend.tier if backend.spec.precision == "fp32" else "half"},
    )
    if device == "cuda":
        c.device_timing = "none: ONNX Runtime runs on its own CUDA streams (host-to-host time only)"
    return c


def _plain_feeds(cfg, use_edges: bool):
    """ids (N, H, W) [+ edges] -> the original network's float one-hot (+ edge) input, built on the host."""
    num_ids = cfg.num_label_ids

    def feed(ids: np.ndarray, edges: np.ndarray | None) -> np.ndarray:
        n, h, w = ids.shape
        seg = np.zeros((n, cfg.semantic_nc, h, w), np.float32)
        np.put_along_axis(seg, ids[:, None].astype(np.intp), 1.0, axis=1)
        if use_edges:
            seg[:, num_ids] = edges
        return seg

    return feed


def plain_contestant(name: str, model_path: Path, onnx_path: Path | None, device: str) -> Contestant:
    """The original network exported as it is, on a runtime with its default settings."""
    if device != "cpu":
        raise UnavailableError("the plain peers are CPU contestants")
    cfg = load_model(model_path).config
    feed = _plain_feeds(cfg, cfg.use_instance)
    if name == "onnxruntime-plain":
        import onnxruntime as ort

        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

        def run(ids, edges, z):
            return session.run(None, {"semantics": feed(ids, edges)})[0]

        return Contestant(
            name, "original network, torch.onnx.export as it is, ONNX Runtime defaults", run, extra={"tier": "exact"}
        )
    try:
        import openvino as ov
    except ImportError:
        raise UnavailableError("OpenVINO is not installed: pip install 'spade-rt[openvino]'") from None
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"} if name == "openvino-plain-exact" else {}
    if name == "openvino-plain-int8":  # an OpenVINO IR written by _plain_int8_artifact
        compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU")
        request = compiled.create_infer_request()

        def run_int8(ids, edges, z):
            request.infer({0: feed(ids, edges)})
            return np.array(request.get_output_tensor(0).data, copy=True)

        return Contestant(
            name,
            "original network, torch.onnx.export as it is, openvino.convert_model, nncf.quantize with its defaults "
            "(calibrated on the real maps), OpenVINO defaults",
            run_int8,
            extra={"tier": "int8 (NNCF defaults)"},
        )
    compiled = core.compile_model(str(onnx_path), "CPU", config)
    request = compiled.create_infer_request()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)  # f32, bf16, f16

    def run_ov(ids, edges, z):
        request.infer({"semantics": feed(ids, edges)})
        return np.array(request.get_output_tensor(0).data, copy=True)

    how = "the fp32 hint" if config else "OpenVINO defaults"
    return Contestant(
        name,
        f"original network, torch.onnx.export as it is, {how} (inference precision {precision})",
        run_ov,
        extra={"tier": "exact" if precision == "f32" else f"{precision} (default)"},
    )


def openvino_contestant(name: str, model_path: Path, onnx_path: Path | None, device: str) -> Contestant:
    if name.startswith("openvino-plain"):
        return plain_contestant(name, model_path, onnx_path, device)
    if device != "cpu":
        raise UnavailableError("OpenVINO contestants run on the CPU here (its GPU device is Intel's)")
    from spade_rt.runtime.openvino_backend import OpenVinoBackend

    tier = name.rsplit("-", 1)[-1] if name.endswith(("-half", "-int8")) else "exact"
    try:
        backend = OpenVinoBackend(onnx_path, tier=tier)
    except Exception as exc:
        raise UnavailableError(str(exc)) from None
    kind = backend.spec.extra.get("graph_options", {}).get("graph", "static")
    precision = backend.config["INFERENCE_PRECISION_HINT"]
    psnr = backend.measured_psnr
    err = "" if psnr is None else f", measured at export: worst-map PSNR {psnr:.1f} dB"
    description = f"spade-rt {kind} graph on OpenVINO CPU, {tier} tier ({precision}{err})"
    return Contestant(name, description, backend.run, extra={"backend": backend, "tier": tier})


def tensorrt_contestant(name: str, model_path: Path, engine_path: Path | None, device: str) -> Contestant:
    if engine_path is None:
        raise UnavailableError("no engine")
    from spade_rt.engines.backend import TensorRTBackend

    try:
        backend = TensorRTBackend(engine_path)
    except Exception as exc:
        raise UnavailableError(str(exc)) from None
    opt = backend.spec.opt_batch
    c = Contestant(
        name,
        f"spade-rt fp16 engine ({backend.trt.module_name} {backend.trt.version}, profile opt batch {opt})",
        backend.run,
        extra={"backend": backend},
    )
    c.device_timer = lambda: backend.last_times.h2d_ms + backend.last_times.compute_ms + backend.last_times.d2h_ms
    c.device_timing = "CUDA events on the engine's stream: copy in, engine, copy out"
    return c


# ---- what each contestant loads ----------------------------------------------------------------------------
def _graph(
    model_path: Path, work: Path, precision: str, batch_max: int, kind: str = "static", opt: int = 1, **options
) -> Path:
    """The exported graph a contestant loads, exported once per run into ``work``."""
    from spade_rt.export.exporter import export_model
    from spade_rt.export.onnx_graph import GraphOptions

    suffix = "".join(f"_{v}" for v in options.values())
    path = work / f"graph_{kind}_{precision}_opt{opt}{suffix}.onnx"
    if not path.is_file():
        batch = (1, opt, max(opt, batch_max))
        export_model(model_path, path, GraphOptions(precision=precision, batch=batch, graph=kind, **options))
    return path


def _no_artifact(name: str, model_path: Path, work: Path, device: str, batch_max: int, opt: int = 1) -> None:
    return None


def _onnx_artifact(name: str, model_path: Path, work: Path, device: str, batch_max: int, opt: int = 1) -> Path:
    if name == "onnxruntime-plain":
        if device != "cpu":
            raise UnavailableError("the plain peers are CPU contestants")
        return plain_graph(model_path, work)
    if name == "onnxruntime-int8":
        if device != "cpu":
            raise UnavailableError("the int8 tier is a CPU tier here")
        return _int8_graph(model_path, work, batch_max, "static")
    if name == "onnxruntime-dedup":
        if device == "cuda":
            raise UnavailableError("the dedup graph is a CPU graph (its Unique ops run on the host)")
        return _graph(model_path, work, "fp32", batch_max, "dedup")
    if name == "onnxruntime-onehot" and device != "cuda":
        raise UnavailableError("the one-hot conv formulation is for GPUs (more MACs; the lookups win on CPUs)")
    if device != "cuda":
        return _graph(model_path, work, "fp32", batch_max)
    # the CUDA provider: every node on the GPU (float index pad: it has no int32 Pad), so CUDA graphs apply
    lookup = "onehot" if name == "onnxruntime-onehot" else "gather"
    return _graph(model_path, work, "fp16", batch_max, index_pad="float", lookup=lookup)


def plain_graph(model_path: Path, work: Path) -> Path:
    """The original network exported as a user would without spade-rt: ``torch.onnx.export`` of the module as
    it is (one-hot input; spectral norm and batch norm as in the checkpoint, constant-folded by the exporter
    like any other weights), dynamic batch, the exporter's defaults otherwise (TorchScript-based exporter: the
    default torch.export-based one needs onnxscript)."""
    path = work / "graph_plain.onnx"
    if path.is_file():
        return path
    native = load_model(model_path)
    if native.config.use_vae:
        raise UnavailableError("the plain peer is exported for models without an encoder (no z)")
    net = build_generator(native).eval()
    h, w = native.config.output_hw
    seg = torch.zeros(1, native.config.semantic_nc, h, w)
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (seg,),
            str(path),
            input_names=["semantics"],
            output_names=["image"],
            dynamic_axes={"semantics": {0: "n"}, "image": {0: "n"}},
            dynamo=False,
        )
    return path


def _openvino_artifact(name: str, model_path: Path, work: Path, device: str, batch_max: int, opt: int = 1) -> Path:
    if device != "cpu":
        raise UnavailableError("OpenVINO contestants run on the CPU here")
    if name == "openvino-plain-int8":
        return _plain_int8_artifact(model_path, work)
    if name.startswith("openvino-plain"):
        return plain_graph(model_path, work)
    kind = "dedup" if "-dedup" in name else "static"
    if name.endswith("-int8"):
        return _int8_graph(model_path, work, batch_max, kind)
    return _graph(model_path, work, "fp32", batch_max, kind)


def _int8_graph(model_path: Path, work: Path, batch_max: int, kind: str) -> Path:
    """`spade-rt export --tier int8` of the model (cached in ``work``); UnavailableError with export's one line
    where the int8 tier misses its bound."""
    from spade_rt.errors import SpadeRtError
    from spade_rt.export.exporter import export_model
    from spade_rt.export.onnx_graph import GraphOptions

    path = work / f"graph_{kind}_int8.onnx"
    if not path.is_file():
        try:
            export_model(
                model_path, path, GraphOptions(batch=(1, 1, max(1, batch_max)), graph=kind), tier="int8",
                cache_dir=work / "cache",
            )  # fmt: skip
        except SpadeRtError as exc:
            raise UnavailableError(str(exc)) from None
    return path


def _plain_int8_artifact(model_path: Path, work: Path) -> Path:
    """The int8 peer: the plain export through openvino.convert_model and nncf.quantize with its defaults,
    calibrated on the COCO-Stuff sample's train maps (folded into the model's ids), saved as an OpenVINO IR."""
    path = work / "graph_plain_int8.xml"
    if path.is_file():
        return path
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise UnavailableError("the int8 peer needs OpenVINO and NNCF: pip install 'spade-rt[openvino,int8]'") from None
    from spade_rt.bench.run import real_inputs
    from spade_rt.sample_data import coco_stuff_sample

    cfg = load_model(model_path).config
    feed = _plain_feeds(cfg, cfg.use_instance)
    maps = real_inputs(cfg.label_spec, coco_stuff_sample(), 8)
    data = [feed(ids[None], None if edges is None else edges[None]) for ids, edges in maps]
    model = ov.convert_model(str(plain_graph(model_path, work)))
    quantized = nncf.quantize(model, nncf.Dataset(data), subset_size=len(data))
    ov.save_model(quantized, str(path))
    return path


def _engine_artifact(name: str, model_path: Path, work: Path, device: str, batch_max: int, opt: int = 1) -> Path:
    """An engine whose profile's optimum is ``opt``: the batch it is timed at."""
    if device != "cuda":
        raise UnavailableError("needs an NVIDIA GPU (this run is on the CPU)")
    from spade_rt.engines.build import build_engine

    engine = work / f"graph_fp16_opt{opt}.engine"
    try:
        build_engine(_graph(model_path, work, "fp16", batch_max, opt=opt), engine, progress=False)
    except Exception as exc:
        raise UnavailableError(f"engine build failed: {str(exc).splitlines()[0][:300]}") from None
    return engine


@dataclass(frozen=True)
class ContestantFactory:
    """How the contestants of one backend are prepared (untimed) and loaded."""

    prepare: Callable[..., Path | None]  # (name, model, work dir, device, max batch, opt batch)
    load: Callable[[str, Path, Path | None, str], Contestant]  # (name, model, artifact, device)
    per_batch: bool = False  # a fresh artifact per timed batch size (profiles tuned for that batch)


TORCH = ContestantFactory(_no_artifact, torch_contestant)
ONNXRUNTIME = ContestantFactory(_onnx_artifact, onnxruntime_contestant)
OPENVINO = ContestantFactory(_openvino_artifact, openvino_contestant)
TENSORRT = ContestantFactory(_engine_artifact, tensorrt_contestant, per_batch=True)


def factory(name: str) -> ContestantFactory:
    entry = contestant_backend(name)
    return load_attr(entry, entry.bench)


def prepare_artifact(name: str, model_path: Path, work: Path, device: str, batch_max: int, opt: int = 1) -> Path | None:
    """Export / build what a contestant loads (profiles tuned for batch ``opt``); UnavailableError if it
    cannot run here."""
    return factory(name).prepare(name, model_path, work, device, batch_max, opt)


def load_contestant(name: str, model_path: Path, artifact: Path | None, device: str) -> Contestant:
    return factory(name).load(name, model_path, artifact, device)
