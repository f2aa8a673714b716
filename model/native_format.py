"""The native model format: one safetensors file, weights + JSON config in its header.

Tensors: ``generator.<original key>`` (spectral-norm ``weight_orig/_u/_v`` and BN statistics kept, so the
file also resumes training and re-exports exactly) and, for VAE models with an encoder,
``encoder.<original key>``. Header metadata: ``format``, ``format_version``, ``config`` (GeneratorConfig as
JSON), ``source`` (where the weights came from), ``created_by``. Nothing is guessed at load time, nothing is
unpickled. One file, so a training run can replace ``latest.safetensors`` with one atomic rename.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from spade_rt import __version__
from spade_rt.errors import ConfigError, ModelFormatError
from spade_rt.io_utils import atomic_path
from spade_rt.model.config import GeneratorConfig
from spade_rt.model.networks import ConvEncoder, SPADEGenerator
from spade_rt.model.original_checkpoint import StateDict, load_strict
from spade_rt.runtime.model_kind import NATIVE_SUFFIX, RUN_LATEST

log = logging.getLogger(__name__)

FORMAT = "spade-rt-model"
FORMAT_VERSION = 1


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


def read_model_metadata(path: str | Path) -> dict[str, str]:
    path = resolve_model_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"cannot read {path} as a spade-rt model (safetensors): {exc}") from None
    if meta.get("format") != FORMAT:
        raise ModelFormatError(
            f"{path} is a safetensors file but not a spade-rt model (no '{FORMAT}' header); convert original "
            "checkpoints with `spade-rt convert latest_net_G.pth --preset P -o MODEL.safetensors`"
        )
    if int(meta.get("format_version", "0")) > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} has format version {meta['format_version']}; this spade-rt reads up to {FORMAT_VERSION}: upgrade"
        )
    return meta


def load_model(path: str | Path) -> NativeModel:
    path = resolve_model_path(path)
    meta = read_model_metadata(path)
    try:
        config = GeneratorConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, json.JSONDecodeError, ConfigError, TypeError) as exc:
        raise ModelFormatError(f"{path}: its config header is unreadable ({exc})") from None
    generator: StateDict = {}
    encoder: StateDict = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
            prefix, _, name = key.partition(".")
            target = {"generator": generator, "encoder": encoder}.get(prefix)
            if target is None:
                raise ModelFormatError(f"{path}: unexpected tensor {key!r}")
            target[name] = f.get_tensor(key)
    return NativeModel(config, generator, encoder or None, json.loads(meta.get("source", "{}")), path)


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
