"""An ONNX file's ``metadata_props`` (the ``auto`` backend rule, every command's checks) and what `spade-rt
inspect` shows of it (producer, inputs, outputs: ``read_onnx_header``), read without any ONNX package.

A ModelProto is a sequence of protobuf fields; ``metadata_props`` is field 14, a repeated
``StringStringEntryProto`` (key = field 1, value = field 2). It sits after the graph (hundreds of MB), so the
reader walks the top-level fields and seeks past every other one: a few small reads, whatever the size.
Anything unreadable gives an empty dict; the backend that opens the file reports what is wrong with it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

METADATA_FIELD = 14
MAX_METADATA_BYTES = 1 << 20  # one entry; spade-rt's spec is a few kB


def _varint_from(f: BinaryIO) -> int | None:
    value = shift = 0
    while shift < 64:
        b = f.read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            return value
    return None


def _entry(data: bytes) -> tuple[str, str] | None:
    """key, value of one StringStringEntryProto."""
    pos, out = 0, {}
    while pos < len(data):
        key = data[pos]
        pos += 1
        if key & 7 != 2:
            return None
        n = shift = 0
        while pos < len(data):
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out[key >> 3] = data[pos : pos + n].decode("utf-8", "replace")
        pos += n
    return (out.get(1, ""), out.get(2, "")) if 1 in out else None


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """``{key: value}`` of the file's metadata_props; {} when it has none or cannot be read."""
    found: dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            for number, wire, value, n in _fields(f, 0, Path(path).stat().st_size):
                if number == METADATA_FIELD and wire == 2 and n <= MAX_METADATA_BYTES:
                    f.seek(value)
                    entry = _entry(f.read(n))
                    if entry:
                        found[entry[0]] = entry[1]
    except OSError as exc:
        log.debug("no metadata read from %s: %s", path, exc)
    except _MalformedError:
        pass  # what was read before the damage stands; the backend that opens the file says what is wrong
    return found


# ---- the walker -------------------------------------------------------------------------------------------
class _MalformedError(Exception):
    """The bytes are not a protobuf message where one should be."""


def _fields(f: BinaryIO, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value, length) of each field of the message in ``f[start:end]``, seeking past
    every payload: a varint's value (length 0), or where a length-delimited payload starts and its length (the
    caller seeks there to read it; the walk goes on after it whatever the caller read). Fixed-size fields give
    (offset, size). _MalformedError where the bytes stop being a message."""
    pos = start
    while pos < end:
        f.seek(pos)
        tag = _varint_from(f)
        if tag is None:
            raise _MalformedError("a field's tag runs past the end")
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value = _varint_from(f)
            if value is None:
                raise _MalformedError("a varint runs past the end")
            pos = f.tell()
            yield number, wire, value, 0
            continue
        if wire == 2:
            n = _varint_from(f)
            if n is None:
                raise _MalformedError("a length runs past the end")
            begin = f.tell()
        elif wire in (1, 5):
            begin, n = f.tell(), 8 if wire == 1 else 4
        else:
            raise _MalformedError(f"wire type {wire} (groups or junk) where a field should start")
        if begin + n > end:
            raise _MalformedError(f"field {number} says {n} bytes, past the end of its message")
        pos = begin + n
        yield number, wire, begin, n


@dataclass(frozen=True)
class OnnxHeader:
    """What `spade-rt inspect` shows of an ONNX graph, read as ONNX Runtime's session reports it: the
    producer, the metadata_props, and the graph's inputs (initializers excluded) and outputs as
    (name, "tensor(float)", shape), a shape's dimensions ints (dim_value), strings (dim_param) or None."""

    producer: str
    metadata: dict[str, str]
    inputs: list[tuple[str, str, list]]
    outputs: list[tuple[str, str, list]]


# ONNX's TensorProto.DataType -> the name ONNX Runtime gives it in "tensor(...)"
ELEMENT_TYPES = {
    1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string", 9: "bool",
    10: "float16", 11: "double", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16",
}  # fmt: skip
# field numbers (onnx.proto): ModelProto, GraphProto, ValueInfoProto, TypeProto(.Tensor), TensorShapeProto
PRODUCER_FIELD, GRAPH_FIELD = 2, 7
INITIALIZER_FIELD, SPARSE_INITIALIZER_FIELD, INPUT_FIELD, OUTPUT_FIELD = 5, 15, 11, 12
TENSOR_NAME_FIELD, SPARSE_VALUES_FIELD = 8, 1


def read_onnx_header(path: str | Path) -> OnnxHeader:
    """The producer, metadata and IO of an ONNX file, torch- and onnxruntime-free: a walk of its fields that
    reads only strings and shapes (weights are sought past). ModelFormatError (one line) for a file that is not
    a protobuf message or whose strings are not UTF-8 text."""
    from spade_rt.errors import ModelFormatError

    source = str(path)
    try:
        with open(path, "rb") as f:
            return _read_header(f, Path(path).stat().st_size, source)
    except OSError as exc:
        raise ModelFormatError(f"cannot read {source}: {exc.strerror or exc}") from None
    except _MalformedError as exc:
        raise ModelFormatError(f"{source} is not a readable ONNX graph: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ModelFormatError(
            f"{source}: its metadata, producer or IO names are not UTF-8 text ({exc.reason} at byte {exc.start}): "
            "a damaged file; export it again with `spade-rt export`"
        ) from None


def _read_header(f: BinaryIO, size: int, source: str) -> OnnxHeader:
    producer, metadata, graph = "", {}, None
    for number, wire, value, n in _fields(f, 0, size):
        if wire != 2:
            continue
        if number == PRODUCER_FIELD:
            producer = _text(f, value, n)
        elif number == METADATA_FIELD:
            entry = {k: _text(f, v, m) for k, w, v, m in _fields(f, value, value + n) if w == 2 and k in (1, 2)}
            if 1 in entry:  # key (1), value (2): as read_onnx_metadata
                metadata[entry[1]] = entry.get(2, "")
        elif number == GRAPH_FIELD:
            graph = (value, n)
    if graph is None:
        raise _MalformedError("no graph")
    initializers, inputs, outputs = set(), [], []
    for number, wire, value, n in _fields(f, graph[0], graph[0] + graph[1]):
        if wire != 2:
            continue
        if number == INITIALIZER_FIELD:
            initializers.add(_tensor_name(f, value, n))
        elif number == SPARSE_INITIALIZER_FIELD:
            for k, w, v, m in _fields(f, value, value + n):
                if k == SPARSE_VALUES_FIELD and w == 2:
                    initializers.add(_tensor_name(f, v, m))
        elif number in (INPUT_FIELD, OUTPUT_FIELD):
            (inputs if number == INPUT_FIELD else outputs).append(_value_info(f, value, n))
    return OnnxHeader(producer, metadata, [i for i in inputs if i[0] not in initializers], outputs)


def _text(f: BinaryIO, at: int, n: int) -> str:
    if n > MAX_METADATA_BYTES:
        raise _MalformedError(f"a string of {n} bytes (at most {MAX_METADATA_BYTES})")
    f.seek(at)
    return f.read(n).decode("utf-8")  # strict: a damaged name is one ModelFormatError, never replaced silently


def _tensor_name(f: BinaryIO, at: int, n: int) -> str:
    """A TensorProto's name, its data sought past."""
    name = ""
    for number, wire, value, m in _fields(f, at, at + n):
        if number == TENSOR_NAME_FIELD and wire == 2:
            name = _text(f, value, m)
    return name


def _value_info(f: BinaryIO, at: int, n: int) -> tuple[str, str, list]:
    """A ValueInfoProto as (name, "tensor(elem)", shape)."""
    name, elem, shape = "", 0, []
    for number, wire, value, m in _fields(f, at, at + n):
        if number == 1 and wire == 2:
            name = _text(f, value, m)
        elif number == 2 and wire == 2:  # TypeProto: only tensor_type (1) is a spade-rt graph's
            for k, w, v, length in _fields(f, value, value + m):
                if k == 1 and w == 2:
                    elem, shape = _tensor_type(f, v, length)
    return name, f"tensor({ELEMENT_TYPES.get(elem, 'undefined')})", shape


def _tensor_type(f: BinaryIO, at: int, n: int) -> tuple[int, list]:
    elem, shape = 0, []
    for number, wire, value, m in _fields(f, at, at + n):
        if number == 1 and wire == 0:
            elem = value
        elif number == 2 and wire == 2:  # TensorShapeProto: repeated dim (1)
            for k, w, v, length in _fields(f, value, value + m):
                if k == 1 and w == 2:
                    shape.append(_dimension(f, v, length))
    return elem, shape


def _dimension(f: BinaryIO, at: int, n: int) -> int | str | None:
    """dim_value (1) as an int, dim_param (2) as a string, neither: None (as ONNX Runtime reports them)."""
    dim: int | str | None = None
    for number, wire, value, m in _fields(f, at, at + n):
        if number == 1 and wire == 0:
            dim = value - (1 << 64) if value >= 1 << 63 else value  # int64 on the wire
        elif number == 2 and wire == 2:
            dim = _text(f, value, m)
    return dim
