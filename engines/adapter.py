"""The one place where ``tensorrt`` (10.x / 11.x) and ``tensorrt_rtx`` differ.

Builder and runner both go through ``TensorRT``; nothing else in spade-rt branches on the module or its
version. Differences handled here:
- import name and version;
- strongly typed networks: a creation flag on TensorRT 10, the only mode on TensorRT 11 and TensorRT-RTX;
- caches: a builder timing cache (TensorRT) vs a runtime JIT-kernel cache (TensorRT-RTX);
- target GPUs: TensorRT builds for the GPU it runs on; TensorRT-RTX builds ahead of time, without a GPU,
  for a list of compute capabilities;
- CUDA graphs: TensorRT-RTX captures the whole engine itself (a runtime-config strategy); with TensorRT
  the runner captures ``execute_async_v3`` in a CUDA graph.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType

from spade_rt.errors import BackendUnavailableError

log = logging.getLogger(__name__)

MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
RTX_DEFAULT_TARGETS = ("8.0", "8.6", "8.9", "12.0")  # TensorRT-RTX's default targets (7.5 must be asked for)


def _import(backend: str) -> ModuleType:
    name = MODULES[backend]
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        extra = "rtx" if backend == "tensorrt-rtx" else "trt"
        raise BackendUnavailableError(f"{name} is not installed ({exc}): pip install 'spade-rt[{extra}]'") from None
    if not hasattr(module, "Builder"):  # the PyPI 'tensorrt' stub that failed to fetch its real wheel
        raise BackendUnavailableError(f"{name} is installed but incomplete (no Builder): reinstall it")
    return module


@dataclass
class TensorRT:
    module: ModuleType
    backend: str  # 'tensorrt' | 'tensorrt-rtx'

    @classmethod
    def load(cls, backend: str = "auto") -> TensorRT:
        """'auto': full TensorRT if it imports, else TensorRT-RTX."""
        if backend not in ("auto", *MODULES):
            raise BackendUnavailableError(
                f"unknown TensorRT backend {backend!r}: expected auto, tensorrt, tensorrt-rtx"
            )
        if backend != "auto":
            return cls(_import(backend), backend)
        errors = []
        for name in ("tensorrt", "tensorrt-rtx"):
            try:
                return cls(_import(name), name)
            except BackendUnavailableError as exc:
                errors.append(str(exc))
        raise BackendUnavailableError(
            "no TensorRT is installed: pip install 'spade-rt[rtx]' (TensorRT for RTX, builds on any machine) "
            "or 'spade-rt[trt]' (full TensorRT)"
        )

    # ---- facts -------------------------------------------------------------------------------------------
    @property
    def is_rtx(self) -> bool:
        return self.backend == "tensorrt-rtx"

    @property
    def module_name(self) -> str:
        return self.module.__name__

    @property
    def version(self) -> str:
        return self.module.__version__

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    # ---- logging -----------------------------------------------------------------------------------------
    def logger(self, errors: list[str] | None = None):
        """An ILogger that forwards to Python logging and keeps error messages for exceptions."""
        trt = self.module
        severity = trt.ILogger.Severity

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, level, msg):
                if level in (severity.INTERNAL_ERROR, severity.ERROR):
                    if errors is not None:
                        errors.append(msg)
                    log.debug("TensorRT: %s", msg)
                elif level == severity.WARNING:
                    log.debug("TensorRT warning: %s", msg)

        return _Logger()

    # ---- build -------------------------------------------------------------------------------------------
    def create_network(self, builder):
        """Strongly typed: the ONNX types decide every layer's precision (fp16 graphs give fp16 kernels)."""
        flags = 0
        creation = self.module.NetworkDefinitionCreationFlag
        if not self.is_rtx and self.major < 11 and hasattr(creation, "STRONGLY_TYPED"):
            flags = 1 << int(creation.STRONGLY_TYPED)
        return builder.create_network(flags)

    def set_workspace(self, config, nbytes: int | None) -> None:
        if nbytes:
            config.set_memory_pool_limit(self.module.MemoryPoolType.WORKSPACE, nbytes)

    def set_targets(self, config, compute_capabilities: list[str] | None) -> list[str]:
        """TensorRT-RTX: ahead-of-time targets. TensorRT: the building GPU (the list must be empty)."""
        if not self.is_rtx:
            if compute_capabilities:
                raise BackendUnavailableError(
                    "full TensorRT builds for the GPU it runs on; --compute-capability is a TensorRT-RTX option"
                )
            return ["build GPU"]
        if not compute_capabilities:
            return [*RTX_DEFAULT_TARGETS, "later"]
        members = self.module.ComputeCapability.__members__
        config.num_compute_capabilities = len(compute_capabilities)
        for i, cc in enumerate(compute_capabilities):
            key = "SM" + cc.replace(".", "")
            if key not in members:
                accepted = ", ".join(f"{m[2:-1]}.{m[-1]}" for m in members if m.startswith("SM"))
                raise BackendUnavailableError(f"compute capability {cc} is not one of {accepted}")
            config.set_compute_capability(members[key], i)
        return list(compute_capabilities)

    def attach_timing_cache(self, config, blob: bytes | None):
        """TensorRT's tactic timing cache (TensorRT-RTX times nothing ahead of time: returns None)."""
        if self.is_rtx:
            return None
        cache = config.create_timing_cache(blob or b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        return cache

    # ---- run ---------------------------------------------------------------------------------------------
    def runtime_config(self, engine, runtime_cache_blob: bytes | None, cuda_graphs: bool):
        """TensorRT-RTX: a runtime config with the JIT cache and whole-graph CUDA capture. TensorRT: None."""
        if not self.is_rtx or not hasattr(engine, "create_runtime_config"):
            return None, None
        cfg = engine.create_runtime_config()
        cache = cfg.create_runtime_cache()
        if runtime_cache_blob:
            try:
                cache.deserialize(runtime_cache_blob)
            except Exception as exc:  # a stale cache is only slower, never wrong
                log.warning("ignoring an unreadable runtime cache: %s", exc)
        cfg.set_runtime_cache(cache)
        if cuda_graphs:
            cfg.cuda_graph_strategy = self.module.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        return cfg, cache

    def engine_validity(self, runtime, header: bytes) -> tuple[bool, str]:
        """(valid, reason) from the engine header, before deserialising the whole file, where supported."""
        if not hasattr(runtime, "get_engine_validity"):
            return True, "not checked (this TensorRT has no validity API)"
        try:
            validity, diagnostics = runtime.get_engine_validity(header)
        except Exception as exc:
            return False, str(exc)
        ok = validity != self.module.EngineValidity.INVALID
        return ok, f"{validity.name.lower()} (diagnostics {int(diagnostics)})"
