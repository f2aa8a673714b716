"""Fuzz target: the JSON files beside models: an engine's manifest (``X.engine.json``), as `spade-rt inspect` and
the TensorRT backend read it before the engine is hashed or deserialised, and export's report beside a graph
(``X.onnx.json``), as `spade-rt inspect X.onnx` reads it (``describe_report``).

Input: the manifest's bytes. A fixed 64-byte engine and a graph of the recorded name lie beside it. Driven: the
kind sniffer (``model_kind``, which reads the manifest of an unknown engine), ``load_manifest`` with
``check_manifest``, `spade-rt inspect`'s ``describe_engine`` (the graph's hash, whether the engine runs here),
``staleness`` against this machine's TensorRT for a few GPUs, and the hash check ``read_checked_engine``.
The same bytes are read as the report of a graph. Structure-aware: mutations change one JSON value (a profile
shape, a dtype, the spec, the builder, a hash, a verification figure).
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import MiB, Target, attempt, instrumented, mutate_json_value, run_main, scratch_file

with instrumented(("spade_rt",)):
    from spade_rt.engines.adapter import TensorRT
    from spade_rt.engines.inspect import describe_engine
    from spade_rt.engines.manifest import load_manifest, read_checked_engine, staleness
    from spade_rt.errors import SpadeRtError
    from spade_rt.runtime.model_kind import model_kind
    from spade_rt.runtime.onnx_describe import describe_report
    from spade_rt.runtime.spec import manifest_path

ALLOWED = (SpadeRtError,)
ENGINE_BYTES = b"ftrt" + bytes(range(60))  # never deserialised: the manifest is refused or its hash fails first
_scratch = scratch_file(".engine")
ENGINE = _scratch.__enter__()
ENGINE.write_bytes(ENGINE_BYTES)
(ENGINE.parent / "tiny.onnx").write_bytes(b"\x08\x09")  # the graph the seeds name (hashed by inspect)
MANIFEST = manifest_path(ENGINE)
TRT = None
with contextlib.suppress(SpadeRtError):
    TRT = TensorRT.load("tensorrt-rtx")  # the installed TensorRT-RTX, when there is one (staleness compares)


REPORT = ENGINE.parent / "tiny.onnx.json"


def run(data: bytes) -> None:
    REPORT.write_bytes(data)
    report = describe_report(REPORT)  # never raises: {} when the report is unreadable
    if not isinstance(report, dict) or not all(isinstance(v, str) for v in report.values()):
        raise AssertionError(f"describe_report gave {report!r:.200}")
    MANIFEST.write_bytes(data)
    attempt(ALLOWED, model_kind, ENGINE)
    manifest = attempt(ALLOWED, load_manifest, ENGINE)
    attempt(ALLOWED, describe_engine, ENGINE)
    if manifest is None:
        return
    if TRT is not None:
        for cc in (None, "8.6", "9.0", "12.0"):
            attempt(ALLOWED, staleness, manifest, TRT, cc)
    attempt(ALLOWED, read_checked_engine, ENGINE, manifest)


def mutate(data: bytes, rng: random.Random) -> bytes:
    manifest = json.loads(data)
    return json.dumps(mutate_json_value(manifest, rng), indent=rng.choice((None, 2))).encode()


TARGET = Target(
    name="engine_manifest",
    run=run,
    allowed=ALLOWED,
    max_alloc=lambda n: 8 * MiB + 64 * n,  # the manifest as Python objects; the engine is 64 bytes
    max_len=16 << 10,
    mutate=mutate,
)

if __name__ == "__main__":
    run_main(TARGET)
