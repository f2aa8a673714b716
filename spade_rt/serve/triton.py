"""A Triton Inference Server model repository for a spade-rt graph or engine.

Native backends (``--backend native``, the default):

    REPO/NAME/config.pbtxt        uint8 ids in, uint8 RGB out; dims and max batch from the spec / manifest;
                                  dynamic batching; instance groups
    REPO/NAME/1/model.onnx        platform onnxruntime_onnx  (or 1/model.plan, platform tensorrt_plan)
    REPO/NAME/spade_rt.json       the spade-rt spec and where the file came from (Triton ignores it)

The python backend (``--backend python``): the spade-rt runtime inside Triton (``spade_rt.serve.triton_python``),
so any graph (float or uint8 output, dedup) and TensorRT-RTX engines serve, with the label pipeline
(255 -> dontcare, id checks, label-boundary edges) done by spade-rt:

    REPO/NAME/config.pbtxt        backend python, the same tensors as the native config (``edges`` optional)
    REPO/NAME/1/model.py          imports spade_rt.serve.triton_python.TritonPythonModel
    REPO/NAME/1/model.onnx        the graph (or model.engine + model.engine.json, the manifest)
    REPO/NAME_png/config.pbtxt    label PNG bytes in (ids or palette colours) -> ``image`` + ``image_png``;
    REPO/NAME_png/1/model.py      it calls NAME through Triton (BLS). Written for --backend python, or --png.

Inputs and outputs keep the graph's tensor names (``spade_rt.runtime.spec``): ``labels`` (N, H, W) ids,
``edges`` (N, H, W) uint8 for models with an instance edge channel, ``z`` (N, z_dim) float32 for VAE
models; ``image`` (N, H, W, 3) uint8. For the native backends the ids must already be the model's (stored 255
mapped to the dontcare id, checked): a Triton client does what ``spade_rt.labels.prepare_inputs`` does.

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
from spade_rt.runtime.spec import EDGES, IMAGE, LABELS, ModelSpec, Z, manifest_path, report_path, spec_from_dict
from spade_rt.validation import check_triton_name

log = logging.getLogger(__name__)

PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "engine": ("tensorrt_plan", "model.plan")}
PYTHON_FILES = {"onnx": "model.onnx", "engine": "model.engine"}  # --backend python: the runtime's file in 1/
BACKENDS = ("native", "python")
CONFIG = "config.pbtxt"
SIDECAR = "spade_rt.json"
PNG_SUFFIX = "_png"  # the PNG model's name: NAME_png
MODEL_PY = '''"""Triton python-backend model written by `spade-rt triton` {version}: {what}.

The code is the installed spade-rt's (spade_rt/serve/triton_python.py); Triton's python backend must run
an interpreter with spade-rt and numpy < 2 (docs/triton.md: the environment's python3 first on PATH, or
EXECUTION_ENV_PATH in config.pbtxt).
"""

from spade_rt.serve.triton_python import TritonPythonModel

__all__ = ["TritonPythonModel"]
'''


@dataclass(frozen=True)
class TritonOptions:
    name: str
    instances: int = 1  # model instances per device (instance_group count)
    device: str = "gpu"  # gpu | cpu (engines: gpu only)
    gpus: tuple[int, ...] = ()  # which GPUs (empty: all)
    max_queue_delay_us: int = 1000  # dynamic batching: how long Triton waits to fill a batch
    max_batch: int | None = None  # ONNX graphs without a batch bound (engines: their profile decides)
    backend: str = "native"  # native: onnxruntime_onnx / tensorrt_plan; python: the spade-rt runtime in Triton
    png: bool | None = None  # also NAME_png (label PNG in); None: with the python backend only
    execution_env: str | None = None  # python backend: EXECUTION_ENV_PATH (a conda-pack archive)
    tier: str = "auto"  # python backend: the precision tier (spade_rt.runtime.tiers); auto: the graph's own

    def validate(self, kind: str) -> TritonOptions:
        check_triton_name(self.name)  # the one rule, spade_rt.validation.TRITON_NAME_RE
        if self.instances < 1:
            raise ConfigError(f"--instances {self.instances}: expected 1 or more")
        if self.device not in ("gpu", "cpu"):
            raise ConfigError(f"--device {self.device!r}: expected gpu or cpu")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r}: expected {' or '.join(BACKENDS)}")
        if kind == "engine" and self.device != "gpu":
            raise ConfigError("TensorRT engines run on GPUs only: --device gpu")
        if self.max_queue_delay_us < 0:
            raise ConfigError(f"--max-queue-delay-us {self.max_queue_delay_us}: expected 0 or more")
        if self.max_batch is not None and not 1 <= self.max_batch <= 1024:
            raise ConfigError(f"--max-batch {self.max_batch}: expected 1..1024")
        if self.execution_env is not None and self.backend != "python":
            raise ConfigError("--execution-env is for the python backend: add --backend python")
        if self.tier != "auto" and self.backend != "python":
            raise ConfigError(f"--tier {self.tier} is for the python backend (the spade-rt runtime): --backend python")
        if self.tier == "half" and self.device != "cpu":
            raise ConfigError("--tier half runs on OpenVINO's CPU device: add --device cpu")
        return self

    @property
    def with_png(self) -> bool:
        return self.backend == "python" if self.png is None else self.png


def default_name(path: Path) -> str:
    # within the name rule (check_triton_name: at most 128), leaving room for NAME_png
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip(".-")[: 128 - len(PNG_SUFFIX)] or "spade_rt"
    return name


# ---- the spec of a file -------------------------------------------------------------------------------------
def onnx_spec(path: Path) -> ModelSpec:
    from spade_rt.runtime.onnxruntime_backend import make_session, session_strings
    from spade_rt.runtime.spec import spec_from_onnx_metadata

    session = make_session(path, providers=["CPUExecutionProvider"], threads=1)
    return spec_from_onnx_metadata(session_strings(session, str(path))[0], str(path))


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
def _tensor(name: str, dtype: str, dims: list[int], optional: bool = False) -> str:
    opt = "\n    optional: true" if optional else ""
    return f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: [ {", ".join(map(str, dims))} ]{opt}\n  }}'


def _parameters(params: dict[str, str]) -> str:
    entries = [f'  {{\n    key: "{k}"\n    value: {{ string_value: {json.dumps(v)} }}\n  }}' for k, v in params.items()]
    return "parameters [\n" + ",\n".join(entries) + "\n]"


def _batching_and_instances(spec: ModelSpec, options: TritonOptions, max_batch: int) -> list[str]:
    preferred = sorted({b for b in (spec.opt_batch, max_batch) if 1 < b <= max_batch})
    kind_name = f"KIND_{options.device.upper()}"
    gpus = f"\n    gpus: [ {', '.join(map(str, options.gpus))} ]" if options.gpus and options.device == "gpu" else ""
    return [
        "dynamic_batching {"
        + (f"\n  preferred_batch_size: [ {', '.join(map(str, preferred))} ]" if preferred else "")
        + f"\n  max_queue_delay_microseconds: {options.max_queue_delay_us}\n}}",
        f"instance_group [\n  {{\n    count: {options.instances}\n    kind: {kind_name}{gpus}\n  }}\n]",
    ]


def _hw(spec: ModelSpec) -> list[int]:
    return [-1, -1] if spec.dynamic_size else [spec.labels.height, spec.labels.width]


def _inputs(spec: ModelSpec, *, optional_edges: bool = False) -> list[str]:
    lab, hw = spec.labels, _hw(spec)
    id_type = "TYPE_UINT8" if lab.num_label_ids <= 256 else "TYPE_INT32"
    inputs = [_tensor(LABELS, id_type, hw)]
    if lab.use_instance:
        inputs.append(_tensor(EDGES, "TYPE_UINT8", hw, optional=optional_edges))
    if spec.use_vae:
        inputs.append(_tensor(Z, "TYPE_FP32", [spec.z_dim]))
    return inputs


def config_text(spec: ModelSpec, kind: str, options: TritonOptions, max_batch: int) -> str:
    """The config.pbtxt of a graph or engine with this spec (protobuf text format of Triton's ModelConfig):
    a native backend (onnxruntime_onnx, tensorrt_plan), or with ``options.backend == "python"`` the spade-rt
    runtime in Triton's python backend (same tensors; ``edges`` optional: label boundaries when absent)."""
    python = options.backend == "python"
    head = [f'name: "{options.name}"']
    if python:
        head += ['backend: "python"']
    else:
        platform, filename = PLATFORMS[kind]
        head += [f'platform: "{platform}"', f'default_model_filename: "{filename}"']
    lines = [
        *head,
        f"max_batch_size: {max_batch}",
        "input [\n" + ",\n".join(_inputs(spec, optional_edges=python)) + "\n]",
        "output [\n" + _tensor(IMAGE, "TYPE_UINT8", [*_hw(spec), 3]) + "\n]",
        *_batching_and_instances(spec, options, max_batch),
    ]
    if python:
        params = {"spade_rt_role": "synthesize", "spade_rt_model": PYTHON_FILES[kind], "spade_rt_kind": kind}
        if options.tier != "auto":
            params["spade_rt_tier"] = options.tier
        if options.execution_env:
            params["EXECUTION_ENV_PATH"] = options.execution_env
        lines.append(_parameters(params))
    return "\n".join(lines) + "\n"


def png_config_text(spec: ModelSpec, options: TritonOptions, max_batch: int) -> str:
    """config.pbtxt of NAME_png (python backend): label PNG bytes (ids or the preset's palette colours) [+
    instance PNG, z] -> image (uint8 RGB) and image_png (PNG bytes), through NAME (BLS)."""
    inputs = [_tensor("label_png", "TYPE_STRING", [1])]
    if spec.labels.use_instance:
        inputs.append(_tensor("instance_png", "TYPE_STRING", [1], optional=True))
    if spec.use_vae:
        inputs.append(_tensor(Z, "TYPE_FP32", [spec.z_dim], optional=True))
    outputs = [_tensor(IMAGE, "TYPE_UINT8", [*_hw(spec), 3]), _tensor("image_png", "TYPE_STRING", [1])]
    # the PNG model decodes on CPUs; the synthesize model (NAME) keeps the device
    png_options = TritonOptions(
        name=options.name + PNG_SUFFIX, instances=options.instances, device="cpu", max_queue_delay_us=0
    )
    params = {"spade_rt_role": "png", "spade_rt_target": options.name, "spade_rt_spec": json.dumps(spec.to_dict())}
    if options.execution_env:
        params["EXECUTION_ENV_PATH"] = options.execution_env
    lines = [
        f'name: "{png_options.name}"',
        'backend: "python"',
        f"max_batch_size: {max_batch}",
        "input [\n" + ",\n".join(inputs) + "\n]",
        "output [\n" + ",\n".join(outputs) + "\n]",
        *_batching_and_instances(spec, png_options, max_batch),
        _parameters(params),
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
def _check_parses(text: str) -> bool:
    """Parse with Triton's ModelConfig where tritonclient is installed; False where it is not."""
    try:
        parse_config(text)
        return True
    except ModelFormatError as exc:
        if "needs tritonclient" not in str(exc):
            raise
        log.debug("tritonclient is not installed: config.pbtxt written without parsing it")
        return False


def _served_batch(source: Path, spec: ModelSpec, manifest: dict | None, options: TritonOptions) -> int:
    """The largest batch Triton may send this graph or engine; refuses what Triton's backends cannot serve."""
    if spec.output != "uint8" and options.backend != "python":
        raise InputError(
            f"{source.name} gives float output; Triton's native backends serve uint8 RGB: export with --output uint8 "
            "(or give `spade-rt triton` the spade-rt model, which exports it so), or serve it with --backend python"
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
    return max_batch


def write_repository(
    source: Path, kind: str, repo: Path, options: TritonOptions, *, force: bool = False, provenance: dict | None = None
) -> Path:
    """Copy a graph or engine into ``repo/NAME/1/`` with its config.pbtxt (and, for the python backend, its
    model.py; with ``options.with_png`` the PNG model ``repo/NAME_png``); returns the model folder."""
    if kind not in PLATFORMS:
        raise InputError(f"{source} is a {kind} file: Triton repositories take an ONNX graph or an engine")
    options.validate(kind)
    python = options.backend == "python"
    manifest = engine_manifest(source) if kind == "engine" else None
    spec = spec_from_dict(manifest["spec"], str(manifest_path(source))) if manifest else onnx_spec(source)
    max_batch = _served_batch(source, spec, manifest, options)

    text = config_text(spec, kind, options, max_batch)
    checked = _check_parses(text)
    png_text = png_config_text(spec, options, max_batch) if options.with_png else None
    if png_text is not None:
        _check_parses(png_text)

    repo.mkdir(parents=True, exist_ok=True)
    names = [options.name] + ([options.name + PNG_SUFFIX] if png_text is not None else [])
    for name in names:
        if (repo / name).exists() and not force:
            raise InputError(f"{repo / name} exists: choose another --name, or --force to replace it")
    staged = {name: repo / f".{name}.partial" for name in names}
    for staging in staged.values():
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "1").mkdir(parents=True)
    staging = staged[options.name]
    filename = PYTHON_FILES[kind] if python else PLATFORMS[kind][1]
    shutil.copyfile(source, staging / "1" / filename)
    if python and manifest is not None:  # the engine backend checks the engine against its manifest
        shutil.copyfile(manifest_path(source), manifest_path(staging / "1" / filename))
    if python and kind == "onnx" and report_path(source).is_file():  # export's tier record: what tiers are offered
        shutil.copyfile(report_path(source), report_path(staging / "1" / filename))
    if python:
        (staging / "1" / "model.py").write_text(
            MODEL_PY.format(version=__version__, what=f"{source.name} through the spade-rt runtime")
        )
    (staging / CONFIG).write_text(text)
    sidecar = {
        "format": "spade-rt-triton-model",
        "spade_rt": __version__,
        "backend": options.backend,
        "source": source.name,
        "source_sha256": sha256_file(source),
        "kind": kind,
        "spec": spec.to_dict(),
        "builder": manifest["builder"] if manifest else None,
        **(provenance or {}),
    }
    (staging / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    if png_text is not None:
        png_staging = staged[options.name + PNG_SUFFIX]
        (png_staging / CONFIG).write_text(png_text)
        (png_staging / "1" / "model.py").write_text(
            MODEL_PY.format(version=__version__, what=f"label PNG in, picture out, through {options.name}")
        )
        png_sidecar = {"format": "spade-rt-triton-model", "spade_rt": __version__, "backend": "python"}
        (png_staging / SIDECAR).write_text(json.dumps({**png_sidecar, "target": options.name}, indent=2) + "\n")
    for name, folder in staged.items():
        if (repo / name).exists():
            shutil.rmtree(repo / name)
        folder.rename(repo / name)
    target = repo / options.name
    log.info(
        "wrote %s: %s, %s ids %dx%d -> uint8 RGB, max batch %d, %d %s instance(s)%s%s",
        target,
        "python backend (spade-rt runtime)" if python else PLATFORMS[kind][0],
        spec.preset,
        spec.labels.height,
        spec.labels.width,
        max_batch,
        options.instances,
        options.device.upper(),
        "; config.pbtxt parses with Triton's ModelConfig" if checked else "",
        f"; label PNGs in: {repo / (options.name + PNG_SUFFIX)}" if png_text is not None else "",
    )
    if manifest is not None and not python:
        builder = manifest["builder"]
        if builder.get("module") == "tensorrt_rtx":
            log.warning(
                "%s was built with TensorRT-RTX %s: Triton's tensorrt_plan backend deserialises plans with its own "
                "full TensorRT, so serve it with --backend python (the spade-rt runtime inside Triton), build the "
                "engine with `spade-rt build --backend tensorrt` inside the Triton container (same TensorRT "
                "version), or serve the ONNX graph (docs/triton.md)",
                source.name,
                builder.get("version"),
            )
        else:
            log.info("Triton loads this plan only with TensorRT %s on a GPU like the build's", builder.get("version"))
    if python:
        log.info(
            "Triton's python backend needs spade-rt and numpy < 2 in its interpreter: docs/triton.md "
            "(here: bash spade_rt/serve/triton_env.sh)"
        )
    return target
