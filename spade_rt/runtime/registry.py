"""Every backend in one table: `spade-rt synthesize --backend`, `spade-rt info/inspect` and `spade-rt bench`
derive their choices, defaults, install hints and contestants from it.

A new backend is one ``BackendEntry`` here (plus its module): the name users type, the model file kinds it
opens (the first entry that lists a kind is that kind's default), the ``module:attr`` of its ``Backend``
class and the typed options it takes (``spade_rt.runtime.backend_options``), the module whose presence says
it is installed and what to install when it is missing, the precision tiers it runs (``--tier``, with
``spade_rt.runtime.tiers.TIERS``), its place in ``auto``'s CPU preference per graph kind, the ``module:attr``
of the function that describes a file for `spade-rt inspect`, and its benchmark contestants (all, and those
`spade-rt bench` runs by default) with the ``module:attr`` of their factory. Everything else derives from
the table: ``--backend`` choices, ``auto``, the install hints, ``--tier``'s choices and checks, bench.
Nothing here imports a backend: each is imported only when chosen, so this table stays torch-free.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spade_rt.errors import BackendUnavailableError, ConfigError
from spade_rt.runtime.backend_options import (
    BackendOptions,
    OnnxRuntimeOptions,
    OpenVinoOptions,
    TensorRTOptions,
    TorchOptions,
)

TOOLCHAIN_INSTALL = "pip install 'spade-rt[export]' (CPU torch: pip install torch==2.13.0 first)"


@dataclass(frozen=True)
class BackendEntry:
    name: str
    kinds: tuple[str, ...]  # model file kinds it runs (spade_rt.runtime.model_kind.KINDS)
    factory: str  # "module:Class" of the Backend; its constructor takes (model_path, **options.given())
    options: type[BackendOptions]  # its typed options (spade_rt.runtime.backend_options)
    module: str | None  # the module that says it is installed, looked up without importing (None: on opening)
    install: str  # how to get its missing modules
    tiers: tuple[str, ...]  # the precision tiers it runs (spade_rt.runtime.tiers.TIERS); () = the file's own
    describe: str  # "module:function": path -> dict, for `spade-rt inspect` / `spade-rt info`
    contestants: tuple[str, ...]  # its `spade-rt bench` contestants
    default_contestants: tuple[str, ...]  # those `spade-rt bench` runs without --backends
    bench: str  # "module:attr": the contestants' factory (spade_rt.bench.contestants)
    summary: str
    # fp32 ONNX graphs on a CPU: graph kind (the spec's graph_options.graph) -> its place in ``auto``'s order
    # (0 first; see the comment above ``AUTO_ONNX_CPU``); a graph kind it does not list, it is not auto's pick
    auto_cpu: dict[str, int] = field(default_factory=dict, compare=False)


OPENVINO_CONTESTANTS = (
    "openvino",
    "openvino-half",
    "openvino-dedup",
    "openvino-dedup-half",
    "openvino-int8",
    "openvino-dedup-int8",
    "openvino-plain",
    "openvino-plain-exact",
    "openvino-plain-int8",
)
BACKENDS: dict[str, BackendEntry] = {
    e.name: e
    for e in (
        BackendEntry(
            name="torch",
            kinds=("native",),
            factory="spade_rt.model.torch_backend:TorchBackend",
            options=TorchOptions,
            module="torch",
            install=TOOLCHAIN_INSTALL,
            tiers=("exact",),
            describe="spade_rt.model.describe:describe_model",
            contestants=("torch", "torch-fp16", "torch-compile", "torch-compile-fp16"),
            default_contestants=("torch", "torch-compile"),
            bench="spade_rt.bench.contestants:TORCH",
            summary="the PyTorch network in the original formulation (one-hot input)",
        ),
        BackendEntry(
            name="onnxruntime",
            kinds=("onnx",),
            factory="spade_rt.runtime.onnxruntime_backend:OnnxRuntimeBackend",
            options=OnnxRuntimeOptions,
            module="onnxruntime",
            install="pip install onnxruntime (NVIDIA GPUs: onnxruntime-gpu)",
            tiers=("exact", "int8"),
            describe="spade_rt.runtime.onnx_describe:describe_graph",
            contestants=(
                "onnxruntime",
                "onnxruntime-onehot",
                "onnxruntime-dedup",
                "onnxruntime-int8",
                "onnxruntime-plain",
            ),
            default_contestants=("onnxruntime", "onnxruntime-dedup", "onnxruntime-int8", "onnxruntime-plain"),
            bench="spade_rt.bench.contestants:ONNXRUNTIME",
            summary="an exported graph on ONNX Runtime (CPU, or the CUDA provider)",
            auto_cpu={"static": 1, "dedup": 0},
        ),
        BackendEntry(
            name="openvino",
            kinds=("onnx",),
            factory="spade_rt.runtime.openvino_backend:OpenVinoBackend",
            options=OpenVinoOptions,
            module="openvino",
            install="pip install 'spade-rt[openvino]'",
            tiers=("exact", "half", "int8"),
            describe="spade_rt.runtime.onnx_describe:describe_graph",
            contestants=OPENVINO_CONTESTANTS,
            default_contestants=OPENVINO_CONTESTANTS,
            bench="spade_rt.bench.contestants:OPENVINO",
            summary="an exported graph on OpenVINO (CPU; Intel GPUs and NPUs where present), exact, half or int8 tier",
            auto_cpu={"static": 0, "dedup": 1},
        ),
        BackendEntry(
            name="tensorrt",
            kinds=("engine",),
            factory="spade_rt.engines.backend:TensorRTBackend",
            options=TensorRTOptions,
            module=None,  # tensorrt or tensorrt_rtx: the engine's manifest says which
            install="pip install 'spade-rt[rtx]' (TensorRT for RTX) or 'spade-rt[trt]' (full TensorRT); "
            "-cu12 variants for pre-R580 drivers (docs/packaging.md)",
            tiers=(),  # an engine's precision is its own
            describe="spade_rt.engines.inspect:describe_engine",
            contestants=("tensorrt",),
            default_contestants=("tensorrt",),
            bench="spade_rt.bench.contestants:TENSORRT",
            summary="an FP16 engine on TensorRT or TensorRT-RTX (NVIDIA GPUs)",
        ),
    )
}


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def default_backend(kind: str) -> BackendEntry:
    """The first backend that runs files of ``kind``."""
    for entry in BACKENDS.values():
        if kind in entry.kinds:
            return entry
    raise BackendUnavailableError(f"no backend runs {kind} files")


# The ``auto`` choice for a spade-rt ONNX graph on a CPU: the fastest exact backend installed, by a fixed rule
# (no timing at start-up; ``--backend`` overrides). Per graph kind (the spec's ``graph_options.graph``), the
# backends in order of preference (each entry's ``auto_cpu``); the first installed one wins. From the CPU bench
# of 2026-12-01 (bench/results/amd-epyc-2cpu-2026-12-01/, docs/bench.md): the static graph runs faster on
# OpenVINO fp32 than on ONNX Runtime (coco 1487 vs 1601 ms, ade20k 2025 vs 3332 ms); the dedup graph faster on
# ONNX Runtime (coco 949 vs 1036 ms, issue 20's quiet cores 519 vs 667 ms; ade20k within that run's noise),
# OpenVINO spending much of it in its Unique. fp16 graphs are GPU graphs and stay on ONNX Runtime (its CUDA
# provider), and so does every graph where onnxruntime-gpu is installed (a GPU user). Backend options never
# change the pick: they are checked against the picked backend's (``backend_options``).
AUTO_ONNX_CPU: dict[str, tuple[str, ...]] = {
    graph: tuple(
        e.name for e in sorted(BACKENDS.values(), key=lambda e: e.auto_cpu.get(graph, -1)) if graph in e.auto_cpu
    )
    for graph in sorted({g for e in BACKENDS.values() for g in e.auto_cpu})
}


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _gpu_onnxruntime() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return False
    return True


def auto_backend(kind: str, model: str | Path | None = None) -> BackendEntry:
    """The backend ``auto`` picks for ``model`` of ``kind``: the kind's default, except for fp32 spade-rt
    ONNX graphs on a CPU machine, which follow ``AUTO_ONNX_CPU`` (see the comment above it)."""
    default = default_backend(kind)
    if kind != "onnx" or model is None or _gpu_onnxruntime():
        return default
    from spade_rt.runtime.onnx_meta import read_onnx_metadata
    from spade_rt.runtime.spec import SPEC_KEY

    try:
        spec = json.loads(read_onnx_metadata(model).get(SPEC_KEY, "{}"))
    except (ValueError, RecursionError):
        return default
    if not isinstance(spec, dict) or spec.get("precision") != "fp32":
        return default
    options_ = spec.get("graph_options")
    graph = options_.get("graph", "static") if isinstance(options_, dict) else "static"
    for name in AUTO_ONNX_CPU.get(graph, ()):
        module = BACKENDS[name].module
        if module is None or _installed(module):
            return BACKENDS[name]
    return default


def get_backend(name: str) -> BackendEntry:
    try:
        return BACKENDS[name]
    except KeyError:
        raise BackendUnavailableError(
            f"unknown backend {name!r}: expected auto or one of {', '.join(BACKENDS)}"
        ) from None


def backend_options(
    entry: BackendEntry, options: dict[str, Any], *, server: bool = False, why: str = ""
) -> BackendOptions:
    """``options`` (keywords) as ``entry``'s typed options; ``server``: with its long-running-server settings.
    A name ``entry`` does not take: ConfigError, one line naming the backends that do take it (``why``: how
    ``entry`` was chosen, e.g. "`auto` picked it for g.onnx")."""
    cls = entry.options
    unknown = [k for k in options if k not in cls.names()]
    if unknown:
        takers = [e.name for e in BACKENDS.values() if unknown[0] in e.options.names()]
        elsewhere = f"; {unknown[0]} is an option of {' and '.join(takers)}: name it with backend=" if takers else ""
        raise ConfigError(
            f"backend option(s) {', '.join(unknown)}: not options of the {entry.name} backend{why} "
            f"(its options: {', '.join(cls.names()) or 'none'}){elsewhere}"
        )
    typed = cls(**options)
    return typed.serving() if server else typed


def tier_backends(tier: str) -> tuple[str, ...]:
    """The backends that run ``tier`` (each entry's ``tiers``), in table order."""
    return tuple(e.name for e in BACKENDS.values() if tier in e.tiers)


def backends_for(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The backends that run files of any of ``kinds``, in table order."""
    return tuple(e.name for e in BACKENDS.values() if set(kinds) & set(e.kinds))


def default_contestants() -> tuple[str, ...]:
    """The contestants `spade-rt bench` runs without --backends, in table order."""
    return tuple(c for e in BACKENDS.values() for c in e.default_contestants)


def all_contestants() -> tuple[str, ...]:
    """Every `spade-rt bench` contestant, in table order."""
    return tuple(c for e in BACKENDS.values() for c in e.contestants)


def contestant_backend(contestant: str) -> BackendEntry:
    for entry in BACKENDS.values():
        if contestant in entry.contestants:
            return entry
    raise BackendUnavailableError(
        f"unknown bench contestant {contestant!r}: expected some of {', '.join(all_contestants())}"
    )


def load_attr(entry: BackendEntry, ref: str) -> Any:
    """Import ``module:attr`` of a backend; a missing package becomes one line with the install hint."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if (exc.name or "").startswith("spade_rt"):
            raise  # our own module is missing: a broken install, not a missing extra
        missing = exc.name or str(exc)
        raise BackendUnavailableError(
            f"backend {entry.name} is not installed ({missing} missing): {entry.install}"
        ) from None
    return getattr(module, attr)


def require_toolchain(command: str, modules: tuple[str, ...] = ("torch", "safetensors", "onnx")) -> None:
    """Toolchain commands need torch (and onnx); say how to get them instead of an ImportError traceback."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailableError(
            f"`spade-rt {command}` needs the toolchain ({', '.join(missing)} not installed): {TOOLCHAIN_INSTALL}"
        )
