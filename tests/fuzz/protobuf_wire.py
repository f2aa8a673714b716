"""A protobuf wire-format mutator for the ONNX target: parse a message into fields, change one, re-encode.

Fields are (number, wire type, value): an int for varints, bytes for fixed and length-delimited fields.
Length-delimited fields are tried as nested messages first (a graph, a node, a tensor, a metadata entry), so a
mutation can land deep inside a ModelProto and still be framed with correct lengths around it; JSON strings
(spade-rt's spec in ``metadata_props``) are mutated as JSON.
"""

from __future__ import annotations

import json
import random

from harness import mutate_bytes, mutate_int, mutate_json_value

Field = tuple[int, int, int | bytes]


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift >= 64:
            raise ValueError("bad varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def parse(data: bytes) -> list[Field]:
    """Every field of one message; ValueError when the bytes are not a well-formed message."""
    fields: list[Field] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field 0")
        if wire == 0:
            value, pos = _read_varint(data, pos)
            fields.append((number, 0, value))
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if pos + n > len(data):
                raise ValueError("short fixed field")
            fields.append((number, wire, data[pos : pos + n]))
            pos += n
        elif wire == 2:
            n, pos = _read_varint(data, pos)
            if pos + n > len(data):
                raise ValueError("short field")
            fields.append((number, 2, data[pos : pos + n]))
            pos += n
        else:
            raise ValueError("group")
    return fields


def encode(fields: list[Field]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += varint(number << 3 | wire)
        if wire == 0:
            out += varint(int(value))
        elif wire == 2:
            out += varint(len(value)) + bytes(value)
        else:
            out += bytes(value)
    return bytes(out)


def _mutate_payload(value: bytes, rng: random.Random, depth: int) -> bytes:
    if value[:1] in (b"{", b"[") and rng.random() < 0.7:
        try:
            return json.dumps(mutate_json_value(json.loads(value), rng)).encode()
        except ValueError:
            pass
    if depth < 8 and rng.random() < 0.75:
        try:
            return mutate_message(value, rng, depth + 1)
        except ValueError:
            pass
    if rng.random() < 0.15 and value:  # not UTF-8 any more (names, producer, metadata)
        i = rng.randrange(len(value))
        return value[:i] + rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00")) + value[i + 1 :]
    return mutate_bytes(value, rng)


def mutate_message(data: bytes, rng: random.Random, depth: int = 0) -> bytes:
    """One change somewhere in a well-formed message; ValueError when ``data`` is not one."""
    fields = parse(data)
    if not fields:
        raise ValueError("empty message")
    i = rng.randrange(len(fields))
    number, wire, value = fields[i]
    r = rng.random()
    if r < 0.06:
        del fields[i]
    elif r < 0.12:
        fields.insert(i, fields[i])
    elif r < 0.16:  # another field number or wire type
        fields[i] = (mutate_int(number, rng) % (1 << 29) or 1, wire, value)
    elif r < 0.2:  # a forged length: the frame no longer fits its content
        head = encode(fields[:i])
        tail = encode(fields[i + 1 :])
        body = value if isinstance(value, bytes) else varint(int(value))
        forged = varint(number << 3 | 2) + varint(mutate_int(len(body), rng)) + body
        return head + forged + tail
    elif wire == 0:
        fields[i] = (number, 0, mutate_int(int(value), rng) % (1 << 64))
    elif wire == 2:
        fields[i] = (number, 2, _mutate_payload(bytes(value), rng, depth))
    else:
        fields[i] = (number, wire, mutate_bytes(bytes(value), rng)[: len(value)].ljust(len(value), b"\0"))
    return encode(fields)
