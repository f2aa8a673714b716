"""Each backend's options, typed: one frozen dataclass per backend, named by its registry entry (``options``).

A field is a keyword of the backend's constructor; ``None`` means the backend's own default (the constructor
keeps the one copy of each default), and only the fields given reach the backend (``given``). Options arrive
as keywords (``Synthesizer(graph, threads=1)``) and are checked against the class of the backend that runs:
a name it does not take is refused in one line that says which backend does take it, and a value of the
wrong type in one line that names the expected type. They never change which backend ``auto`` picks.

``serving()`` is the backend-independent intent of a long-running server (`spade-rt serve`): each class maps
it to its own settings (ONNX Runtime: no memory arena, no spinning; the others: nothing), so a server gets
the right settings whichever backend ``auto`` picks. Nothing here imports a backend: the registry reads it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from spade_rt.errors import ConfigError


@dataclass(frozen=True)
class BackendOptions:
    """The options every backend shares: none. Subclasses add the keywords of their constructor."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self), {"Path": Path, "Callable": Callable})
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            accepted = _accepted_types(hints[f.name])
            wrong_bool = isinstance(value, bool) and bool not in accepted  # True is an int to isinstance
            if wrong_bool or not isinstance(value, accepted):
                names = " or ".join(t.__name__ for t in accepted)
                raise ConfigError(f"backend option {f.name}={value!r}: expected {names}")

    def given(self) -> dict[str, Any]:
        """The fields set (not None): the keywords the backend's constructor gets."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def serving(self) -> BackendOptions:
        """These options for a long-running server; fields given explicitly are kept."""
        return self

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def _accepted_types(hint: object) -> tuple[type, ...]:
    """``int | None`` -> (int,); ``list[str] | tuple[str, ...] | None`` -> (list, tuple)."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    args = typing.get_args(hint) if union else (hint,)
    return tuple(typing.get_origin(a) or a for a in args if a is not type(None))


@dataclass(frozen=True)
class OnnxRuntimeOptions(BackendOptions):
    """spade_rt.runtime.onnxruntime_backend.OnnxRuntimeBackend's keywords (its docstring says what each does)."""

    providers: list[str] | tuple[str, ...] | None = None  # None: CUDA where installed, else CPU
    threads: int | None = None
    tensorrt_ep: bool | None = None
    cuda_graph: bool | None = None
    io_binding: bool | None = None
    device_id: int | None = None
    memory_arena: bool | None = None
    spinning: bool | None = None
    require_measured: bool | None = None

    def serving(self) -> OnnxRuntimeOptions:
        """No memory arena (it keeps the largest activations of every batch size it has seen: 480 MB resident
        after batches of 8 on the demo graph, against 216 MB without it, for a per-picture time within noise),
        and threads that sleep when idle instead of spinning (a server shares its cores with its clients and
        the painter's browser: its compute per frame halved in the browser test; docs/serving.md "Measured").
        Both apply to CPU sessions only: a GPU session ignores them."""
        return replace(
            self,
            memory_arena=False if self.memory_arena is None else self.memory_arena,
            spinning=False if self.spinning is None else self.spinning,
        )


@dataclass(frozen=True)
class OpenVinoOptions(BackendOptions):
    """spade_rt.runtime.openvino_backend.OpenVinoBackend's keywords; ``tier`` comes from ``Synthesizer(tier=)``."""

    device: str | None = None  # CPU, GPU, GPU.1, NPU
    tier: str | None = None
    threads: int | None = None
    cache_dir: str | Path | None = None
    cache: bool | None = None
    require_measured: bool | None = None


@dataclass(frozen=True)
class TorchOptions(BackendOptions):
    """spade_rt.model.torch_backend.TorchBackend's keywords."""

    device: str | None = None  # a torch device: cpu, cuda, cuda:1


@dataclass(frozen=True)
class TensorRTOptions(BackendOptions):
    """spade_rt.engines.backend.TensorRTBackend's keywords."""

    trt_backend: str | None = None  # tensorrt or tensorrt_rtx; None: the engine's own (its manifest)
    cuda_graphs: bool | None = None
    rebuild: bool | None = None
    device: int | None = None
    trust_engine: bool | None = None
    cuda: Callable | None = None  # a stand-in for the CUDA layer (tests)
