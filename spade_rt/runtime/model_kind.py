"""What kind of model file a path holds, read from its first bytes; the name is only a hint.

Kinds (``KINDS``): ``native`` (a spade-rt model: a safetensors file, or a training run directory holding
``latest.safetensors``), ``onnx`` (a graph from `spade-rt export`) and ``engine`` (a TensorRT or
TensorRT-RTX engine from `spade-rt build`). An original SPADE checkpoint (``latest_net_G.pth``) is
recognised too, so that the message can say to convert it first.

Signatures read (at most the first 64 bytes, plus a manifest name beside engines):
- safetensors: an 8-byte little-endian header length, then the JSON header's ``{``;
- ONNX: a protobuf ``ModelProto``: its leading fields are valid ModelProto field tags and one of them is
  ``ir_version`` (field 1, a small varint), which every ONNX writer emits;
- engines: the serialised plan's magic tag, ``ftrt`` (TensorRT) or ``vtrt`` (TensorRT-RTX 1.x, read from a
  build on this machine), or a spade-rt manifest ``X.engine.json`` beside the file;
- PyTorch checkpoints: a zip archive (``torch.save``'s format since 1.6) or a pickle stream (older files).
Content that matches nothing falls back to the suffix (so that an empty or truncated ``x.onnx`` reaches the
ONNX loader, whose message is the useful one); no match at all raises one line naming the accepted kinds.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from spade_rt.errors import ModelFormatError
from spade_rt.runtime.spec import MANIFEST_FORMAT, manifest_path

NATIVE_SUFFIX = ".safetensors"
RUN_LATEST = "latest" + NATIVE_SUFFIX  # a training run directory's model


@dataclass(frozen=True)
class Kind:
    name: str
    what: str  # in words, for messages
    suffixes: tuple[str, ...]  # name hints, used only when the content says nothing


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("native", "a spade-rt model (.safetensors, or a training run directory)", (NATIVE_SUFFIX,)),
        Kind("onnx", "an ONNX graph from `spade-rt export` (.onnx)", (".onnx",)),
        Kind("engine", "a TensorRT engine from `spade-rt build` (.engine, .plan, .trt)", (".engine", ".plan", ".trt")),
    )
}
ENGINE_MAGICS = (b"ftrt", b"vtrt")
# ModelProto fields (number -> protobuf wire type): ir_version, producer_name/version, domain, model_version,
# doc_string, graph, opset_import, metadata_props, training_info, functions, configuration
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}


def accepted_kinds() -> str:
    return "; ".join(k.what for k in KINDS.values())


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


def looks_like_onnx(head: bytes) -> bool:
    """The first fields parse as ModelProto fields and include a plausible ir_version (1..64)."""
    pos, seen_ir = 0, False
    for _ in range(4):
        if pos >= len(head):
            break
        tag = _varint(head, pos)
        if tag is None:
            return False
        key, pos = tag
        number, wire = key >> 3, key & 7
        if _ONNX_FIELDS.get(number) != wire:
            return False
        value = _varint(head, pos)
        if value is None:
            return seen_ir
        n, pos = value
        if number == 1:
            if not 1 <= n <= 64:
                return False
            seen_ir = True
        elif wire == 2:
            pos += n  # skip a length-delimited field (may run past the head: that ends the walk)
    return seen_ir


def looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _has_engine_manifest(path: Path) -> bool:
    m = manifest_path(path)
    if not m.is_file():
        return False
    try:
        with open(m, "rb") as f:
            return json.loads(f.read(1 << 20)).get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def sniff(path: Path) -> str | None:
    """The kind the file's content shows ('checkpoint' for original PyTorch files), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        size = path.stat().st_size
    except OSError:
        return None
    if looks_like_safetensors(head, size):
        return "native"
    if head[:4] in ENGINE_MAGICS:
        return "engine"
    if looks_like_onnx(head):
        return "onnx"
    if head[:4] == b"PK\x03\x04" or head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "checkpoint"
    if _has_engine_manifest(path):
        return "engine"  # an engine of a TensorRT whose magic this code does not know yet
    return None


def model_kind(path: str | Path) -> str:
    """'native', 'onnx' or 'engine': from the content first, the name only when the content says nothing."""
    p = Path(path)
    if p.is_dir():
        if (p / RUN_LATEST).is_file():
            return "native"
        raise ModelFormatError(f"{p} is a directory without {RUN_LATEST}: expected {accepted_kinds()}")
    if not p.exists() and p.with_name(p.name + NATIVE_SUFFIX).is_file():
        return "native"  # runs/coco/latest -> runs/coco/latest.safetensors
    kind = sniff(p) if p.is_file() else None
    if kind == "checkpoint":
        raise ModelFormatError(
            f"{p} is a PyTorch checkpoint (an original SPADE latest_net_G.pth?): convert it first with "
            f"`spade-rt convert {p} --preset PRESET -o model.safetensors`"
        )
    if kind is not None:
        return kind
    suffix = p.suffix.lower()
    for k in KINDS.values():
        if suffix in k.suffixes:
            return k.name  # unreadable, empty or missing: the kind's own loader says what is wrong
    state = "no such file" if not p.exists() else "its content is none of them"
    raise ModelFormatError(f"cannot tell the model kind of {p} ({state}): expected {accepted_kinds()}")
