"""A spade-rt model's header, read without torch: the safetensors JSON header, its format, its config.

``spade-rt info`` and every command's argument checks read a model from here (a few KB, no torch import);
``native_format.load_model`` reads the same header with the same checks before it reads any tensor.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from spade_rt.errors import ConfigError, ModelFormatError
from spade_rt.limits import MAX_HEADER_BYTES, shown
from spade_rt.model.config import GeneratorConfig
from spade_rt.runtime.model_kind import KINDS, NATIVE_SUFFIX, RUN_LATEST, model_kind
from spade_rt.runtime.spec import ModelSpec

FORMAT = "spade-rt-model"
FORMAT_VERSION = 1
# safetensors dtypes and their sizes; weights may be stored in any float type, counters as integers
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
INT_DTYPES = ("I64", "I32")


def resolve_model_path(path: str | Path) -> Path:
    """A model file, a run directory (-> its latest.safetensors), or a name whose .safetensors exists."""
    p = Path(path)
    if p.is_dir() and (p / RUN_LATEST).is_file():
        return p / RUN_LATEST
    if not p.exists() and p.with_name(p.name + NATIVE_SUFFIX).is_file():
        return p.with_name(p.name + NATIVE_SUFFIX)
    if not p.is_file():
        raise ModelFormatError(f"model not found: {p}")
    kind = model_kind(p)  # an original .pth: "convert it first"; a graph or an engine: say which
    if kind != "native":
        raise ModelFormatError(f"{p} is {KINDS[kind].what}, not a spade-rt model; this command takes spade-rt models")
    return p


@dataclass(frozen=True)
class HeaderTensor:
    """One tensor as the safetensors header describes it (nothing read or allocated yet)."""

    dtype: str  # safetensors dtype name: F32, F16, I64 ...
    shape: tuple[int, ...]
    begin: int  # byte offsets in the data section
    end: int


def read_safetensors_header(path: Path) -> tuple[dict[str, str], dict[str, HeaderTensor]]:
    """(metadata, tensors) from the 8-byte length and the JSON header alone, checked against the file size.

    The header is capped at ``MAX_HEADER_BYTES``; every tensor must have a known dtype, a shape whose bytes
    equal its offsets, and the tensors must tile the data section exactly. Nothing else is read.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            n = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if n < 0 or n > size - 8:
                raise ModelFormatError(
                    f"{path} is not a safetensors file: its header length {n} does not fit in its {size} bytes"
                )
            if n > MAX_HEADER_BYTES:
                raise ModelFormatError(
                    f"{path}: its safetensors header is {n} bytes; at most {MAX_HEADER_BYTES} are accepted"
                )
            raw = f.read(n)
    except OSError as exc:
        raise ModelFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelFormatError(f"{path}: its safetensors header is not valid JSON ({shown(str(exc), 120)})") from None
    if not isinstance(header, dict):
        raise ModelFormatError(f"{path}: its safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelFormatError(f"{path}: its safetensors __metadata__ is not a map of strings")
    data_bytes = size - 8 - n
    tensors: dict[str, HeaderTensor] = {}
    for name, info in header.items():
        what = f"{path}: tensor {shown(name)}"
        if not isinstance(info, dict) or info.get("dtype") not in DTYPE_BYTES:
            dtype = info.get("dtype") if isinstance(info, dict) else info
            raise ModelFormatError(f"{what} has dtype {shown(dtype)}: expected one of {', '.join(DTYPE_BYTES)}")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or len(shape) > 8 or not all(_is_count(d) for d in shape):
            raise ModelFormatError(f"{what} has shape {shown(shape)}: expected a list of at most 8 sizes >= 0")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
            raise ModelFormatError(f"{what} has data_offsets {shown(offsets)}: expected [begin, end]")
        nbytes = math.prod(shape) * DTYPE_BYTES[info["dtype"]]
        if offsets[1] - offsets[0] != nbytes or offsets[1] > data_bytes:
            raise ModelFormatError(
                f"{what} ({info['dtype']} {shape}, {nbytes} bytes) does not match its offsets {offsets} in a "
                f"{data_bytes}-byte data section"
            )
        tensors[name] = HeaderTensor(info["dtype"], tuple(shape), offsets[0], offsets[1])
    end = 0
    for t in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if t.begin != end:
            break
        end = t.end
    if end != data_bytes:
        raise ModelFormatError(
            f"{path}: its tensors do not tile the {data_bytes}-byte data section (overlap, gap or trailing bytes "
            f"after byte {end}): the file is truncated or was not written by safetensors"
        )
    return meta, tensors


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62


def _check_format(path: Path, meta: dict[str, str]) -> None:
    if meta.get("format") != FORMAT:
        raise ModelFormatError(
            f"{path} is a safetensors file but not a spade-rt model (no '{FORMAT}' header); convert original "
            "checkpoints with `spade-rt convert latest_net_G.pth --preset P -o MODEL.safetensors`"
        )
    version = meta.get("format_version", "0")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} has format version {shown(version)}; this spade-rt reads versions 1..{FORMAT_VERSION}: upgrade"
        )


def read_model_metadata(path: str | Path) -> dict[str, str]:
    """The header metadata of a spade-rt model (format, config, source ...), from its header only."""
    path = resolve_model_path(path)
    meta, _ = read_safetensors_header(path)
    _check_format(path, meta)
    return meta


def read_config(path: Path, meta: dict[str, str]) -> GeneratorConfig:
    """The GeneratorConfig of a header's metadata, range-checked; ModelFormatError naming the file."""
    _check_format(path, meta)
    try:
        return GeneratorConfig.from_dict(json.loads(meta["config"]))
    except ConfigError as exc:
        raise ModelFormatError(f"{path}: its config header is refused: {exc}") from None
    except (KeyError, ValueError, RecursionError, TypeError) as exc:
        raise ModelFormatError(f"{path}: its config header is unreadable ({shown(str(exc), 120)})") from None


def model_config(path: str | Path) -> GeneratorConfig:
    """A spade-rt model's config from its header alone (torch-free)."""
    p = resolve_model_path(path)
    meta, _ = read_safetensors_header(p)
    return read_config(p, meta)


def spec_of(config: GeneratorConfig) -> ModelSpec:
    """What a spade-rt model takes and gives (the torch backend's spec)."""
    return ModelSpec(
        preset=config.preset,
        labels=config.label_spec,
        use_vae=config.use_vae,
        z_dim=config.z_dim,
        size_multiple=2**config.num_up,
        extra={"has_encoder": config.has_encoder},
    )


def native_spec(path: str | Path) -> ModelSpec:
    """The spec of a spade-rt model, from its header (torch-free)."""
    return spec_of(model_config(path))
