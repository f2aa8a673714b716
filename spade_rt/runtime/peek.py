"""What a model file is and what its spec says, from its header alone: torch-free, nothing loaded.

Every command's argument checks (`check_*_args`) and `spade-rt triton` read a model this way before anything
heavy is imported: a spade-rt model's safetensors header (``spade_rt.model.header``, torch-free, reached through
the ``module:attr`` string below as the runtime reaches model/ only through such strings), an ONNX graph's
metadata (``spade_rt.runtime.onnx_meta``), an engine's manifest.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from spade_rt.limits import MAX_HEADER_BYTES
from spade_rt.runtime.model_kind import model_kind
from spade_rt.runtime.onnx_meta import read_onnx_metadata
from spade_rt.runtime.spec import SPEC_KEY, ModelSpec, manifest_path, spec_from_dict, spec_from_onnx_metadata

NATIVE_SPEC = "spade_rt.model.header:native_spec"  # path -> ModelSpec of a spade-rt model, torch-free


def peek_spec(model: str | Path) -> tuple[str, ModelSpec | None]:
    """(kind, spec) of a model file from its header alone, torch-free and without loading it: a spade-rt
    model's safetensors header, an ONNX graph's metadata, an engine's manifest. The spec is None when the
    header does not say (a graph without spade-rt metadata, an engine without a readable manifest): the loader
    then says what is wrong. A spade-rt model whose header is refused raises here, with the loader's message."""
    kind = model_kind(model)
    if kind == "native":
        module, _, attr = NATIVE_SPEC.partition(":")
        return kind, getattr(importlib.import_module(module), attr)(model)
    if kind == "onnx":
        meta = read_onnx_metadata(model)
        return kind, spec_from_onnx_metadata(meta, str(model)) if meta and SPEC_KEY in meta else None
    m = manifest_path(model)
    try:
        if m.stat().st_size > MAX_HEADER_BYTES:
            return kind, None
        raw = json.loads(m.read_text())
    except (OSError, ValueError, RecursionError):
        return kind, None
    spec = raw.get("spec") if isinstance(raw, dict) else None
    return kind, spec_from_dict(spec, str(m)) if isinstance(spec, dict) else None
