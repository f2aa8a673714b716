"""Original SPADE checkpoints (``latest_net_G.pth`` / ``latest_net_E.pth``): safe loading and shape inference.

Files are read with ``torch.load(weights_only=True)`` only: a file that carries any pickled object other
than tensors and plain containers is refused without running it. What the weights determine (ngf, input
channels, VAE or not, 'most' upsampling, the norm variant) is read from shapes; the rest comes from the
preset and is checked, so a mismatch names both numbers and the option that explains it.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spade_rt.errors import CheckpointMismatchError, ConfigError, ModelFormatError, UnsafeCheckpointError
from spade_rt.model.config import GeneratorConfig
from spade_rt.presets import PRESETS, describe_channels, get_preset, latent_size

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


_PICKLED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # torch's weights_only refusal names the global it met
_PICKLE_OPCODE = re.compile(r"Unsupported operand (\d+)")
PROTOCOL_4_OPCODES = range(0x8C, 0x99)  # SHORT_BINUNICODE .. READONLY_BUFFER: added by pickle protocols 4 and 5
EXPECTED_FILE = "a file written by torch.save (a zip archive, or a pickle stream from torch < 1.6)"


def torch_load_weights_only(path: str | Path, what: str = "PyTorch checkpoint"):
    """``torch.load(path, weights_only=True)`` with one-line errors that tell the three failures apart.

    - the file carries a pickled global other than tensors and plain containers: UnsafeCheckpointError,
      naming that global (nothing of it ran);
    - the file uses a pickle feature the weights-only reader does not have (protocol 4 framing):
      ModelFormatError saying so;
    - anything else (empty, text, random bytes, truncated): ModelFormatError saying what the file looks like.
    torch's own note about pickle protocols ("Detected pickle protocol ...") is not shown to users.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{what} not found: {path}")
    try:
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
        # A legacy pickle stream is read from memory: torch's weights-only unpickler reads a string's forged
        # 4-byte length straight from the file, and a file's read(n) allocates n bytes up front (a 514-byte file
        # asked for 3 GB; tests/fuzz/regressions/original_checkpoint). From memory, read(n) gets what is there.
        # Zip archives: torch reads the pickle record into memory itself.
        source = path if zipped else io.BytesIO(path.read_bytes())
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        unsafe, opcode = _PICKLED_GLOBAL.search(text), _PICKLE_OPCODE.search(text)
        if unsafe:
            raise UnsafeCheckpointError(
                f"refused {path}: it carries a pickled {unsafe.group(1)}, not only tensors; spade-rt reads "
                f"{what}s with torch.load(weights_only=True) and runs nothing from them: expected a state dict "
                "of tensors"
            ) from None
        if opcode and int(opcode.group(1)) in PROTOCOL_4_OPCODES:
            raise ModelFormatError(
                f"cannot read {what} {path}: its pickle stream uses opcode {opcode.group(1)} of pickle protocol 4 "
                f"or later, which torch.load(weights_only=True) cannot read; expected {EXPECTED_FILE} with "
                "torch.save's default pickle protocol (2)"
            ) from None
        raise ModelFormatError(f"cannot read {what} {path}: {_what_it_is(path)}; expected {EXPECTED_FILE}") from None
    except OSError as exc:
        raise ModelFormatError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except Exception:  # torch's readers fail on damaged bytes with EOFError, IndexError, KeyError, RuntimeError ...
        raise ModelFormatError(f"cannot read {what} {path}: {_what_it_is(path)}; expected {EXPECTED_FILE}") from None


def _what_it_is(path: Path) -> str:
    """What a file that torch.load could not read looks like, from its first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        return "a damaged or truncated zip archive"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "a damaged or truncated pickle stream"
    return f"neither a zip archive nor a pickle stream (it starts with {head[:12]!r})"


def load_torch_state_dict(path: str | Path) -> StateDict:
    """Read a ``torch.save(net.state_dict())`` file without unpickling arbitrary objects."""
    obj = torch_load_weights_only(path, "PyTorch checkpoint")
    path = Path(path)
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
        obj = next(iter(obj.values()))  # {'state_dict': {...}} / {'netG': {...}} wrappers
    if not isinstance(obj, dict) or not obj:
        raise ModelFormatError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    state: StateDict = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ModelFormatError(f"{path}: entry {key!r} is a {type(value).__name__}, expected a tensor")
        state[key.removeprefix("module.")] = value  # DataParallel prefix
    return state


# ---- what the file tells ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneratorFacts:
    """Everything a generator state dict determines by itself."""

    ngf: int
    semantic_nc: int
    use_vae: bool
    z_dim: int | None
    fc_out: int | None  # 16 * ngf * sh * sw for VAE models
    has_up_4: bool
    norm_G: str


def read_generator_facts(state: StateDict, source: str) -> GeneratorFacts:
    missing = [k for k in ("fc.weight", "conv_img.weight", "head_0.norm_0.mlp_shared.0.weight") if k not in state]
    if missing:
        sample = ", ".join(list(state)[:4])
        raise ModelFormatError(
            f"{source} is not a SPADE generator state dict: no {missing[0]!r} (its keys start with {sample}); "
            "pass the latest_net_G.pth file"
        )
    spectral = "head_0.conv_0.weight_orig" in state
    conv0_key = "head_0.conv_0.weight_orig" if spectral else "head_0.conv_0.weight"
    if conv0_key not in state:
        raise ModelFormatError(f"{source} is not a SPADE generator state dict: no {conv0_key!r}")
    conv0 = state[conv0_key]  # (16 ngf, 16 ngf, k, k)
    mlp = state["head_0.norm_0.mlp_shared.0.weight"]  # (128, semantic_nc, ks, ks)
    fc = state["fc.weight"]  # (16 ngf sh sw, z_dim) for VAE models, else a conv (16 ngf, semantic_nc, 3, 3)
    for name, tensor, ranks in ((conv0_key, conv0, (4,)), ("head_0.norm_0.mlp_shared.0.weight", mlp, (4,)),
                                ("fc.weight", fc, (2, 4))):  # fmt: skip
        if tensor.dim() not in ranks:
            raise ModelFormatError(
                f"{source}: {name} has shape {list(tensor.shape)}: expected {' or '.join(map(str, ranks))} "
                "dimensions, as in a SPADE generator"
            )
    if conv0.shape[0] % 16 or not conv0.shape[0]:
        raise ModelFormatError(f"{source}: head_0 has {conv0.shape[0]} channels, not a multiple of 16 (16 x ngf)")
    ngf = conv0.shape[0] // 16
    batch = "head_0.norm_0.param_free_norm.running_mean" in state
    norm_G = (
        f"{'spectral' if spectral else ''}spade{'syncbatch' if batch else 'instance'}{mlp.shape[-1]}x{mlp.shape[-1]}"
    )
    use_vae = fc.dim() == 2
    return GeneratorFacts(
        ngf=ngf,
        semantic_nc=mlp.shape[1],
        use_vae=use_vae,
        z_dim=fc.shape[1] if use_vae else None,
        fc_out=fc.shape[0] if use_vae else None,
        has_up_4=any(k.startswith("up_4.") for k in state),
        norm_G=norm_G,
    )


def explain_channel_count(n: int) -> str:
    """Which preset (and flags) gives ``n`` input channels, in words."""
    flag_sets = [(None, None), (False, None), (None, False), (True, None), (None, True), (False, False)]
    for name, p in PRESETS.items():
        if name == "custom":
            continue
        for inst, dc in flag_sets:
            use_inst = p.use_instance if inst is None else inst
            use_dc = p.contain_dontcare_label if dc is None else dc
            if p.label_nc + use_dc + use_inst != n:
                continue
            flags = []
            if inst is not None:
                flags.append("--instance" if inst else "--no-instance")
            if dc is not None:
                flags.append("--dontcare" if dc else "--no-dontcare")
            label = name + (" " + " ".join(flags) if flags else "")
            return f"{label}: {describe_channels(p.label_nc, use_dc, use_inst)}"
    return f"no preset has {n}: use --preset custom --label-nc K with K + dontcare + instance = {n}"


def infer_generator_config(
    state: StateDict,
    preset: str,
    source: str = "checkpoint",
    *,
    ngf: int | None = None,
    use_vae: bool | None = None,
    label_nc: int | None = None,
    contain_dontcare_label: bool | None = None,
    use_instance: bool | None = None,
    num_upsampling_layers: str | None = None,
    crop_size: int | None = None,
    aspect_ratio: float | None = None,
) -> GeneratorConfig:
    """Preset + explicit options, checked against (and completed from) the file's shapes."""
    facts = read_generator_facts(state, source)
    get_preset(preset)
    if ngf is not None and ngf != facts.ngf:
        raise CheckpointMismatchError(
            f"{source} has ngf {facts.ngf} (head_0 has {16 * facts.ngf} channels = 16 x ngf); --ngf {ngf} was given: "
            f"drop --ngf or pass --ngf {facts.ngf}"
        )
    if use_vae and not facts.use_vae:
        raise CheckpointMismatchError(
            f"{source} has a convolutional fc ({facts.semantic_nc} -> {16 * facts.ngf} channels): it was trained "
            "without --use_vae, but --use-vae was given; drop --use-vae"
        )
    if facts.use_vae and use_vae is None:
        log.info("%s has a linear fc (z_dim %d -> %d): a VAE generator, it takes z", source, facts.z_dim, facts.fc_out)
    if facts.has_up_4 and num_upsampling_layers not in (None, "most"):
        raise CheckpointMismatchError(
            f"{source} has an up_4 block, which only 'most' upsampling has; --num-upsampling-layers "
            f"{num_upsampling_layers} was given"
        )
    if not facts.has_up_4 and num_upsampling_layers == "most":
        raise CheckpointMismatchError(f"{source} has no up_4 block, so it is not a 'most' model; drop that option")
    if facts.has_up_4:
        num_upsampling_layers = "most"

    try:
        cfg = GeneratorConfig.from_preset(
            preset,
            ngf=facts.ngf,
            use_vae=facts.use_vae,
            z_dim=facts.z_dim,
            label_nc=label_nc,
            contain_dontcare_label=contain_dontcare_label,
            use_instance=use_instance,
            num_upsampling_layers=num_upsampling_layers,
            crop_size=crop_size,
            aspect_ratio=aspect_ratio,
            norm_G=facts.norm_G,
        )
    except ConfigError as exc:
        raise CheckpointMismatchError(f"{source}: {exc}") from None
    if cfg.semantic_nc != facts.semantic_nc:
        raise CheckpointMismatchError(
            f"{source} expects {facts.semantic_nc} input channels ({explain_channel_count(facts.semantic_nc)}); "
            f"--preset {preset} gives {cfg.semantic_nc} ({cfg.describe_channels()})"
        )
    if facts.use_vae:
        sh, sw = cfg.latent_hw
        if facts.fc_out != 16 * facts.ngf * sh * sw:
            cells = facts.fc_out // (16 * facts.ngf)
            hint = [up for up in ("normal", "more", "most") if _cells(cfg.crop_size, cfg.aspect_ratio, up) == cells]
            advice = f"; --num-upsampling-layers {hint[0]} fits" if hint else ""
            raise CheckpointMismatchError(
                f"{source}'s fc makes a {cells}-cell latent map (fc has {facts.fc_out} outputs = 16 x ngf x sh x sw); "
                f"crop {cfg.crop_size}, aspect {cfg.aspect_ratio} and '{cfg.num_upsampling_layers}' upsampling "
                f"give {sh}x{sw} = {sh * sw} cells{advice}"
            )
    return cfg


def _cells(crop: int, aspect: float, up: str) -> int:
    try:
        sh, sw = latent_size(crop, aspect, up)
    except ConfigError:
        return -1
    return sh * sw


def infer_encoder_norm(state: StateDict, source: str, cfg: GeneratorConfig) -> str:
    """Check an encoder state dict against the generator config; return its norm_E."""
    spectral = "layer1.0.weight_orig" in state
    key = "layer1.0.weight_orig" if spectral else "layer1.0.weight"
    if key not in state or "fc_mu.weight" not in state:
        raise ModelFormatError(
            f"{source} is not a SPADE ConvEncoder state dict (no layer1 / fc_mu); pass latest_net_E.pth"
        )
    ngf = state[key].shape[0]
    if ngf != cfg.ngf:
        raise CheckpointMismatchError(
            f"{source} is an encoder of width {ngf}, the generator has ngf {cfg.ngf}: the original ties both "
            "to --ngf; pass the encoder trained with this generator"
        )
    has6 = any(k.startswith("layer6.") for k in state)
    if has6 != (cfg.crop_size >= 256):
        raise CheckpointMismatchError(
            f"{source} {'has' if has6 else 'lacks'} layer6, which the original adds only for crop_size >= 256; "
            f"this model's crop_size is {cfg.crop_size}"
        )
    if state["fc_mu.weight"].shape[0] != cfg.z_dim:
        raise CheckpointMismatchError(
            f"{source} encodes {state['fc_mu.weight'].shape[0]}-d z, the generator takes z_dim {cfg.z_dim}"
        )
    norm = "batch" if "layer1.1.running_mean" in state else "instance"
    return f"{'spectral' if spectral else ''}{norm}"


def load_strict(net: nn.Module, state: StateDict, source: str) -> None:
    """``load_state_dict(strict=True)`` with a readable error (which keys, which shapes)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        (k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items() if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
        if shapes:
            k, got, want = shapes[0]
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {k}: file {got}, model {want}")
        raise CheckpointMismatchError(f"{source} does not fit the {type(net).__name__}: " + "; ".join(parts))
    net.load_state_dict(state, strict=True)
