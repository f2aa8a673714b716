"""Argument checks shared by the CLI and the Python API: one function per rule, each message in the caller's voice.

Every command validates all of its arguments in one place, before anything heavy is imported or loaded (torch,
onnx, a model's weights): ranges, suffixes, combinations, and flags that do not apply to this model or file
kind (refused, naming why). The Python API calls the same functions, so the same mistake gets the same message
from both; ``Voice`` spells each option as the caller does (``--seed -5`` on the CLI, ``seed=-5`` in Python).

Model-dependent checks take a ``ModelSpec`` (``spade_rt.runtime.spec``) read cheaply, from the file's header:
a spade-rt model's safetensors header, an ONNX graph's metadata, an engine's manifest
(``spade_rt.runtime.peek.peek_spec``). torch-free, like the rest of the runtime core.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spade_rt.errors import ConfigError, InputError, OutputError
from spade_rt.images import OUTPUT_SUFFIXES, PICTURE_SUFFIXES
from spade_rt.io_utils import check_output_dir, check_output_file
from spade_rt.limits import INT_RANGES, MAX_OUTPUT_SIDE, shown

MAX_SEED = 2**32 - 1  # numpy seeds: 0 .. 2^32 - 1 everywhere (CLI, API, server)
# the dedup graph's default: feature maps of at least this many pixels get their modulation per distinct patch
# (coco / ade20k at 256x256: 32x32 up to 256x256; below, the dense gamma/beta conv is about as cheap as the
# bookkeeping; measured in bench/results/amd-epyc-2cpu-2026-12-04/)
DEDUP_MIN_PIXELS = 32 * 32
SUPPORTED_OPSETS = range(17, 21)  # 17..20: ONNX Runtime >= 1.16, TensorRT 10 / TensorRT-RTX
DEDUP_MAX_CELLS = 1 << 21  # dedup graphs pack patch ids three to an int64: every grid must stay below 2^21 cells
GRAPH_CHOICES: dict[str, tuple[str, ...]] = {
    "precision": ("fp32", "fp16"),
    "output": ("float", "uint8"),
    "graph": ("static", "dedup"),
    "index_pad": ("int32", "float"),
    "lookup": ("gather", "onehot"),
}
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
MODEL_SUFFIXES = {"native": (".safetensors",), "onnx": (".onnx",), "engine": ENGINE_SUFFIXES}
# names that say a file is something else than a model of the kind being written
FOREIGN_SUFFIXES: dict[str, str] = {
    **dict.fromkeys(PICTURE_SUFFIXES, "a picture"),
    ".npy": "a numpy array",
    ".json": "a JSON report or manifest",
    **dict.fromkeys((".pth", ".pt", ".ckpt"), "a PyTorch checkpoint"),
    **dict.fromkeys((".txt", ".md"), "a text file"),
    ".safetensors": "a spade-rt model",
    ".onnx": "an ONNX graph",
    **dict.fromkeys(ENGINE_SUFFIXES, "an engine"),
}
TRITON_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # a Triton model name: the one rule


# ---- voice ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Voice:
    """How messages name an option: a CLI flag with its value as typed, or a Python keyword argument."""

    cli: bool
    flags: Mapping[str, str] = field(default_factory=dict)  # keyword -> flag, where they differ

    def name(self, key: str) -> str:
        if not self.cli:
            return f"{key}="
        return self.flags.get(key, "--" + key.replace("_", "-"))

    def say(self, key: str, value: Any) -> str:
        """``--batch 4:2:1`` / ``batch=(4, 2, 1)``; a bool flag on the CLI is the flag alone."""
        if not self.cli:
            return f"{key}={value!r}"
        flag = self.name(key)
        if isinstance(value, bool):
            return flag
        if isinstance(value, tuple | list):
            sep = "x" if key == "size" else ":" if key == "batch" else " "
            return f"{flag} {sep.join(map(str, value))}"
        return f"{flag} {value}"

    def resize_refused(self) -> str:
        """Why a map of another size is refused, and how to accept it."""
        if self.cli:
            return "--no-resize refuses other sizes (drop it to resize the map with NEAREST, or resize it yourself)"
        return "resize=False refuses other sizes (resize=True resizes the map with NEAREST, or resize it yourself)"


API = Voice(False)
CLI = Voice(True, {"resize": "--no-resize", "destination": "-o", "output_path": "-o", "repo": "-o"})


# ---- numbers ----------------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def check_int_option(
    key: str, value: Any, lo: int, hi: int | None = None, voice: Voice = API, what: str = "a whole number"
) -> int:
    """An integer option in lo..hi (hi None: no upper bound), else ConfigError in the caller's voice."""
    if not _is_int(value) or value < lo or (hi is not None and value > hi):
        accepted = f"{lo}..{hi}" if hi is not None else f"{lo} or more"
        raise ConfigError(f"{voice.say(key, value)}: expected {what} {accepted}")
    return int(value)


def check_seed(seed: Any, voice: Voice = API, count: int = 1, key: str = "seed") -> int | None:
    """A numpy seed: None, or a whole number 0..MAX_SEED (``count`` consecutive seeds must all fit)."""
    if seed is None:
        return None
    top = MAX_SEED - max(count, 1) + 1
    if not _is_int(seed) or not 0 <= seed <= top:
        extra = ""
        if count > 1 and _is_int(seed) and seed > top:
            extra = f" (with {count} scenes, seeds up to {seed + count - 1} are used)"
        raise ConfigError(f"{voice.say(key, seed)}: expected a whole number 0..{top}{extra}")
    return int(seed)


# ---- export options ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelShape:
    """What graph options depend on: a model's output size, its size cell (2^upsamplings) and whether it is a
    VAE model (its linear fc fixes the size). Read from the model's header (torch-free)."""

    output_hw: tuple[int, int]
    cell: int
    upsampling: str
    use_vae: bool


def check_graph_options(
    *,
    precision: Any = "fp32",
    output: Any = "float",
    batch: Any = (1, 1, 8),
    size: Any = None,
    dynamic: Any = False,
    opset: Any = 17,
    graph: Any = "static",
    index_pad: Any = "int32",
    lookup: Any = "gather",
    dedup_min_pixels: Any = DEDUP_MIN_PIXELS,
    model: ModelShape | None = None,
    voice: Voice = API,
) -> tuple[int, int] | None:
    """Every export option: choices, the opset range, the batch range, size against the model, combinations.
    Returns the graph's (H, W) when ``model`` is given. ConfigError naming the option(s) and what is accepted."""
    values = {"precision": precision, "output": output, "graph": graph, "index_pad": index_pad, "lookup": lookup}
    for key, value in values.items():
        if value not in GRAPH_CHOICES[key]:
            raise ConfigError(f"{voice.say(key, value)}: expected one of {', '.join(GRAPH_CHOICES[key])}")
    if not isinstance(dynamic, bool):
        raise ConfigError(f"{voice.say('dynamic', dynamic)}: expected True or False")
    if not _is_int(opset) or opset not in SUPPORTED_OPSETS:
        raise ConfigError(
            f"{voice.say('opset', opset)}: expected an ONNX opset {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1}"
        )
    top = INT_RANGES["max_batch"][1]  # what every loader accepts (spade_rt.runtime.spec.check_spec_values)
    if not (isinstance(batch, tuple | list) and len(batch) == 3 and all(_is_int(b) for b in batch)):
        raise ConfigError(f"{voice.say('batch', batch)}: expected MIN:OPT:MAX (three whole numbers), e.g. 1:1:8")
    lo, opt, hi = (int(b) for b in batch)
    if not 1 <= lo <= opt <= hi <= top:
        raise ConfigError(
            f"{voice.say('batch', tuple(batch))}: expected 1 <= MIN <= OPT <= MAX <= {top}, e.g. 1:1:8"
        )
    if size is not None:
        if dynamic:
            raise ConfigError(f"{voice.say('size', size)} and {voice.name('dynamic')}: a graph has a fixed or a "
                              "dynamic size, not both")  # fmt: skip
        if not (isinstance(size, tuple | list) and len(size) == 2 and all(_is_int(s) for s in size)):
            raise ConfigError(f"{voice.say('size', size)}: expected HxW, e.g. 256x512")
        if not all(1 <= s <= MAX_OUTPUT_SIDE for s in size):
            raise ConfigError(f"{voice.say('size', tuple(size))}: expected sides of 1..{MAX_OUTPUT_SIDE}")
    if not _is_int(dedup_min_pixels) or not 1 <= dedup_min_pixels <= MAX_OUTPUT_SIDE**2:
        raise ConfigError(
            f"{voice.say('dedup_min_pixels', dedup_min_pixels)}: expected a whole number of pixels "
            f"1..{MAX_OUTPUT_SIDE**2} (the smallest feature map the dedup graph dedups, h * w)"
        )
    if lookup == "onehot" and graph == "dedup":
        raise ConfigError(
            f"{voice.say('lookup', 'onehot')} is a formulation of the static graph ({voice.say('graph', 'dedup')} "
            "gathers per patch)"
        )
    if graph == "dedup" and (precision != "fp32" or dynamic):
        bad = voice.say("precision", precision) if precision != "fp32" else voice.say("dynamic", True)
        raise ConfigError(
            f"{voice.say('graph', 'dedup')} with {bad}: the dedup graph is an fp32, fixed-size graph for ONNX Runtime "
            f"on CPUs (for GPUs and TensorRT export {voice.say('graph', 'static')})"
        )
    if model is None:
        return None
    h, w = tuple(size) if size is not None else model.output_hw
    if h % model.cell or w % model.cell:
        raise ConfigError(
            f"{voice.say('size', (h, w))}: expected multiples of {model.cell} (2^{int(math.log2(model.cell))} for "
            f"{model.upsampling!r} upsampling), e.g. {max(1, h // model.cell) * model.cell}x"
            f"{max(1, w // model.cell) * model.cell}"
        )
    if model.use_vae and (dynamic or (h, w) != tuple(model.output_hw)):
        oh, ow = model.output_hw
        given = voice.say("dynamic", True) if dynamic else voice.say("size", (h, w))
        raise ConfigError(
            f"{given}: a VAE model's linear fc fixes its size to {oh}x{ow} ({voice.name('size')} and "
            f"{voice.name('dynamic')} are for models with a convolutional fc)"
        )
    if graph == "dedup" and hi * (h + 4) * (w + 4) >= DEDUP_MAX_CELLS:
        raise ConfigError(
            f"{voice.say('graph', 'dedup')} packs patch ids into int64: batch {hi} x {h}x{w} is too large "
            f"(batch x (H+4) x (W+4) must stay below {DEDUP_MAX_CELLS}); lower the batch MAX"
        )
    return h, w


# ---- output files -----------------------------------------------------------------------------------------
def check_model_output(path: str | Path, kind: str, key: str = "output_path", voice: Voice = API) -> Path:
    """Where a spade-rt model (``native``), a graph (``onnx``) or an engine (``engine``) is written.

    Any name works (the kind is read from the content, docs/architecture.md), except one whose suffix says
    the file is something else: a picture, an array, a report, a checkpoint, a model of another kind."""
    flag = voice.name(key) if voice.cli else key
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in FOREIGN_SUFFIXES and suffix not in MODEL_SUFFIXES[kind]:
        example = f"{p.stem or 'model'}{MODEL_SUFFIXES[kind][0]}"
        raise OutputError(
            f"{flag} {p} has '{p.suffix}', the suffix of {FOREIGN_SUFFIXES[suffix]}: expected a name for "
            f"{_kind_words(kind)}, e.g. {example}"
        )
    return check_output_file(p, flag)


def check_folder_output(path: str | Path, key: str, voice: Voice = API, what: str = "folder") -> Path:
    """An output folder: not an existing file, creatable. OutputError names the flag and the path."""
    p = Path(path)
    flag = voice.name(key) if voice.cli else key
    if os.path.lexists(p) and not p.is_dir():
        raise OutputError(f"{flag} {p} is a file: expected a {what} (existing or to be created)")
    return check_output_dir(p, flag)


# ---- synthesize: paths and flags --------------------------------------------------------------------------
def check_synthesize_paths(
    labels: str | Path,
    output: str | Path,
    *,
    instance: str | Path | None = None,
    fmt: str | None = None,
    batch_size: int | None = None,
    voice: Voice = CLI,
) -> bool:
    """--labels, --instance, -o, --format and --batch-size together; returns True for folder mode.

    One map writes one picture or .npy file (its suffix chooses); a folder of maps writes a folder, where
    --format chooses and --batch-size groups maps per call. A flag of the other mode is refused, not ignored."""
    labels, output = Path(labels), Path(output)
    if not labels.exists():
        raise InputError(f"{voice.say('labels', labels)}: not found; expected a label map (PNG) or a folder of them")
    folder = labels.is_dir()
    if instance is not None:
        inst = Path(instance)
        if not inst.exists():
            raise InputError(f"{voice.say('instance', inst)}: not found")
        if inst.is_dir() != folder:
            want, got = ("a folder", "a file") if folder else ("a file", "a folder")
            raise InputError(
                f"{voice.say('instance', inst)} is {got}, but {voice.say('labels', labels)} is {want}: expected "
                f"{want} of instance maps, like the labels"
            )
    out_flag = "-o" if voice.cli else "output"
    if not folder:
        if batch_size is not None:
            raise ConfigError(
                f"{voice.say('batch_size', batch_size)} applies to a folder of maps; {labels} is one map"
            )
        check_output_file(output, out_flag, OUTPUT_SUFFIXES)
        if fmt is not None and output.suffix.lower() != f".{fmt}":
            raise ConfigError(
                f"{voice.say('format', fmt)} applies to a folder of maps; for one map the suffix of {out_flag} "
                f"chooses ({output.name} writes {'an array' if output.suffix.lower() == '.npy' else 'a picture'}): "
                f"drop {voice.name('format')} or name the output {output.stem}.{fmt}"
            )
        return False
    if output.suffix.lower() in OUTPUT_SUFFIXES and not output.is_dir():
        raise OutputError(
            f"{out_flag} {output} is a {output.suffix} file name, but {voice.say('labels', labels)} is a folder: "
            "expected a folder for its pictures (one per map, named like the map)"
        )
    if fmt is not None and fmt not in ("png", "npy"):
        raise ConfigError(f"{voice.say('format', fmt)}: expected png or npy")
    if batch_size is not None:
        check_int_option("batch_size", batch_size, 1, None, voice, "a number of maps per call")
    check_output_dir(output, out_flag)
    return True


def check_model_options(
    spec: Any,
    model: str | Path,
    kind: str,
    *,
    seed: int | None = None,
    z: Any = None,
    style: Any = None,
    rebuild: bool = False,
    trust_engine: bool = False,
    voice: Voice = CLI,
) -> None:
    """Flags that apply to some models only: z, seed and style to VAE models (style: a spade-rt model with an
    encoder), rebuild and trust_engine to engines. ``spec`` None: not known before loading (checked later)."""
    name = Path(model).name
    if kind != "engine":
        for key, on in (("rebuild", rebuild), ("trust_engine", trust_engine)):
            if on:
                raise ConfigError(f"{voice.say(key, True)} applies to engines; {name} is {_kind_words(kind)}")
    if spec is None:
        return
    if not spec.use_vae:
        _refuse_style_inputs(name, voice, z=z, seed=seed, style=style)
    if style is not None and (kind != "native" or not spec.extra.get("has_encoder", True)):
        raise ConfigError(
            f"{voice.name('style')} needs a spade-rt model with a style encoder; {name} is "
            f"{_kind_words(kind) if kind != 'native' else 'a spade-rt model without one'} (give "
            f"{voice.name('z')} or {voice.name('seed')} instead)"
        )


def _refuse_style_inputs(name: str, voice: Voice, error: type = ConfigError, **given: Any) -> None:
    """A model without z (not a VAE model) refuses every input that chooses a style: the same words everywhere."""
    named = [voice.name(k) for k, v in given.items() if v is not None]
    if named:
        given_words = ", ".join(named)
        raise error(f"{name} is not a VAE model: it takes no {given_words} (its pictures depend on the labels only)")


def _kind_words(kind: str) -> str:
    return {"native": "a spade-rt model", "onnx": "an ONNX graph", "engine": "an engine"}.get(kind, f"a {kind} file")


# ---- the API's arrays -------------------------------------------------------------------------------------
def check_label_array(labels: Any, spec: Any, voice: Voice = API, key: str = "labels") -> np.ndarray:
    """labels for a model of ``spec``: an integer array (H, W) or (N, H, W), not an RGB picture."""
    try:
        arr = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{key} is not an array of label ids ({shown(str(exc), 80)})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_):
        raise InputError(f"{key} must be an integer array of label ids, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and spec.labels.width != arr.shape[-1]:
        channels = "RGB" if arr.shape[-1] == 3 else "RGBA"
        raise InputError(
            f"{key} of shape {arr.shape} looks like an {channels} picture (H, W, {arr.shape[-1]}): expected label "
            "ids (H, W) or (N, H, W); decode a colour-coded map with spade_rt.palettes.decode_colours(rgb, palette)"
        )
    if arr.ndim not in (2, 3):
        raise InputError(f"{key} must be (H, W) or (N, H, W), got shape {arr.shape}")
    if 0 in arr.shape:
        raise InputError(f"{key} is empty (shape {arr.shape})")
    return arr


def check_z(z: Any, n: int, z_dim: int, voice: Voice = API) -> np.ndarray:
    """z (z_dim,) or (n, z_dim), finite numbers -> (n, z_dim) float32."""
    try:
        arr = np.asarray(z, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{voice.name('z')} is not an array of numbers ({shown(str(exc), 80)})") from None
    arr = arr if arr.ndim == 2 else arr[None]
    if arr.shape != (n, z_dim):
        raise InputError(f"{voice.name('z')} must be ({z_dim},) or ({n}, {z_dim}), got {np.shape(z)}")
    if not np.isfinite(arr).all():
        raise InputError(f"{voice.name('z')} holds NaN or infinite values: expected finite numbers")
    return np.ascontiguousarray(arr)


def check_call_options(
    spec: Any, *, z: Any, seed: Any, output: Any, resize: Any, voice: Voice = API, name: str = "this model"
) -> None:
    """The keyword arguments of a ``Synthesizer`` call, before any array is touched."""
    if output not in ("uint8", "float"):
        raise InputError(f"{voice.say('output', output)}: expected 'uint8' or 'float'")
    if not isinstance(resize, bool | np.bool_):
        raise InputError(f"{voice.say('resize', resize)}: expected True or False")
    check_seed(seed, voice)
    if not spec.use_vae:
        _refuse_style_inputs(name, voice, InputError, z=z, seed=seed)
    if output == "float" and spec.output == "uint8":
        raise InputError(f"{voice.say('output', 'float')}: this graph was exported with --output uint8 (RGB only)")


# ---- triton (wired in spade_rt/commands/triton.py) ----------------------------------------------------------
def check_triton_options(
    kind: str,
    spec: Any = None,
    *,
    device: str = "gpu",
    gpus: tuple[int, ...] | list[int] | None = None,
    precision: str | None = None,
    max_batch: int | None = None,
    instances: int = 1,
    voice: Voice = CLI,
) -> None:
    """`spade-rt triton`'s flags against each other and the source: --gpus needs --device gpu, --precision and
    --max-batch apply to a spade-rt model (exported here; a graph or engine keeps its own) unless they agree
    with the file."""
    check_int_option("instances", instances, 1, 1024, voice)
    if gpus:
        if device != "gpu":
            raise ConfigError(
                f"{voice.say('gpus', tuple(gpus))} places GPU instances, but {voice.say('device', device)} asks for "
                f"CPU ones: drop {voice.name('gpus')} or use {voice.say('device', 'gpu')}"
            )
        for g in gpus:
            check_int_option("gpus", g, 0, 1023, voice, "GPU ids")
        if len(set(gpus)) != len(gpus):
            raise ConfigError(f"{voice.say('gpus', tuple(gpus))}: each GPU once")
    if kind == "native" or spec is None:
        if precision is not None and precision not in ("fp32", "fp16"):
            raise ConfigError(f"{voice.say('precision', precision)}: expected fp32 or fp16")
        if max_batch is not None:
            check_int_option("max_batch", max_batch, 1, INT_RANGES["max_batch"][1], voice)
        return
    what = "graph" if kind == "onnx" else "engine"
    if precision is not None and precision != spec.precision:
        raise ConfigError(
            f"{voice.say('precision', precision)}: this {what} is {spec.precision} already; "
            f"{voice.name('precision')} chooses the precision of a spade-rt model's export (drop it, or give the model)"
        )
    if max_batch is not None and spec.max_batch is not None and max_batch != spec.max_batch:
        raise ConfigError(
            f"{voice.say('max_batch', max_batch)}: this {what} was made for batches up to {spec.max_batch}; "
            f"{voice.name('max_batch')} chooses a spade-rt model's export (drop it, or give the model)"
        )


def check_triton_name(name: Any, voice: Voice = CLI) -> str:
    """A Triton model name (``TRITON_NAME_RE``): 1..128 letters, digits, '_', '-', '.', not '-' or '.' first."""
    if not isinstance(name, str) or not TRITON_NAME_RE.match(name):
        raise ConfigError(
            f"{voice.say('name', name)}: expected a model name of 1..128 letters, digits, '_', '-', '.' (not first)"
        )
    return name


def check_triton_destination(repo: str | Path, name: str, force: bool = False, voice: Voice = CLI) -> Path:
    """REPO/NAME before any export: REPO a folder (or creatable), NAME a Triton model name, REPO/NAME new unless
    --force. Returns REPO/NAME."""
    repo = Path(repo)
    check_triton_name(name, voice)
    check_folder_output(repo, "repo", voice, "folder for the model repository")
    target = repo / name
    if os.path.lexists(target) and not force:
        raise OutputError(
            f"{target} exists: choose another {voice.name('name')}, or {voice.say('force', True)} to replace it"
        )
    return target


# ---- recipes ----------------------------------------------------------------------------------------------
def check_recipe_preset(recipe_name: str, recipe_preset: str, model: str | Path, preset: str) -> None:
    if preset != recipe_preset:
        raise ConfigError(
            f"--recipe {recipe_name} is for {recipe_preset} models; {Path(model).name} is a {preset} model "
            "(pick a recipe of its preset: spade_rt/engines/recipes.json)"
        )


__all__ = [
    "API",
    "CLI",
    "DEDUP_MAX_CELLS",
    "GRAPH_CHOICES",
    "MAX_SEED",
    "SUPPORTED_OPSETS",
    "ModelShape",
    "Voice",
    "check_call_options",
    "check_folder_output",
    "check_graph_options",
    "check_int_option",
    "check_label_array",
    "check_model_options",
    "check_model_output",
    "check_recipe_preset",
    "check_seed",
    "check_synthesize_paths",
    "check_triton_destination",
    "check_triton_name",
    "check_triton_options",
    "check_z",
]

