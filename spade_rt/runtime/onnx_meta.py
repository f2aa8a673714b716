"""The ``metadata_props`` of an ONNX file, read without any ONNX package (for the ``auto`` backend rule).

A ModelProto is a sequence of protobuf fields; ``metadata_props`` is field 14, a repeated
``StringStringEntryProto`` (key = field 1, value = field 2). It sits after the graph (hundreds of MB), so the
reader walks the top-level fields and seeks past every other one: a few small reads, whatever the size.
Anything unreadable gives an empty dict; the backend that opens the file reports what is wrong with it.
"""

from __future__ import annotations

import logging
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
            size = Path(path).stat().st_size
            while f.tell() < size:
                tag = _varint_from(f)
                if tag is None:
                    break
                number, wire = tag >> 3, tag & 7
                if wire == 0:
                    if _varint_from(f) is None:
                        break
                elif wire == 1:
                    f.seek(8, 1)
                elif wire == 5:
                    f.seek(4, 1)
                elif wire == 2:
                    n = _varint_from(f)
                    if n is None or f.tell() + n > size:
                        break
                    if number == METADATA_FIELD and n <= MAX_METADATA_BYTES:
                        entry = _entry(f.read(n))
                        if entry:
                            found[entry[0]] = entry[1]
                    else:
                        f.seek(n, 1)
                else:
                    break  # groups (3, 4) are not ModelProto fields: not an ONNX file
    except OSError as exc:
        log.debug("no metadata read from %s: %s", path, exc)
    return found
