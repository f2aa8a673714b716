"""A Triton Inference Server model repository for a spade-rt graph or engine.

    REPO/NAME/config.pbtxt        uint8 ids in, uint8 RGB out; dims and max batch from the spec / manifest;
                                  dynamic batching; instance groups
    REPO/NAME/1/model.onnx        platform onnxruntime_onnx  (or 1/model.plan, platform tensorrt_plan)
    REPO/NAME/spade_rt.json       the spade-rt spec and where the file came from (Triton ignores it)

Inputs and outputs keep the graph's tensor names (``spade_rt.runtime.spec``): ``labels`` (N, H, W) ids,
``edges`` (N, H, W) uint8 for models with an instance edge channel, ``z`` (N, z_dim) float32 for VAE
models; ``image`` (N, H, W, 3) uint8. The ids must already be the model's (stored 255 mapped to the
dontcare id, checked): a Triton client does what ``spade_rt.labels.prepare_inputs`` does.

torch-free: the spec is read from the graph's metadata (ONNX Runtime) or the engine's manifest (JSON).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from spade_rt import __version__
from spade_rt.errors import ConfigError, InputError, ModelFormatError
from spade_rt.io_utils import sha256_file
from spade_rt.runtime.spec import EDGES, IMAGE, LABELS, ModelSpec, Z, manifest_path, spec_from_dict

log = logging.getLogger(__name__)

PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "engine": ("tensorrt_plan", "model.plan")}
CONFIG = "config.pbtxt"
SIDECAR = "spade_rt.json"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class TritonOptions:
    name: str
    instances: int = 1  # model instances per device (instance_group count)
    device: str = "gpu"  # gpu | cpu (engines: gpu only)
    gpus: tuple[int, ...] = ()  # which GPUs (empty: all)
    max_queue_delay_us: int = 1000  # dynamic batching: how long Triton waits to fill a batch
    max_batch: int | None = None  # ONNX graphs without a batch bound (engines: their profile decides)

    def validate(self, kind: str) -> TritonOptions:
        if not NAME_RE.match(self.name):
            raise ConfigError(f"model name {self.name!r}: use letters, digits, '_', '-', '.' (not first)")
        if self.instances < 1:
            raise ConfigError(f"--instances {self.instances}: expected 1 or more")
        if self.device not in ("gpu", "cpu"):
            raise ConfigError(f"--device {self.device!r}: expected gpu or cpu")
        if kind == "engine" and self.device != "gpu":
            raise ConfigError("TensorRT engines run on GPUs only: --device gpu")
        if self.max_queue_delay_us < 0:
            raise ConfigError(f"--max-queue-delay-us {self.max_queue_delay_us}: expected 0 or more")
        return self


def default_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip(".-") or "spade_rt"
    return name


# ---- the spec of a file -------------------------------------------------------------------------------------
def onnx_spec(path: Path) -> ModelSpec:
    from spade_rt.runtime.onnxruntime_backend import make_session
    from spade_rt.runtime.spec import spec_from_onnx_metadata

    session = make_session(path, providers=["CPUExecutionProvider"], threads=1)
    return spec_from_onnx_metadata(session.get_modelmeta().custom_metadata_map, str(path))


def engine_manifest(path: Path) -> dict:
    m = manifest_path(path)
    if not m.is_file():
        raise ModelFormatError(f"{path} has no manifest ({m.name}): engines for Triton come from `spade-rt build`")
    try:
        manifest = json.loads(m.read_text())
        manifest["spec"], manifest["inputs"], manifest["builder"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFormatError(f"{m} is not a spade-rt engine manifest ({exc})") from None
    return manifest


# ---- config.pbtxt ---------------------------------------------------------------------------------------------
def _tensor(name: str, dtype: str, dims: list[int]) -> str:
    return f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: [ {", ".join(map(str, dims))} ]\n  }}'


def config_text(spec: ModelSpec, kind: str, options: TritonOptions, max_batch: int) -> str:
    """The config.pbtxt of a graph or engine with this spec (protobuf text format of Triton's ModelConfig)."""
    platform, filename = PLATFORMS[kind]
    lab = spec.labels
    hw = [-1, -1] if spec.dynamic_size else [lab.height, lab.width]
    id_type = "TYPE_UINT8" if lab.num_label_ids <= 256 else "TYPE_INT32"
    inputs = [_tensor(LABELS, id_type, hw)]
    if lab.use_instance:
        inputs.append(_tensor(EDGES, "TYPE_UINT8", hw))
    if spec.use_vae:
        inputs.append(_tensor(Z, "TYPE_FP32", [spec.z_dim]))
    preferred = sorted({b for b in (spec.opt_batch, max_batch) if 1 < b <= max_batch})
    kind_name = f"KIND_{options.device.upper()}"
    gpus = f"\n    gpus: [ {', '.join(map(str, options.gpus))} ]" if options.gpus and options.device == "gpu" else ""
    lines = [
        f'name: "{options.name}"',
        f'platform: "{platform}"',
        f'default_model_filename: "{filename}"',
        f"max_batch_size: {max_batch}",
        "input [\n" + ",\n".join(inputs) + "\n]",
        "output [\n" + _tensor(IMAGE, "TYPE_UINT8", [*hw, 3]) + "\n]",
        "dynamic_batching {"
        + (f"\n  preferred_batch_size: [ {', '.join(map(str, preferred))} ]" if preferred else "")
        + f"\n  max_queue_delay_microseconds: {options.max_queue_delay_us}\n}}",
        f"instance_group [\n  {{\n    count: {options.instances}\n    kind: {kind_name}{gpus}\n  }}\n]",
    ]
    return "\n".join(lines) + "\n"


def parse_config(text: str):
    """Parse with Triton's own model-config protobuf (``tritonclient``); ModelFormatError when it does not parse."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise ModelFormatError(
            "validating a Triton config needs tritonclient: pip install 'tritonclient[grpc]'"
        ) from None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ModelFormatError(f"the written config.pbtxt does not parse as a Triton ModelConfig: {exc}") from None


# ---- the repository -----------------------------------------------------------------------------------------
def write_repository(
    source: Path, kind: str, repo: Path, options: TritonOptions, *, force: bool = False, provenance: dict | None = None
) -> Path:
    """Copy a uint8-output graph or engine into ``repo/NAME/1/`` with its config.pbtxt; returns the model folder."""
    if kind not in PLATFORMS:
        raise InputError(f"{source} is a {kind} file: Triton repositories take an ONNX graph or an engine")
    options.validate(kind)
    manifest = engine_manifest(source) if kind == "engine" else None
    spec = spec_from_dict(manifest["spec"], str(manifest_path(source))) if manifest else onnx_spec(source)
    if spec.output != "uint8":
        raise InputError(
            f"{source.name} gives float output; Triton repositories serve uint8 RGB: export with --output uint8 "
            "(or give `spade-rt triton` the spade-rt model, which exports it so)"
        )
    if spec.min_batch != 1:
        raise InputError(f"{source.name} takes batches of {spec.min_batch} or more: Triton sends single requests too")
    if manifest is not None:
        max_batch = int(manifest["inputs"][LABELS]["max"][0])
    elif spec.max_batch is not None:
        max_batch = spec.max_batch
    else:
        max_batch = options.max_batch or 8
    if options.max_batch is not None and options.max_batch != max_batch and spec.max_batch is not None:
        raise ConfigError(f"--max-batch {options.max_batch}: {source.name} was made for batches up to {max_batch}")

    text = config_text(spec, kind, options, max_batch)
    try:
        parse_config(text)
        checked = True
    except ModelFormatError as exc:
        if "needs tritonclient" not in str(exc):
            raise
        checked = False
        log.debug("tritonclient is not installed: config.pbtxt written without parsing it")

    repo.mkdir(parents=True, exist_ok=True)
    target = repo / options.name
    if target.exists() and not force:
        raise InputError(f"{target} exists: choose another --name, or --force to replace it")
    staging = repo / f".{options.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "1").mkdir(parents=True)
    _, filename = PLATFORMS[kind]
    shutil.copyfile(source, staging / "1" / filename)
    (staging / CONFIG).write_text(text)
    sidecar = {
        "format": "spade-rt-triton-model",
        "spade_rt": __version__,
        "source": source.name,
        "source_sha256": sha256_file(source),
        "kind": kind,
        "spec": spec.to_dict(),
        "builder": manifest["builder"] if manifest else None,
        **(provenance or {}),
    }
    (staging / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    log.info(
        "wrote %s: %s, %s ids %dx%d -> uint8 RGB, max batch %d, %d %s instance(s)%s",
        target,
        PLATFORMS[kind][0],
        spec.preset,
        spec.labels.height,
        spec.labels.width,
        max_batch,
        options.instances,
        options.device.upper(),
        "; config.pbtxt parses with Triton's ModelConfig" if checked else "",
    )
    if manifest is not None:
        builder = manifest["builder"]
        if builder.get("module") == "tensorrt_rtx":
            log.warning(
                "%s was built with TensorRT-RTX %s: Triton's tensorrt_plan backend deserialises plans with its own "
                "full TensorRT, so build the engine with `spade-rt build --backend tensorrt` inside the Triton "
                "container (same TensorRT version), or serve the ONNX graph (docs/serving.md)",
                source.name,
                builder.get("version"),
            )
        else:
            log.info("Triton loads this plan only with TensorRT %s on a GPU like the build's", builder.get("version"))
    return target
