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
        raise BackendUnavailableError(
            f"{name} is not installed ({exc}): pip install 'spade-rt[{extra}-cu13]' (driver R580+) or "
            f"'spade-rt[{extra}-cu12]' (older drivers)"
        ) from None
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
        for name in ("tensorrt", "tensorrt-rtx"):
            try:
                return cls(_import(name), name)
            except BackendUnavailableError:
                continue
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
    def runtime_config(
        self, engine, runtime_cache_blob: bytes | None, cuda_graphs: bool, source: str = "the runtime cache"
    ):
        """TensorRT-RTX: a runtime config with the JIT cache, whole-graph CUDA capture and eager kernel
        specialisation. TensorRT: (None, None).

        A cache blob that does not load (``deserialize`` returns False: another TensorRT-RTX, GPU, driver
        major or OS, or a corrupt file; it raises on some versions) is logged and replaced by an empty cache,
        which is saved over it on close: a stale cache costs JIT time once, never a wrong result.
        Eager specialisation compiles a shape's specialised kernels before its first run instead of running
        fallback kernels until a background compile lands (LAZY, the default): latency after the first call
        at a shape is then the steady one, not a mixture.
        """
        if not self.is_rtx or not hasattr(engine, "create_runtime_config"):
            return None, None
        cfg = engine.create_runtime_config()
        cache = cfg.create_runtime_cache()
        if runtime_cache_blob:
            try:
                loaded, why = bool(cache.deserialize(runtime_cache_blob)), "it does not match this engine/GPU/driver"
            except Exception as exc:  # some versions raise instead of returning False
                loaded, why = False, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if loaded:
                log.info("runtime cache %s loaded (%d bytes)", source, len(runtime_cache_blob))
            else:
                log.warning("ignoring %s (%s): kernels are compiled again and the cache is rewritten", source, why)
                cache = cfg.create_runtime_cache()  # a rejected blob may leave a cache half-loaded: start clean
        cfg.set_runtime_cache(cache)
        if cuda_graphs:
            cfg.cuda_graph_strategy = self.module.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        strategies = getattr(self.module, "DynamicShapesKernelSpecializationStrategy", None)
        if strategies is not None and hasattr(cfg, "dynamic_shapes_kernel_specialization_strategy"):
            cfg.dynamic_shapes_kernel_specialization_strategy = strategies.EAGER
        return cfg, cache

    def supports_gpu(self, compute_capability: str) -> bool:
        """Whether this TensorRT can run engines on a GPU of this compute capability at all.

        Full TensorRT builds on and for the GPU it runs on (any GPU its release supports); TensorRT-RTX only
        runs on the RTX-class architectures its ``ComputeCapability`` enum lists (Turing 7.5, Ampere 8.0/8.6,
        Ada 8.9, Blackwell 12.x): not on Hopper (9.0: H100, H200), data-centre Blackwell (10.x) or Jetson.
        """
        if not self.is_rtx:
            return True
        members = getattr(self.module, "ComputeCapability", None)
        names = list(members.__members__) if members is not None else []
        listed = {f"{m[2:-1]}.{m[-1]}" for m in names if m.startswith("SM") and m[2:].isdigit()}
        if not listed:
            listed = {"7.5", *RTX_DEFAULT_TARGETS}
        return compute_capability in listed

    def execution_context(self, engine, runtime_config=None):
        """A new execution context: with the runtime config (TensorRT-RTX: JIT cache, CUDA graphs), or plain."""
        if runtime_config is not None:
            return engine.create_execution_context(runtime_config)
        return engine.create_execution_context()

    def create_runtime(self, logger):
        """A Runtime that refuses engines carrying host code (plugins, lean runtimes), set explicitly.

        ``engine_host_code_allowed`` is False by default in TensorRT 10+ and TensorRT-RTX 1.x; setting it
        ourselves means a future default cannot change what a deserialised engine may run. A TensorRT without
        the attribute has no way to embed host code in an engine at all.
        """
        runtime = self.module.Runtime(logger)
        if runtime is None:
            raise BackendUnavailableError(f"{self.module_name} {self.version} could not create a runtime")
        if hasattr(runtime, "engine_host_code_allowed"):
            runtime.engine_host_code_allowed = False
            if runtime.engine_host_code_allowed:
                raise BackendUnavailableError(
                    f"{self.module_name} {self.version} does not let spade-rt disallow host code in engines"
                )
        return runtime

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
