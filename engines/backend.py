"""TensorRT / TensorRT-RTX backend: the lowest-latency path.

Order of work, cheapest checks first (a stale engine is reported before any GPU memory is touched):
1. read the manifest beside the engine (``X.engine.json``) and check it against the installed TensorRT;
2. open the GPU (cuda-python) and check its compute capability against the manifest's targets;
3. ask TensorRT whether the engine header is valid here; only then deserialise the whole file.
A stale engine raises EngineCompatibilityError with the `spade-rt build` command that fixes it, or, with
``rebuild=True`` and the ONNX graph beside it, is rebuilt in place.

Per call: device buffers allocated once for the profile's maximum shapes, pinned host staging buffers, one
stream, ``set_input_shape`` only when the batch changes, addresses bound once, ``execute_async_v3``.
CUDA graphs: TensorRT-RTX captures the whole engine itself (runtime-config strategy); with TensorRT the
first call at a new shape is captured and later calls replay it. CUDA events time each stage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spade_rt.engines.adapter import TensorRT
from spade_rt.engines.cuda import Cuda, cuda_array_pointer
from spade_rt.engines.manifest import load_manifest, spec_from_manifest, staleness
from spade_rt.errors import EngineCompatibilityError, InputError
from spade_rt.runtime.backend import Backend, StageTimes
from spade_rt.runtime.spec import EDGES, IMAGE, LABELS, Z

log = logging.getLogger(__name__)


@dataclass
class _Tensor:
    name: str
    dtype: np.dtype
    max_shape: tuple[int, ...]
    device: int  # device pointer, sized for max_shape
    host_ptr: int
    host: np.ndarray  # pinned, flat, max_shape elements

    @property
    def max_bytes(self) -> int:
        return int(np.prod(self.max_shape)) * self.dtype.itemsize


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self,
        model: str | Path,
        trt_backend: str | None = None,
        cuda_graphs: bool = True,
        rebuild: bool = False,
        device: int = 0,
    ) -> None:
        self.path = Path(model)
        manifest = load_manifest(self.path)
        self.trt = TensorRT.load(trt_backend or manifest["builder"]["backend"])
        self.spec = spec_from_manifest(manifest, str(self.path))
        self.last_times = StageTimes()
        self._tensors: dict[str, _Tensor] = {}
        self.cuda = None
        reason = staleness(manifest, self.trt, None)  # before touching the GPU
        if reason is None:
            self.cuda = Cuda(device)
            reason = staleness(manifest, self.trt, self.cuda.info.compute_capability)
        if reason is not None:
            manifest = self._rebuild_or_raise(manifest, reason, rebuild)
        if self.cuda is None:
            self.cuda = Cuda(device)
        self.manifest = manifest
        self._open_engine(cuda_graphs)

    # ---- staleness -----------------------------------------------------------------------------------
    def _rebuild_or_raise(self, manifest: dict, reason: str, rebuild: bool) -> dict:
        onnx_path = self.path.parent / manifest["onnx"]
        command = f"spade-rt build {onnx_path} -o {self.path}"
        if not rebuild:
            raise EngineCompatibilityError(f"{self.path.name} cannot run here: {reason}; rebuild it with `{command}`")
        if not onnx_path.is_file():
            raise EngineCompatibilityError(
                f"{self.path.name} cannot run here ({reason}) and its ONNX graph {onnx_path} is not beside it to "
                "rebuild from"
            )
        log.warning("%s is stale (%s): rebuilding from %s", self.path.name, reason, onnx_path.name)
        from spade_rt.engines.build import build_engine  # needs onnx: imported only to rebuild

        return build_engine(onnx_path, self.path, backend=self.trt.backend)

    def _open_engine(self, cuda_graphs: bool) -> None:
        trt, cuda = self.trt, self.cuda
        self._errors: list[str] = []
        self._logger = trt.logger(self._errors)
        self.runtime = trt.module.Runtime(self._logger)
        data = self.path.read_bytes()
        ok, why = trt.engine_validity(self.runtime, data[: getattr(self.runtime, "engine_header_size", 64)])
        if not ok:
            raise EngineCompatibilityError(
                f"{self.path.name} is not valid on this GPU ({why}); rebuild it with "
                f"`spade-rt build {self.manifest['onnx']} -o {self.path}`"
            )
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineCompatibilityError(f"cannot deserialise {self.path.name}: {'; '.join(self._errors[-2:])}")
        del data
        cache_file = Path(f"{self.path}.rtxcache")
        self._cache_file = cache_file
        self._runtime_config, self._runtime_cache = trt.runtime_config(
            self.engine, cache_file.read_bytes() if cache_file.is_file() else None, cuda_graphs
        )
        if self._runtime_config is not None:
            self.context = self.engine.create_execution_context(self._runtime_config)
        else:
            self.context = self.engine.create_execution_context()
        self._own_graphs = cuda_graphs and self._runtime_config is None  # TensorRT: we capture ourselves
        self._graphs: dict[tuple, object] = {}
        self.stream = cuda.stream()
        self._events = [cuda.event() for _ in range(4)]
        for name, io in self.manifest["inputs"].items():
            self._tensors[name] = self._allocate(name, np.dtype(io["dtype"]), tuple(io["max"]))
        out_shape = self._output_shape(self.spec.max_batch)
        self._tensors[IMAGE] = self._allocate(IMAGE, np.dtype(self.manifest["outputs"][IMAGE]["dtype"]), out_shape)
        for t in self._tensors.values():
            self.context.set_tensor_address(t.name, t.device)  # bound once: buffers never move
        self._shapes: dict[str, tuple] = {}
        log.info("%s on %s (%s %s)", self.path.name, cuda.info.name, trt.module_name, trt.version)

    def _allocate(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> _Tensor:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        device = self.cuda.malloc(nbytes)
        host_ptr, host = self.cuda.pinned(nbytes, dtype)
        return _Tensor(name, dtype, shape, device, host_ptr, host)

    def _output_shape(self, batch: int) -> tuple[int, ...]:
        h, w = self.spec.labels.height, self.spec.labels.width
        return (batch, h, w, 3) if self.spec.output == "uint8" else (batch, 3, h, w)

    # ---- running -------------------------------------------------------------------------------------
    def _set_shapes(self, batch: int) -> bool:
        """set_input_shape only for inputs whose shape changed; True if anything changed."""
        changed = False
        for name in self.manifest["inputs"]:
            shape = (batch, self.spec.z_dim) if name == Z else (batch, self.spec.labels.height, self.spec.labels.width)
            if self._shapes.get(name) != shape:
                if not self.context.set_input_shape(name, shape):
                    profile = self.manifest["inputs"][name]
                    raise InputError(f"{name} shape {shape} is outside the engine's profile {profile}")
                self._shapes[name] = shape
                changed = True
        return changed

    def _execute(self, batch: int) -> None:
        cuda = self.cuda
        if not self._own_graphs:
            if not self.context.execute_async_v3(self.stream):
                raise InputError(f"TensorRT failed to execute: {'; '.join(self._errors[-2:])}")
            return
        key = (batch,)
        graph = self._graphs.get(key)
        if graph is None:
            # one plain run first (lazy allocations), then capture the enqueue and replay it from now on
            if not self.context.execute_async_v3(self.stream):
                raise InputError(f"TensorRT failed to execute: {'; '.join(self._errors[-2:])}")
            cuda.synchronize(self.stream)
            cuda.begin_capture(self.stream)
            self.context.execute_async_v3(self.stream)
            self._graphs[key] = graph = cuda.end_capture(self.stream)
        cuda.launch_graph(graph[1], self.stream)

    def run(self, labels: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
        cuda, ev = self.cuda, self._events
        batch = labels.shape[0]
        self._set_shapes(batch)
        t0 = time.perf_counter()
        cuda.record(ev[0], self.stream)
        for name, arr in ((LABELS, labels), (EDGES, edges), (Z, z)):
            if name not in self._tensors:
                continue
            t = self._tensors[name]
            n = arr.size
            t.host[:n] = arr.ravel()  # into pinned memory: the async copy needs page-locked source
            cuda.copy_async(t.device, t.host_ptr, n * t.dtype.itemsize, "h2d", self.stream)
        cuda.record(ev[1], self.stream)
        self._execute(batch)
        cuda.record(ev[2], self.stream)
        out = self._tensors[IMAGE]
        shape = self._output_shape(batch)
        nbytes = int(np.prod(shape)) * out.dtype.itemsize
        cuda.copy_async(out.host_ptr, out.device, nbytes, "d2h", self.stream)
        cuda.record(ev[3], self.stream)
        cuda.synchronize(self.stream)
        result = out.host[: int(np.prod(shape))].reshape(shape).copy()
        self.last_times = StageTimes(
            cuda.elapsed_ms(ev[0], ev[1]),
            cuda.elapsed_ms(ev[1], ev[2]),
            cuda.elapsed_ms(ev[2], ev[3]),
            (time.perf_counter() - t0) * 1e3,
        )
        return result

    def run_device(self, labels, edges=None, z=None, out=None) -> object:
        """Zero-copy: GPU arrays in (``__cuda_array_interface__``), the result into ``out`` (or ours, returned).

        Inputs are copied device-to-device into the engine's bound buffers (addresses stay fixed, so captured
        graphs stay valid); without ``out`` the device pointer of the engine's output buffer is returned.
        """
        cuda = self.cuda
        h, w = self.spec.labels.height, self.spec.labels.width
        batch = labels.__cuda_array_interface__["shape"][0]
        self._set_shapes(batch)
        for name, arr, shape in (
            (LABELS, labels, (batch, h, w)),
            (EDGES, edges, (batch, h, w)),
            (Z, z, (batch, self.spec.z_dim)),
        ):
            if name not in self._tensors:
                continue
            if arr is None:
                raise InputError(f"the engine needs {name}")
            t = self._tensors[name]
            ptr = cuda_array_pointer(arr, t.dtype, shape, name)
            cuda.copy_async(t.device, ptr, int(np.prod(shape)) * t.dtype.itemsize, "d2d", self.stream)
        self._execute(batch)
        result = self._tensors[IMAGE]
        shape = self._output_shape(batch)
        if out is not None:
            ptr = cuda_array_pointer(out, result.dtype, shape, "out")
            cuda.copy_async(ptr, result.device, int(np.prod(shape)) * result.dtype.itemsize, "d2d", self.stream)
        cuda.synchronize(self.stream)
        return out if out is not None else result.device

    def close(self) -> None:
        cuda = self.cuda
        if cuda is None:
            return
        if getattr(self, "_runtime_cache", None) is not None:
            try:
                from spade_rt.io_utils import atomic_write_bytes

                atomic_write_bytes(self._cache_file, bytes(self._runtime_cache.serialize()))
            except Exception as exc:  # the cache only saves JIT time next start
                log.warning("could not save the runtime cache %s: %s", self._cache_file, exc)
        for graph, graph_exec in getattr(self, "_graphs", {}).values():
            cuda.destroy(graph_exec)
            cuda.destroy(graph)
        for t in self._tensors.values():
            cuda.free(t.device)
            cuda.free_pinned(t.host_ptr)
        self._tensors = {}
        for e in getattr(self, "_events", []):
            cuda.destroy(e)
        if getattr(self, "stream", None) is not None:
            cuda.destroy(self.stream)
        self.context = self.engine = None
        self.cuda = None
