"""A PNG chunk mutator for the label/instance map target: split a PNG into chunks, change one, re-frame it with
valid CRCs (so Pillow reads past the framing into what the project checks: size, mode, palette, ids).

Mutations: IHDR fields (width, height, bit depth, colour type, interlace), PLTE and tRNS entries, the pixel data
(IDAT decompressed, its filter bytes and samples changed, compressed again), chunks dropped, repeated, reordered
or added; now and then a CRC left wrong on purpose.
"""

from __future__ import annotations

import random
import struct
import zlib

from harness import mutate_bytes, mutate_int

SIGNATURE = b"\x89PNG\r\n\x1a\n"
Chunk = tuple[bytes, bytes]  # (type, data)


def parse(data: bytes) -> list[Chunk]:
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    chunks, pos = [], len(SIGNATURE)
    while pos + 12 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    if not chunks:
        raise ValueError("no chunks")
    return chunks


def chunk(kind: bytes, body: bytes, crc_ok: bool = True) -> bytes:
    crc = zlib.crc32(kind + body) ^ (0 if crc_ok else 1)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc & 0xFFFFFFFF)


def encode(chunks: list[Chunk], bad_crc: int = -1) -> bytes:
    return SIGNATURE + b"".join(chunk(k, b, i != bad_crc) for i, (k, b) in enumerate(chunks))


def _mutate_ihdr(body: bytes, rng: random.Random) -> bytes:
    w, h, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", body[:13].ljust(13, b"\0"))
    field = rng.randrange(5)
    if field == 0:
        w = mutate_int(w, rng) % (1 << 32)
    elif field == 1:
        h = mutate_int(h, rng) % (1 << 32)
    elif field == 2:
        depth = rng.choice((1, 2, 4, 8, 16, 3, 0, 255))
    elif field == 3:
        colour = rng.choice((0, 2, 3, 4, 6, 1, 5, 7, 255))
    else:
        interlace = rng.choice((0, 1, 2))
    return struct.pack(">IIBBBBB", w, h, depth, colour, comp, filt, interlace)


def _mutate_pixels(chunks: list[Chunk], rng: random.Random) -> list[Chunk]:
    """Change the decompressed image data, then compress it again into one IDAT where the first one was."""
    idat = [i for i, (k, _) in enumerate(chunks) if k == b"IDAT"]
    if not idat:
        raise ValueError("no IDAT")
    raw = bytearray(zlib.decompress(b"".join(chunks[i][1] for i in idat)))
    r = rng.random()
    if r < 0.3 and raw:  # a sample: an id the model does not know, a palette index past the palette ...
        i = rng.randrange(len(raw))
        raw[i] = rng.choice((0, 1, 182, 183, 254, 255, raw[i] ^ 0x80))
    elif r < 0.5 and raw:  # a filter type byte (0..4 valid)
        raw[rng.randrange(len(raw))] = rng.randrange(8)
    elif r < 0.7:  # short or long pixel data
        raw = raw[: rng.randrange(len(raw) + 1)] if rng.random() < 0.6 else raw + bytes(rng.randint(1, 4096))
    else:
        raw = bytearray(mutate_bytes(bytes(raw), rng))
    packed = zlib.compress(bytes(raw), rng.choice((0, 1, 9)))
    out: list[Chunk] = []
    for kind, body in chunks:
        if kind != b"IDAT":
            out.append((kind, body))
        elif not any(k == b"IDAT" for k, _ in out):
            out.append((b"IDAT", packed))
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    chunks = parse(data)
    r = rng.random()
    bad_crc = -1
    if r < 0.25:
        chunks = [(k, _mutate_ihdr(b, rng) if k == b"IHDR" else b) for k, b in chunks]
    elif r < 0.5:
        chunks = _mutate_pixels(chunks, rng)
    elif r < 0.6:  # the palette (PLTE) or its transparency (tRNS): entries changed, cut or added
        kinds = [i for i, (k, _) in enumerate(chunks) if k in (b"PLTE", b"tRNS")]
        if kinds:
            i = rng.choice(kinds)
            chunks[i] = (chunks[i][0], mutate_bytes(chunks[i][1], rng))
        else:
            chunks.insert(1, (b"PLTE", bytes(rng.randrange(256) for _ in range(3 * rng.randint(1, 300)))))
    elif r < 0.75:  # a chunk dropped, repeated or moved
        i = rng.randrange(len(chunks))
        op = rng.randrange(3)
        if op == 0:
            del chunks[i]
        elif op == 1:
            chunks.insert(i, chunks[i])
        else:
            chunks.insert(rng.randrange(len(chunks)), chunks.pop(i))
    elif r < 0.88:  # an extra chunk: text (compressed or not), gamma, physical size, an unknown kind
        kind = rng.choice((b"tEXt", b"zTXt", b"iTXt", b"gAMA", b"pHYs", b"sBIT", b"acTL", b"eXIf", b"zzZz"))
        body = rng.choice((b"k\0v", b"k\0\0" + zlib.compress(b"x" * 10000), bytes(rng.randint(0, 40))))
        chunks.insert(rng.randint(1, len(chunks)), (kind, body))
    else:  # a CRC broken on purpose
        bad_crc = rng.randrange(len(chunks))
    return encode(chunks, bad_crc)
