"""TensorRT / TensorRT-RTX backend: the lowest-latency path.

Order of work, cheapest checks first (a stale engine is reported before any GPU memory is touched):
1. read the manifest beside the engine (``X.engine.json``) and check it against the installed TensorRT;
2. open the GPU (cuda-python) and check its compute capability against the manifest's targets;
3. ask TensorRT whether the engine header is valid here; only then deserialise the whole file.
A stale engine raises EngineCompatibilityError with the `spade-rt build` command that fixes it, or, with
``rebuild=True`` and the ONNX graph beside it, is rebuilt in place.

A TensorRT-RTX engine on a GPU that TensorRT-RTX does not support (Hopper: H100/H200) is refused with what
runs there instead (the ONNX graph on ONNX Runtime's CUDA provider, or full TensorRT); ``rebuild`` then uses
full TensorRT if installed and never rebuilds with TensorRT-RTX again.

Per call (``spade_rt.engines.runner``): the input's real shapes (dynamic H x W included), device buffers
allocated once for the profile's maximum and bound once, pinned host staging buffers, one stream,
``execute_async_v3``; a CUDA graph for the current input shapes, recaptured when they change (TensorRT;
TensorRT-RTX captures itself); ``cudaSetDevice`` in the calling thread; GPU inputs wait for their producer's
stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spade_rt.engines.adapter import TensorRT
from spade_rt.engines.cuda import Cuda
from spade_rt.engines.manifest import load_manifest, read_checked_engine, spec_from_manifest, staleness
from spade_rt.engines.runner import EngineRunner
from spade_rt.errors import BackendUnavailableError, EngineCompatibilityError
from spade_rt.runtime.backend import Backend, StageTimes
from spade_rt.runtime.spec import EDGES, IMAGE, LABELS, Z

log = logging.getLogger(__name__)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self,
        model: str | Path,
        trt_backend: str | None = None,
        cuda_graphs: bool = True,
        rebuild: bool = False,
        device: int = 0,
        trust_engine: bool = False,
        cuda: Callable[[int], Cuda] | None = None,
    ) -> None:
        self.path = Path(model)
        manifest = load_manifest(self.path)  # typed and bounded (engines.manifest.check_manifest)
        data = read_checked_engine(self.path, manifest, trust_engine)  # sha256 vs manifest, before TensorRT
        self.trt = TensorRT.load(trt_backend or manifest["builder"]["backend"])
        self.spec = spec_from_manifest(manifest, str(self.path))
        self.last_times = StageTimes()
        self._runner: EngineRunner | None = None
        self.cuda = None
        open_gpu = cuda or Cuda  # ``cuda``: a stand-in for the CUDA layer (tests), called with the device index
        reason = staleness(manifest, self.trt, None)  # before touching the GPU
        if reason is None:
            self.cuda = open_gpu(device)
        elif rebuild:  # know the GPU before rebuilding, so that a rebuild that cannot help is never made
            try:
                self.cuda = open_gpu(device)
            except BackendUnavailableError:
                self.cuda = None  # reported after the rebuild, as before
        if self.cuda is not None:
            reason = reason or staleness(manifest, self.trt, self.cuda.info.compute_capability)
        if reason is not None:
            manifest = self._rebuild_or_raise(manifest, reason, rebuild)
            if self.cuda is None:
                self.cuda = open_gpu(device)
            # the rebuilt engine is checked against this GPU like any other, never assumed to fit
            reason = staleness(manifest, self.trt, self.cuda.info.compute_capability)
            if reason is not None:
                raise EngineCompatibilityError(f"{self.path.name} was rebuilt but still cannot run here: {reason}")
            data = read_checked_engine(self.path, manifest, trust_engine)
        self.manifest = manifest
        self._open_engine(data, cuda_graphs)

    # ---- staleness -----------------------------------------------------------------------------------
    def _rebuild_or_raise(self, manifest: dict, reason: str, rebuild: bool) -> dict:
        """Rebuild in place when that can help; else EngineCompatibilityError saying what would.

        A TensorRT-RTX engine on a GPU that TensorRT-RTX does not support (Hopper, data-centre Blackwell,
        Jetson) cannot be helped by building with TensorRT-RTX again: the message names what runs there (the
        ONNX graph on ONNX Runtime's CUDA provider, or full TensorRT), and ``rebuild`` uses full TensorRT
        when it is installed, never TensorRT-RTX.
        """
        onnx_path = self.path.parent / manifest["onnx"]
        command = f"spade-rt build {onnx_path} -o {self.path}"
        backend = self.trt.backend
        cc = None if self.cuda is None else self.cuda.info.compute_capability
        if cc is not None and not self.trt.supports_gpu(cc):
            message = (
                f"{self.path.name} cannot run here: {reason}. Run the ONNX graph instead (`spade-rt synthesize "
                f"{onnx_path} ...`: ONNX Runtime's CUDA provider, pip install onnxruntime-gpu), or build with full "
                f"TensorRT on this machine (`spade-rt build {onnx_path} --backend tensorrt -o {self.path}`, "
                "pip install 'spade-rt[trt-cu12]' or 'spade-rt[trt-cu13]')"
            )
            if not rebuild:
                raise EngineCompatibilityError(message)
            try:
                self.trt = TensorRT.load("tensorrt")
            except BackendUnavailableError:
                raise EngineCompatibilityError(
                    f"{message}; --rebuild does not rebuild with TensorRT-RTX again, and full TensorRT is not installed"
                ) from None
            backend, command = "tensorrt", f"{command} --backend tensorrt"
        elif not rebuild:
            raise EngineCompatibilityError(f"{self.path.name} cannot run here: {reason}; rebuild it with `{command}`")
        if not onnx_path.is_file():
            raise EngineCompatibilityError(
                f"{self.path.name} cannot run here ({reason}) and its ONNX graph {onnx_path} is not beside it to "
                "rebuild from"
            )
        log.warning("%s is stale (%s): rebuilding from %s with %s", self.path.name, reason, onnx_path.name, backend)
        from spade_rt.engines.build import build_engine  # needs onnx: imported only to rebuild

        return build_engine(onnx_path, self.path, backend=backend)

    def _open_engine(self, data: bytes, cuda_graphs: bool) -> None:
        """Deserialise ``data`` (the checked bytes of the engine file) and set up its runner."""
        trt, cuda = self.trt, self.cuda
        self._errors: list[str] = []
        self._logger = trt.logger(self._errors)
        self.runtime = trt.create_runtime(self._logger)  # host code in engines disallowed, explicitly
        ok, why = trt.engine_validity(self.runtime, data[: getattr(self.runtime, "engine_header_size", 64)])
        if not ok:
            raise EngineCompatibilityError(
                f"{self.path.name} is not valid on this GPU ({why}); rebuild it with "
                f"`spade-rt build {self.manifest['onnx']} -o {self.path}`"
            )
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineCompatibilityError(f"cannot deserialise {self.path.name}: {'; '.join(self._errors[-2:])}")
        cache_file = Path(f"{self.path}.rtxcache")
        self._cache_file = cache_file
        self._runtime_config, self._runtime_cache = trt.runtime_config(
            self.engine, cache_file.read_bytes() if cache_file.is_file() else None, cuda_graphs, str(cache_file)
        )
        self._runner = EngineRunner(
            self.engine,
            trt,
            cuda,
            self.manifest["inputs"],
            np.dtype(self.manifest["outputs"][IMAGE]["dtype"]),
            "nhwc" if self.spec.output == "uint8" else "nchw",
            runtime_config=self._runtime_config,
            own_graphs=cuda_graphs and self._runtime_config is None,  # TensorRT: we capture ourselves
            errors=self._errors,
        )
        log.info("%s on %s (%s %s)", self.path.name, cuda.info.name, trt.module_name, trt.version)

    # ---- running (engines/runner.py: shapes per call, contexts, graphs, streams) ----------------------------
    def run(self, labels: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
        arrays = {LABELS: labels, EDGES: edges, Z: z}
        result = self._runner.run({name: arrays[name] for name in self.manifest["inputs"]})
        self.last_times = self._runner.last_times
        return result

    def run_device(self, labels, edges=None, z=None, out=None) -> object:
        """GPU arrays in and out, device to device (``__cuda_array_interface__`` v3 with its ``stream``, or
        DLPack): our stream first waits for the producer's; the result goes into ``out`` or, without it, the
        device pointer of the engine's output buffer is returned (valid until the next call)."""
        arrays = {LABELS: labels, EDGES: edges, Z: z}
        result = self._runner.run_device({name: arrays[name] for name in self.manifest["inputs"]}, out)
        self.last_times = self._runner.last_times
        return result

    def close(self) -> None:
        cuda = self.cuda
        if cuda is None:
            return
        cuda.activate()  # close may come from another thread than the one that opened the engine
        if getattr(self, "_runtime_cache", None) is not None:
            try:
                from spade_rt.io_utils import atomic_write_bytes

                atomic_write_bytes(self._cache_file, bytes(self._runtime_cache.serialize()))
            except Exception as exc:  # the cache only saves JIT time next start
                log.warning("could not save the runtime cache %s: %s", self._cache_file, exc)
        if self._runner is not None:
            self._runner.close()  # graphs, contexts, buffers, events, stream: before the engine goes
            self._runner = None
        self.engine = None
        self.cuda = None
