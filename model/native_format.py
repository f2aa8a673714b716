"""The native model format: one safetensors file, weights + JSON config in its header.

Tensors: ``generator.<original key>`` (spectral-norm ``weight_orig/_u/_v`` and BN statistics kept, so the
file also resumes training and re-exports exactly) and, for VAE models with an encoder,
``encoder.<original key>``. Header metadata: ``format``, ``format_version``, ``config`` (GeneratorConfig as
JSON), ``source`` (where the weights came from), ``created_by``. Nothing is guessed at load time, nothing is
unpickled. One file, so a training run can replace ``latest.safetensors`` with one atomic rename.

Model files are untrusted input. ``load_model`` reads the 8-byte length and the JSON header itself (at most
``spade_rt.limits.MAX_HEADER_BYTES``), checks the config's ranges, then every tensor's name, shape and dtype
against that config (shapes from the networks built on torch's meta device) and the byte offsets against the
file size, all before a tensor is read or a network built; NaN/inf weights are refused after reading.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from spade_rt import __version__
from spade_rt.errors import ConfigError, ModelFormatError
from spade_rt.io_utils import atomic_path
from spade_rt.limits import MAX_HEADER_BYTES, shown
from spade_rt.model.config import GeneratorConfig
from spade_rt.model.networks import ConvEncoder, SPADEGenerator
from spade_rt.model.original_checkpoint import StateDict, load_strict
from spade_rt.runtime.model_kind import KINDS, NATIVE_SUFFIX, RUN_LATEST, model_kind

log = logging.getLogger(__name__)

FORMAT = "spade-rt-model"
FORMAT_VERSION = 1
# safetensors dtypes and their sizes; weights may be stored in any float type, counters as integers
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
INT_DTYPES = ("I64", "I32")


@dataclass
class NativeModel:
    config: GeneratorConfig
    generator: StateDict
    encoder: StateDict | None = None
    source: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


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


def save_model(path: str | Path, model: NativeModel) -> Path:
    """Write atomically: a crash leaves either the old file or the complete new one."""
    tensors = {f"generator.{k}": v.detach().cpu().contiguous() for k, v in model.generator.items()}
    if model.encoder is not None:
        tensors.update({f"encoder.{k}": v.detach().cpu().contiguous() for k, v in model.encoder.items()})
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "source": json.dumps(model.source),
        "created_by": f"spade-rt {__version__}",
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


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


def expected_tensors(config: GeneratorConfig) -> dict[str, tuple[tuple[int, ...], bool]]:
    """name -> (shape, floating point?) of every tensor a model of ``config`` stores, without allocating.

    The networks are built on torch's meta device: shapes and dtypes, no memory. ``config`` has passed its
    range checks, so even this is bounded.
    """
    with torch.device("meta"):
        nets = {"generator": SPADEGenerator(config)}
        if config.has_encoder:
            nets["encoder"] = ConvEncoder(config.ngf, config.crop_size, config.norm_E)
    return {
        f"{prefix}.{k}": (tuple(v.shape), v.is_floating_point())
        for prefix, net in nets.items()
        for k, v in net.state_dict().items()
    }


def check_tensors(path: Path, config: GeneratorConfig, tensors: dict[str, HeaderTensor]) -> None:
    """The header's tensors against what ``config`` needs: names, shapes, dtypes. ModelFormatError naming one."""
    expected = expected_tensors(config)
    unexpected = [k for k in tensors if k not in expected]
    missing = [k for k in expected if k not in tensors]
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensor(s) missing, e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {', '.join(map(shown, unexpected[:3]))}")
        raise ModelFormatError(
            f"{path}: its tensors do not fit its config (ngf {config.ngf}, {config.describe_channels()}): "
            + "; ".join(parts)
        )
    for name, (shape, floating) in expected.items():
        t = tensors[name]
        if t.shape != shape:
            raise ModelFormatError(
                f"{path}: tensor {name} has shape {list(t.shape)}, its config (ngf {config.ngf}, "
                f"{config.describe_channels()}) needs {list(shape)}"
            )
        accepted = FLOAT_DTYPES if floating else INT_DTYPES
        if t.dtype not in accepted:
            raise ModelFormatError(f"{path}: tensor {name} is {t.dtype}, expected {' or '.join(accepted)}")


def check_finite(path: Path, model: NativeModel) -> None:
    """Refuse NaN or infinite weights (a diverged run, a damaged file) before anything runs on them."""
    for prefix, state in (("generator", model.generator), ("encoder", model.encoder or {})):
        for name, t in state.items():
            if t.is_floating_point():
                bad = int((~torch.isfinite(t)).sum())
                if bad:
                    raise ModelFormatError(
                        f"{path}: tensor {prefix}.{name} holds {bad} NaN or infinite value(s) of {t.numel()}: "
                        "refused (a diverged training run or a damaged file)"
                    )


def load_model(path: str | Path) -> NativeModel:
    """Read a spade-rt model: header, config ranges and every tensor's name, shape and dtype are checked
    before any tensor is read; NaN/inf weights are refused after reading, before any use."""
    path = resolve_model_path(path)
    meta, tensors = read_safetensors_header(path)
    _check_format(path, meta)
    try:
        config = GeneratorConfig.from_dict(json.loads(meta["config"]))
    except ConfigError as exc:
        raise ModelFormatError(f"{path}: its config header is refused: {exc}") from None
    except (KeyError, ValueError, RecursionError, TypeError) as exc:
        raise ModelFormatError(f"{path}: its config header is unreadable ({shown(str(exc), 120)})") from None
    try:
        source = json.loads(meta.get("source", "{}"))
    except (ValueError, RecursionError):
        source = None
    if not isinstance(source, dict):
        raise ModelFormatError(f"{path}: its source header is not a JSON object")
    check_tensors(path, config, tensors)
    generator: StateDict = {}
    encoder: StateDict = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in tensors:
                prefix, _, name = key.partition(".")
                (generator if prefix == "generator" else encoder)[name] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"cannot read {path} as a spade-rt model (safetensors): {exc}") from None
    model = NativeModel(config, generator, encoder or None, source, path)
    check_finite(path, model)
    return model


def build_generator(model: NativeModel) -> SPADEGenerator:
    """The eval-mode generator of a native model."""
    net = SPADEGenerator(model.config)
    load_strict(net, model.generator, str(model.path or "model"))
    return net.eval()


def build_encoder(model: NativeModel) -> ConvEncoder | None:
    if model.encoder is None:
        return None
    cfg = model.config
    net = ConvEncoder(cfg.ngf, cfg.crop_size, cfg.norm_E)
    load_strict(net, model.encoder, f"{model.path or 'model'} (encoder)")
    return net.eval()
