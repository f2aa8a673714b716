"""A spade-rt model's header, read without torch: the safetensors JSON header, its format, its config.

``spade-rt info`` and every command's argument checks read a model from here (a few KB, no torch import);
``native_format.load_model`` reads the same header with the same checks before it reads any tensor.
"""

from __future__ import annotations

import itertools
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
    if p.is_dir():
        model_kind(p)  # a folder without latest.safetensors: raises, saying what is expected (as `info` does)
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
    ends = {name: _end(info) for name, info in header.items()}
    last = max(ends, key=ends.get, default=None)
    if last is not None and ends[last] > data_bytes:  # the header promises more tensor bytes than the file holds
        raise ModelFormatError(
            f"{path} is cut off: expected {8 + n + ends[last]} bytes, got {size} (tensor {shown(last)} ends at byte "
            f"{ends[last]} of a {data_bytes}-byte data section; a copy or download that stopped early?)"
        )
    tensors: dict[str, HeaderTensor] = {}
    for name, info in header.items():
        what = f"{path}: tensor {shown(name)}"
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or info["dtype"] not in DTYPE_BYTES:
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


def _end(info: object) -> int:
    """Where a header entry says its tensor ends (0 when it does not say it well: checked later, one by one)."""
    offsets = info.get("data_offsets") if isinstance(info, dict) else None
    ok = isinstance(offsets, list) and len(offsets) == 2 and _is_count(offsets[1])
    return offsets[1] if ok else 0


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


# ---- the tensors a config needs, without torch -------------------------------------------------------------
Shapes = dict[str, tuple[tuple[int, ...], bool]]  # name -> (shape, floating point?)
SPADE_HIDDEN = 128  # networks.SPADE_HIDDEN


def _conv(out: Shapes, name: str, spectral: bool, cin: int, cout: int, k: int, bias: bool = True) -> None:
    """layers.conv2d: a plain Conv2d (weight, bias) or an SNConv2d (weight_orig, bias, weight_u, weight_v)."""
    if spectral:
        out[f"{name}.weight_orig"] = ((cout, cin, k, k), True)
        out[f"{name}.weight_u"] = ((cout,), True)
        out[f"{name}.weight_v"] = ((cin * k * k,), True)
    else:
        out[f"{name}.weight"] = ((cout, cin, k, k), True)
    if bias:
        out[f"{name}.bias"] = ((cout,), True)


def _batch_norm(out: Shapes, name: str, channels: int, affine: bool) -> None:
    if affine:
        out[f"{name}.weight"] = ((channels,), True)
        out[f"{name}.bias"] = ((channels,), True)
    out[f"{name}.running_mean"] = ((channels,), True)
    out[f"{name}.running_var"] = ((channels,), True)
    out[f"{name}.num_batches_tracked"] = ((), False)


def _spade(out: Shapes, name: str, cfg: GeneratorConfig, channels: int) -> None:
    k = cfg.spade_kernel_size
    if cfg.param_free_norm == "batch":  # instance norm without affine parameters keeps no state
        _batch_norm(out, f"{name}.param_free_norm", channels, affine=False)
    _conv(out, f"{name}.mlp_shared.0", False, cfg.semantic_nc, SPADE_HIDDEN, k)
    _conv(out, f"{name}.mlp_gamma", False, SPADE_HIDDEN, channels, k)
    _conv(out, f"{name}.mlp_beta", False, SPADE_HIDDEN, channels, k)


def _block(out: Shapes, name: str, cfg: GeneratorConfig, fin: int, fout: int) -> None:
    mid = min(fin, fout)
    _conv(out, f"{name}.conv_0", cfg.spectral, fin, mid, 3)
    _conv(out, f"{name}.conv_1", cfg.spectral, mid, fout, 3)
    _spade(out, f"{name}.norm_0", cfg, fin)
    _spade(out, f"{name}.norm_1", cfg, mid)
    if fin != fout:
        _conv(out, f"{name}.conv_s", cfg.spectral, fin, fout, 1, bias=False)
        _spade(out, f"{name}.norm_s", cfg, fin)


def expected_tensor_shapes(cfg: GeneratorConfig) -> Shapes:
    """name -> (shape, floating point?) of every tensor a model of ``cfg`` stores, from the config alone: the
    state dicts of ``networks.SPADEGenerator`` and ``ConvEncoder`` (tests/test_contract.py checks it against
    them, built on torch's meta device), so `spade-rt info` checks a header's tensors without torch."""
    out: Shapes = {}
    nf = cfg.ngf
    sh, sw = cfg.latent_hw
    if cfg.use_vae:
        out["fc.weight"] = ((16 * nf * sh * sw, cfg.z_dim), True)
        out["fc.bias"] = ((16 * nf * sh * sw,), True)
    else:
        _conv(out, "fc", False, cfg.semantic_nc, 16 * nf, 3)
    widths = [("head_0", 16, 16), ("G_middle_0", 16, 16), ("G_middle_1", 16, 16), ("up_0", 16, 8), ("up_1", 8, 4),
              ("up_2", 4, 2), ("up_3", 2, 1)]  # fmt: skip
    for name, fin, fout in widths:
        _block(out, name, cfg, fin * nf, fout * nf)
    final = nf
    if cfg.num_upsampling_layers == "most":
        _block(out, "up_4", cfg, nf, nf // 2)
        final = nf // 2
    _conv(out, "conv_img", False, final, 3, 3)
    shapes = {f"generator.{k}": v for k, v in out.items()}
    if cfg.has_encoder:
        enc: Shapes = {}
        spectral = cfg.norm_E.startswith("spectral")
        sub = cfg.norm_E[len("spectral") :] if spectral else cfg.norm_E
        chans = [3, nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf] + ([8 * nf] if cfg.crop_size >= 256 else [])
        for i, (cin, cout) in enumerate(itertools.pairwise(chans), start=1):
            if sub in ("", "none"):
                _conv(enc, f"layer{i}", spectral, cin, cout, 3)
            else:
                _conv(enc, f"layer{i}.0", spectral, cin, cout, 3, bias=False)
                if sub != "instance":
                    _batch_norm(enc, f"layer{i}.1", cout, affine=True)
        for fc in ("fc_mu", "fc_var"):
            enc[f"{fc}.weight"] = ((256, 8 * nf * 4 * 4), True)
            enc[f"{fc}.bias"] = ((256,), True)
        shapes.update({f"encoder.{k}": v for k, v in enc.items()})
    return shapes


def check_tensors(path: Path, config: GeneratorConfig, tensors: dict[str, HeaderTensor]) -> None:
    """The header's tensors against what ``config`` needs: names, shapes, dtypes. ModelFormatError naming one."""
    expected = expected_tensor_shapes(config)
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


_NUMPY_FLOATS = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}


def check_finite_data(path: Path, tensors: dict[str, HeaderTensor]) -> None:
    """Refuse NaN or infinite weights, read from the file with numpy (memory-mapped; torch-free), as
    ``native_format.check_finite`` does after loading: `spade-rt info` says the same as the loader."""
    import numpy as np

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n) if path.stat().st_size > 8 + n else None
    for name, t in tensors.items():
        if t.dtype not in FLOAT_DTYPES or t.end == t.begin or data is None:
            continue
        raw = data[t.begin : t.end]
        if t.dtype == "BF16":  # no numpy bfloat16: all exponent bits set is inf or NaN
            bad = int(np.count_nonzero((raw.view("<u2") & 0x7F80) == 0x7F80))
        else:
            bad = int(np.count_nonzero(~np.isfinite(raw.view(_NUMPY_FLOATS[t.dtype]))))
        if bad:
            raise ModelFormatError(
                f"{path}: tensor {name} holds {bad} NaN or infinite value(s) of {math.prod(t.shape)}: "
                "refused (a diverged training run or a damaged file)"
            )
