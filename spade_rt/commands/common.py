"""Helpers shared by the subcommands: toolchain checks, argument parsers, info printing."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from spade_rt.errors import BackendUnavailableError
from spade_rt.runtime.registry import TOOLCHAIN_INSTALL
from spade_rt.runtime.spec import ModelSpec


def require_toolchain(command: str, modules: tuple[str, ...] = ("torch", "safetensors", "onnx")) -> None:
    """Toolchain commands need torch (and onnx); say how to get them instead of an ImportError traceback."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailableError(
            f"`spade-rt {command}` needs the toolchain ({', '.join(missing)} not installed): {TOOLCHAIN_INSTALL}"
        )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch size, a count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: expected 1 or more") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected 1 or more")
    return value


def parse_batch(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch {text!r}: expected N or MIN:OPT:MAX, e.g. 1:1:8") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"batch {text!r}: expected N or MIN:OPT:MAX, e.g. 1:1:8")
    return tuple(parts)


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 256x512") from None
    return h, w


def parse_bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected bytes or a number with K/M/G, e.g. 4G") from None


def print_info(info: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            sys.stdout.write(f"{key:<{width}}  \n")
            for k, v in value.items():
                sys.stdout.write(f"  {k:<{width - 2}}  {v}\n")
        else:
            sys.stdout.write(
                f"{key:<{width}}  {value:,}\n"
                if isinstance(value, int) and not isinstance(value, bool)
                else f"{key:<{width}}  {value}\n"
            )


def peek_spec(model: str | Path) -> tuple[str, ModelSpec | None]:
    """(kind, spec) of a model file from its header alone, torch-free and without loading it: a spade-rt
    model's safetensors header, an ONNX graph's metadata, an engine's manifest. The spec is None when the
    header does not say (a graph without spade-rt metadata, an engine without a readable manifest): the loader
    then says what is wrong. A spade-rt model whose header is refused raises here, with the loader's message."""
    import json

    from spade_rt.limits import MAX_HEADER_BYTES
    from spade_rt.runtime.model_kind import model_kind
    from spade_rt.runtime.onnx_meta import read_onnx_metadata
    from spade_rt.runtime.spec import SPEC_KEY, manifest_path, spec_from_dict, spec_from_onnx_metadata

    kind = model_kind(model)
    if kind == "native":
        from spade_rt.model.header import native_spec  # torch-free

        return kind, native_spec(model)
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
