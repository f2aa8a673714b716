"""Every backend in one table: `spade-rt synthesize --backend`, `spade-rt info/inspect` and `spade-rt bench`
derive their choices, defaults, install hints and contestants from it.

A new backend is one ``BackendEntry`` here (plus its module): the name users type, the model file kinds it
opens (the first entry that lists a kind is that kind's default), the ``module:attr`` of its ``Backend``
class, what to install when it is missing, the ``module:attr`` of the function that describes a file for
`spade-rt inspect`, and the benchmark contestants it provides with the ``module:attr`` of their factory.
Nothing here imports a backend: each is imported only when chosen, so this table stays torch-free.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from spade_rt.errors import BackendUnavailableError

TOOLCHAIN_INSTALL = "pip install 'spade-rt[export]' (CPU torch: pip install torch==2.13.0 first)"


@dataclass(frozen=True)
class BackendEntry:
    name: str
    kinds: tuple[str, ...]  # model file kinds it runs (spade_rt.runtime.model_kind.KINDS)
    factory: str  # "module:Class" of the Backend; its constructor takes (model_path, **options)
    install: str  # how to get its missing modules
    describe: str  # "module:function": path -> dict, for `spade-rt inspect` / `spade-rt info`
    contestants: tuple[str, ...]  # its `spade-rt bench` contestants
    bench: str  # "module:attr": the contestants' factory (spade_rt.bench.contestants)
    summary: str


BACKENDS: dict[str, BackendEntry] = {
    e.name: e
    for e in (
        BackendEntry(
            name="torch",
            kinds=("native",),
            factory="spade_rt.model.torch_backend:TorchBackend",
            install=TOOLCHAIN_INSTALL,
            describe="spade_rt.model.describe:describe_model",
            contestants=("torch", "torch-fp16", "torch-compile", "torch-compile-fp16"),
            bench="spade_rt.bench.contestants:TORCH",
            summary="the PyTorch network in the original formulation (one-hot input)",
        ),
        BackendEntry(
            name="onnxruntime",
            kinds=("onnx",),
            factory="spade_rt.runtime.onnxruntime_backend:OnnxRuntimeBackend",
            install="pip install onnxruntime (NVIDIA GPUs: onnxruntime-gpu)",
            describe="spade_rt.runtime.onnxruntime_backend:describe_graph",
            contestants=("onnxruntime", "onnxruntime-onehot", "onnxruntime-dedup"),
            bench="spade_rt.bench.contestants:ONNXRUNTIME",
            summary="an exported graph on ONNX Runtime (CPU, or the CUDA provider)",
        ),
        BackendEntry(
            name="tensorrt",
            kinds=("engine",),
            factory="spade_rt.engines.backend:TensorRTBackend",
            install="pip install 'spade-rt[rtx]' (TensorRT for RTX) or 'spade-rt[trt]' (full TensorRT); "
            "-cu12 variants for pre-R580 drivers (docs/packaging.md)",
            describe="spade_rt.engines.inspect:describe_engine",
            contestants=("tensorrt",),
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


def get_backend(name: str) -> BackendEntry:
    try:
        return BACKENDS[name]
    except KeyError:
        raise BackendUnavailableError(
            f"unknown backend {name!r}: expected auto or one of {', '.join(BACKENDS)}"
        ) from None


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
