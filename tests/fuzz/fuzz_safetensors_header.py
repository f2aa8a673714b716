"""Fuzz target: a spade-rt model's safetensors header, as `spade-rt info` and the loader read it.

Input: a whole model file. Driven: ``read_safetensors_header`` (the 8-byte length and the JSON header), the
config in its metadata (``read_config``), the tensors against the config (``check_tensors``), the NaN check on
the data (``check_finite_data``) and `spade-rt info`'s ``describe_model``. Structure-aware mutations rewrite
the JSON header (offsets, shapes, dtypes, the config inside ``__metadata__``) and re-frame it with a correct
length, so most inputs get past the framing into the checks behind it.
"""

from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import MiB, Target, attempt, instrumented, mutate_int, mutate_json_value, run_main, scratch_file

with instrumented(("spade_rt",)):
    from spade_rt.errors import SpadeRtError
    from spade_rt.model.describe import describe_model
    from spade_rt.model.header import check_finite_data, check_tensors, read_config, read_safetensors_header
    from spade_rt.runtime.model_kind import model_kind

ALLOWED = (SpadeRtError,)
_scratch = scratch_file(".safetensors")
PATH = _scratch.__enter__()


def run(data: bytes) -> None:
    PATH.write_bytes(data)
    attempt(ALLOWED, model_kind, PATH)
    header = attempt(ALLOWED, read_safetensors_header, PATH)
    if header is not None:
        meta, tensors = header
        attempt(ALLOWED, check_finite_data, PATH, tensors)
        config = attempt(ALLOWED, read_config, PATH, meta)
        if config is not None:
            attempt(ALLOWED, check_tensors, PATH, config, tensors)
    attempt(ALLOWED, describe_model, PATH)


def split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack_from("<Q", data)
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def mutate(data: bytes, rng: random.Random) -> bytes:
    header, body = split(data)
    tensors = [k for k in header if k != "__metadata__"]
    r = rng.random()
    if r < 0.45 and tensors:  # one tensor's dtype, shape or offsets
        info = dict(header[rng.choice(tensors)])
        key = rng.choice(("dtype", "shape", "data_offsets"))
        info[key] = mutate_json_value(info.get(key), rng)
        header[rng.choice(tensors)] = info
    elif r < 0.7 and isinstance(header.get("__metadata__"), dict):  # the config (a JSON string in the metadata)
        meta = dict(header["__metadata__"])
        try:
            meta["config"] = json.dumps(mutate_json_value(json.loads(meta["config"]), rng))
        except (KeyError, TypeError, ValueError):
            meta = mutate_json_value(meta, rng)
        header["__metadata__"] = meta
    elif r < 0.8:  # anywhere in the header
        header = mutate_json_value(header, rng)
    elif r < 0.9:  # the data section: truncated or grown
        body = body[: rng.randrange(len(body) + 1)] if rng.random() < 0.5 else body + bytes(rng.randint(1, 64))
    else:  # a forged length prefix
        out = join(header, body)
        return struct.pack("<Q", mutate_int(len(out) - 8, rng) % (1 << 64)) + out[8:]
    return join(header, body)


TARGET = Target(
    name="safetensors_header",
    run=run,
    allowed=ALLOWED,
    # the header is parsed into Python objects (tens of bytes per byte of JSON); numpy views of the data section
    # are memory-mapped; nothing may grow with what the header claims rather than with the file
    max_alloc=lambda n: 8 * MiB + 64 * n,
    max_len=64 << 10,
    mutate=mutate,
)

if __name__ == "__main__":
    run_main(TARGET)
