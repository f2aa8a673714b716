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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from spade_rt import __version__
from spade_rt.errors import ModelFormatError
from spade_rt.io_utils import atomic_path
from spade_rt.model.config import GeneratorConfig
from spade_rt.model.header import (  # the header is read torch-free (spade-rt info, argument checks)
    DTYPE_BYTES,
    FORMAT,
    FORMAT_VERSION,
    HeaderTensor,
    check_tensors,
    read_config,
    read_model_metadata,
    read_safetensors_header,
    resolve_model_path,
)
from spade_rt.model.networks import ConvEncoder, SPADEGenerator
from spade_rt.model.original_checkpoint import StateDict, load_strict

log = logging.getLogger(__name__)
__all__ = [
    "DTYPE_BYTES",
    "FORMAT",
    "FORMAT_VERSION",
    "HeaderTensor",
    "NativeModel",
    "build_encoder",
    "build_generator",
    "load_model",
    "read_model_metadata",
    "read_safetensors_header",
    "resolve_model_path",
    "save_model",
]


@dataclass
class NativeModel:
    config: GeneratorConfig
    generator: StateDict
    encoder: StateDict | None = None
    source: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


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
    config = read_config(path, meta)
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
