"""Fuzz target: a painter frame as the server reads it off the WebSocket (``u32 n`` + n bytes of JSON header +
ids), through everything the server does before the batcher: ``unpack``, ``frame_ids`` and ``prepare`` (the
label pipeline: id checks, instance edges) for a 64 x 64 coco model, as ``App._frame`` calls them.

Structure-aware: mutations change the JSON header (frame number, seed, size, dtype), the payload's length and
ids, or forge the length prefix.
"""

from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import MiB, Target, attempt, coco_spec, instrumented, mutate_bytes, mutate_int, mutate_json_value, run_main

with instrumented(("spade_rt",)):
    from spade_rt.errors import SpadeRtError
    from spade_rt.serve.inputs import RequestError, frame_ids, prepare, unpack

ALLOWED = (SpadeRtError, RequestError)
SPEC = coco_spec(use_vae=True, z_dim=8)


def make_z(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, SPEC.z_dim), dtype=np.float32)


def run(data: bytes) -> None:
    unpacked = attempt(ALLOWED, unpack, data)
    if unpacked is None:
        return
    header, payload = unpacked
    got = attempt(ALLOWED, frame_ids, header, payload, SPEC)
    if got is None:
        return
    _, seed, raw = got
    attempt(ALLOWED, prepare, SPEC, make_z, raw, None, seed, False, "frame")


def mutate(data: bytes, rng: random.Random) -> bytes:
    (n,) = struct.unpack_from("<I", data)
    header, payload = json.loads(data[4 : 4 + n]), data[4 + n :]
    r = rng.random()
    if r < 0.5:
        header = mutate_json_value(header, rng)
    elif r < 0.8:
        payload = mutate_bytes(payload, rng) if rng.random() < 0.7 else payload * rng.randint(0, 3)
    head = json.dumps(header, separators=(",", ":")).encode()
    length = len(head) if r < 0.95 else mutate_int(len(head), rng) % (1 << 32)
    return struct.pack("<I", length) + head + payload


TARGET = Target(
    name="painter_frame",
    run=run,
    allowed=ALLOWED,
    max_alloc=lambda n: 8 * MiB + 64 * n,  # the ids are read in place; the pipeline makes a few copies of them
    max_len=16 << 10,
    mutate=mutate,
)

if __name__ == "__main__":
    run_main(TARGET)
