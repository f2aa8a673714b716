"""An ONNX graph's metadata (``metadata_props``) read from the file without onnx or ONNX Runtime.

A ModelProto is a sequence of protobuf fields; the graph (field 7, most of the file) is skipped with one seek,
so reading the spec of a 400 MB graph costs a few reads. Anything that does not parse as the top level of a
ModelProto gives None: the real loader then says what is wrong with the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from spade_rt.limits import MAX_HEADER_BYTES

METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {key = 1, value = 2}


def _varint(f: BinaryIO) -> int | None:
    value = shift = 0
    while shift < 64:
        b = f.read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
    return None


def _entry(data: bytes) -> tuple[str, str] | None:
    import io

    f, found = io.BytesIO(data), {}
    while f.tell() < len(data):
        key = _varint(f)
        if key is None or key & 7 != 2:
            return None
        n = _varint(f)
        if n is None or n > len(data):
            return None
        found[key >> 3] = f.read(n)
    try:
        return found.get(1, b"").decode(), found.get(2, b"").decode()
    except UnicodeDecodeError:
        return None


def read_onnx_metadata(path: str | Path) -> dict[str, str] | None:
    """``metadata_props`` of an ONNX file as a dict, or None when the file does not parse as a ModelProto."""
    meta: dict[str, str] = {}
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            while f.tell() < size:
                key = _varint(f)
                if key is None:
                    return None
                number, wire = key >> 3, key & 7
                if wire == 0:
                    if _varint(f) is None:
                        return None
                elif wire == 1:
                    f.seek(8, 1)
                elif wire == 5:
                    f.seek(4, 1)
                elif wire == 2:
                    n = _varint(f)
                    if n is None or f.tell() + n > size:
                        return None
                    if number == METADATA_PROPS:
                        if n > MAX_HEADER_BYTES:
                            return None
                        entry = _entry(f.read(n))
                        if entry is None:
                            return None
                        meta[entry[0]] = entry[1]
                    else:
                        f.seek(n, 1)
                else:
                    return None
    except OSError:
        return None
    return meta
