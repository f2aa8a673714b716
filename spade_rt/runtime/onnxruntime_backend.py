"""ONNX Runtime backend: CPU everywhere, the CUDA execution provider where onnxruntime-gpu is installed.

Session options are tuned once (all graph optimisations, threads = the CPUs this process may use, sequential
execution). Providers (``provider_config``): CUDA, then CPU. The TensorRT provider is used only when asked
for (``tensorrt_ep=True`` or naming it), and then always with its engine and timing caches in the user cache
(``spade_rt.cache``): without them every process start would build an engine for minutes.

On the CUDA provider (the fastest path this project could measure on an H100): NHWC convolutions
(``prefer_nhwc``), exhaustive cuDNN algorithm search (paid once per conv shape and session: sessions are
shared per process, see ``_shared_session``), device-resident inputs and outputs through IO binding
(OrtValues allocated once per input shape, updated in place, so addresses never move), and CUDA graphs
(``enable_cuda_graph``, one ``gpu_graph_id`` per input shape). CUDA graphs need every node on the CUDA
provider: export with ``--index-pad float`` (``spade_rt.export.cuda_ep`` lists what would not be); a graph
that does not qualify falls back to a session without them, logged. The same IO-binding path runs on the
CPU provider when asked (``io_binding=True``), which is how it is tested without a GPU.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spade_rt.errors import BackendUnavailableError, ModelFormatError
from spade_rt.runtime.backend import Backend, StageTimes, graph_feeds
from spade_rt.runtime.spec import IMAGE, LABELS, spec_from_onnx_metadata
from spade_rt.runtime.tiers import check_offered, graph_tier

log = logging.getLogger(__name__)

PROVIDER_ORDER = ("CUDAExecutionProvider", "CPUExecutionProvider")  # the TensorRT provider: only on request
TENSORRT_EP = "TensorrtExecutionProvider"
MAX_BOUND_SHAPES = 8  # input shapes with their own device buffers and CUDA graph; more run without a graph


def default_threads() -> int:
    """The CPUs this process may run on (containers often allow fewer than the machine has)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def provider_config(
    available: list[str],
    requested: list[str] | None = None,
    *,
    device_id: int = 0,
    cuda_graph: bool = False,
    cache: str | Path | None = None,
) -> list:
    """The ``providers`` argument of an InferenceSession: names, or (name, options) for GPU providers.

    Default (``requested`` None): the CUDA provider where installed, then the CPU. The TensorRT provider only
    when requested, with ``trt_engine_cache_enable`` and ``trt_timing_cache_enable`` under the user cache.
    """
    names = [p for p in PROVIDER_ORDER if p in available] if requested is None else list(requested)
    missing = [p for p in names if p not in available]
    if missing:
        raise BackendUnavailableError(
            f"ONNX Runtime provider(s) {', '.join(missing)} not available here (have: {', '.join(available)})"
        )
    out: list = []
    for name in names:
        if name == TENSORRT_EP:
            from spade_rt.cache import built_dir

            where = str(Path(cache) if cache else built_dir() / "onnxruntime-tensorrt")
            out.append(
                (
                    name,
                    {
                        "device_id": str(device_id),
                        "trt_engine_cache_enable": "True",
                        "trt_engine_cache_path": where,
                        "trt_timing_cache_enable": "True",
                        "trt_timing_cache_path": where,
                    },
                )
            )
        elif name == "CUDAExecutionProvider":
            options = {
                "device_id": str(device_id),
                "cudnn_conv_algo_search": "EXHAUSTIVE",  # measured: 11.5 -> 4.63 ms with NHWC (issue 10, H100)
                "prefer_nhwc": "1",
                "do_copy_in_default_stream": "1",
            }
            if cuda_graph:
                options["enable_cuda_graph"] = "1"
            out.append((name, options))
        else:
            out.append(name)
    return out


def make_session(
    model: str | Path | bytes,
    providers: list[str] | None = None,
    threads: int | None = None,
    *,
    cuda_graph: bool = False,
    device_id: int = 0,
    memory_arena: bool = True,
    spinning: bool = True,
):
    """An InferenceSession with spade-rt's settings; clear errors for missing packages and bad files.
    ``spinning=False``: idle intra-op threads sleep instead of spinning (a server that shares its cores with
    its clients or a browser: measured 2x faster per picture there, docs/serving.md).
    ``memory_arena=False``: CPU activations are allocated per call instead of kept in ONNX Runtime's arena
    (a server's resident memory then stays near the model's size whatever batches it has run)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailableError("ONNX Runtime is not installed: pip install onnxruntime") from None
    providers = provider_config(ort.get_available_providers(), providers, device_id=device_id, cuda_graph=cuda_graph)
    for entry in providers:
        if isinstance(entry, tuple) and entry[0] == TENSORRT_EP:
            Path(entry[1]["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or default_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = memory_arena
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    source = "graph" if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes):
        path = Path(model)
        if not path.is_file():
            raise ModelFormatError(f"ONNX file not found: {path}")
        model = str(path)
    try:
        # A graph ONNX Runtime refuses is retried once on its fallback providers, and onnxruntime's Python
        # wrapper print()s that ("*************** EP Error ***", four lines on stdout, before our one line):
        # its prints go to the log instead (found fuzzing, tests/fuzz/regressions/onnx_graph/input_name_not_utf8)
        with contextlib.redirect_stdout(io.StringIO()) as said:
            try:
                return ort.InferenceSession(model, so, providers=providers)
            finally:
                if said.getvalue().strip():
                    log.debug("onnxruntime: %s", " ".join(said.getvalue().split()))
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types, all of them user-facing here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(f"ONNX Runtime cannot load {source}: {first[:300]}") from None


@dataclass
class _Shared:
    """A GPU session shared by every backend of this process on the same file and options."""

    session: object
    key: tuple
    cuda_graph: bool
    lock: threading.Lock = field(default_factory=threading.Lock)  # ORT's CUDA graphs: one run at a time
    graph_ids: itertools.count = field(default_factory=itertools.count)  # gpu_graph_id: unique per session
    users: int = 0


_SHARED: dict[tuple, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _shared_session(path: Path, providers, threads, cuda_graph: bool, device_id: int) -> _Shared:
    """One session per (file, options) per process: the exhaustive cuDNN search and CUDA-graph captures are
    paid once, however many backends open the graph."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, repr(providers), threads, cuda_graph, device_id)
    with _SHARED_LOCK:
        shared = _SHARED.get(key)
        if shared is None:
            session = make_session(path, providers, threads, cuda_graph=cuda_graph, device_id=device_id)
            shared = _SHARED[key] = _Shared(session, key, cuda_graph)
        shared.users += 1
        return shared


def _release(shared: _Shared) -> None:
    with _SHARED_LOCK:
        shared.users -= 1
        if shared.users <= 0:
            _SHARED.pop(shared.key, None)


@dataclass
class _Bound:
    """Device-resident inputs and output for one set of input shapes, bound once (fixed addresses)."""

    binding: object
    inputs: dict
    output: object
    run_options: object


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        model: str | Path,
        providers: list[str] | None = None,
        threads: int | None = None,
        *,
        tensorrt_ep: bool = False,
        cuda_graph: bool = True,
        io_binding: bool | None = None,
        device_id: int = 0,
        memory_arena: bool = True,
        spinning: bool = True,
        require_measured: bool = True,
    ) -> None:
        """``providers``: None = CUDA where installed, else CPU. ``tensorrt_ep``: put ONNX Runtime's TensorRT
        provider first (with its engine cache). ``cuda_graph``: on the CUDA provider, capture CUDA graphs when
        every node runs there. ``io_binding``: device-resident bound buffers (default: on GPU providers).
        ``memory_arena``: keep CPU activations in ONNX Runtime's arena (default; off for long-running servers).
        ``spinning``: let idle CPU threads spin for work (default; off for servers sharing their cores).
        ``require_measured``: an int8 graph runs only where export recorded its picture within the int8 tier's
        bound (``spade_rt.runtime.tiers``; export's own measurement turns this off)."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError("ONNX Runtime is not installed: pip install onnxruntime") from None

        if tensorrt_ep:
            providers = [TENSORRT_EP, *[p for p in (providers or PROVIDER_ORDER) if p != TENSORRT_EP]]
            providers = [p for p in providers if p in ort.get_available_providers() or p == TENSORRT_EP]
        names = [p if isinstance(p, str) else p[0] for p in provider_config(ort.get_available_providers(), providers)]
        self._shared: _Shared | None = None
        path = Path(model)
        if names[0] != "CPUExecutionProvider":
            want_graph = cuda_graph and names[0] == "CUDAExecutionProvider"
            try:
                self._shared = _shared_session(path, providers, threads, want_graph, device_id)
            except ModelFormatError as exc:
                if not want_graph:
                    raise
                log.warning("CUDA graphs off for %s (%s): every node must run on the CUDA provider", path.name, exc)
                self._shared = _shared_session(path, providers, threads, False, device_id)
            self.session = self._shared.session
        else:
            self.session = make_session(model, providers, threads, memory_arena=memory_arena, spinning=spinning)
        meta, _, inputs, outputs = session_strings(self.session, str(model))
        self.spec = spec_from_onnx_metadata(meta, str(model))
        self.tier = graph_tier(self.spec)  # exact, or int8 for a quantized graph (ONNX Runtime runs no half tier)
        self.measured = check_offered(model, self.tier) if require_measured and isinstance(model, str | Path) else None
        self.providers = self.session.get_providers()
        self.on_gpu = self.providers[0] != "CPUExecutionProvider"
        self.cuda_graph = bool(self._shared and self._shared.cuda_graph)
        self.io_binding = self.on_gpu if io_binding is None else io_binding
        self._device = ("cuda", device_id) if self.on_gpu else ("cpu", 0)
        self.input_names = {name for name, _, _ in inputs}
        self._out_dtype = np.uint8 if outputs[0][1] == "tensor(uint8)" else np.float32
        self._bound: dict[tuple, _Bound] = {}
        self.last_times = StageTimes()
        log.debug(
            "onnxruntime session on %s (IO binding %s, CUDA graphs %s)",
            ", ".join(self.providers),
            self.io_binding,
            self.cuda_graph,
        )

    def _feeds(self, labels, edges, z) -> dict[str, np.ndarray]:
        return graph_feeds(self.input_names, labels, edges, z)

    def _output_shape(self, labels_shape: tuple[int, ...]) -> tuple[int, ...]:
        n, h, w = labels_shape
        return (n, h, w, 3) if self._out_dtype == np.uint8 else (n, 3, h, w)

    def _bind(self, key: tuple, feeds: dict[str, np.ndarray], keep: bool) -> _Bound:
        """Device buffers for these input shapes, bound once; a CUDA-graph id of their own when kept."""
        import onnxruntime as ort

        device, device_id = self._device
        binding = self.session.io_binding()
        inputs = {}
        for name, arr in feeds.items():
            inputs[name] = ort.OrtValue.ortvalue_from_shape_and_type(arr.shape, arr.dtype, device, device_id)
            binding.bind_ortvalue_input(name, inputs[name])
        shape = self._output_shape(feeds[LABELS].shape)
        output = ort.OrtValue.ortvalue_from_shape_and_type(shape, self._out_dtype, device, device_id)
        binding.bind_ortvalue_output(IMAGE, output)
        run_options = ort.RunOptions()
        if self.cuda_graph:  # each set of shapes replays its own graph (-1: this one runs without)
            graph_id = next(self._shared.graph_ids) if keep else -1
            run_options.add_run_config_entry("gpu_graph_id", str(graph_id))
        bound = _Bound(binding, inputs, output, run_options)
        if keep:
            self._bound[key] = bound
        return bound

    def run(self, labels: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
        feeds = self._feeds(labels, edges, z)
        t0 = time.perf_counter()
        if not self.io_binding:
            out = self.session.run([IMAGE], feeds)[0]
            total = (time.perf_counter() - t0) * 1e3
            self.last_times = StageTimes(0.0, total, 0.0, total)
            return out
        key = tuple((name, arr.shape, arr.dtype.str) for name, arr in feeds.items())
        bound = self._bound.get(key) or self._bind(key, feeds, keep=len(self._bound) < MAX_BOUND_SHAPES)
        for name, arr in feeds.items():
            bound.inputs[name].update_inplace(np.ascontiguousarray(arr))  # into the bound buffer: address kept
        t1 = time.perf_counter()
        if self._shared is not None:
            with self._shared.lock:
                self.session.run_with_iobinding(bound.binding, bound.run_options)
        else:
            self.session.run_with_iobinding(bound.binding, bound.run_options)
        t2 = time.perf_counter()
        out = bound.output.numpy()  # device -> host (uint8 graphs copy a quarter of the float bytes)
        if not self.on_gpu:
            out = out.copy()  # a CPU OrtValue's numpy() is a view of the bound buffer the next call overwrites
        t3 = time.perf_counter()
        self.last_times = StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t3 - t0) * 1e3)
        return out

    def close(self) -> None:
        self._bound = {}
        if self._shared is not None:
            _release(self._shared)
            self._shared = None
        self.session = None


def session_strings(session, source: str) -> tuple[dict[str, str], str, list[tuple], list[tuple]]:
    """(metadata_props, producer_name, inputs, outputs) of a session, IO as (name, type, shape); ONNX Runtime
    hands a graph's strings over as they are stored, so bytes that are not UTF-8 (a damaged file) become one
    ModelFormatError here instead of a UnicodeDecodeError wherever they are read."""
    try:
        meta = session.get_modelmeta()
        custom, producer = dict(meta.custom_metadata_map), meta.producer_name
        inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
        outputs = [(o.name, o.type, o.shape) for o in session.get_outputs()]
    except UnicodeDecodeError as exc:
        raise ModelFormatError(
            f"{source}: its metadata, producer or IO names are not UTF-8 text ({exc.reason} at byte {exc.start}): "
            "a damaged file; export it again with `spade-rt export`"
        ) from None
    return custom, producer, inputs, outputs
