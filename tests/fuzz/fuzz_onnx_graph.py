"""Fuzz target: an ONNX graph, as `spade-rt inspect`, `info` and the backends read it before a session runs.

Input: a whole .onnx file. Driven: the kind sniffer (``model_kind``), the hand-written protobuf walker that reads
``metadata_props`` without ONNX (``read_onnx_metadata``) and the ``auto`` backend rule built on it, the spade-rt
spec in that metadata (``spec_from_onnx_metadata``), and `spade-rt inspect`'s ``describe_graph`` (the same
walker reads the graph's producer, metadata, inputs and outputs: ``read_onnx_header``, no ONNX Runtime).
Structure-aware: mutations are made on the protobuf wire format (``protobuf_wire``), nested messages and the
spec JSON at the end included, with every length around them re-encoded.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import MiB, Target, attempt, instrumented, run_main, scratch_file
from protobuf_wire import mutate_message

with instrumented(("spade_rt",)):
    from spade_rt.errors import SpadeRtError
    from spade_rt.runtime.model_kind import looks_like_onnx, model_kind
    from spade_rt.runtime.onnx_describe import describe_graph
    from spade_rt.runtime.onnx_meta import read_onnx_metadata
    from spade_rt.runtime.registry import auto_backend
    from spade_rt.runtime.spec import SPEC_KEY, spec_from_onnx_metadata

ALLOWED = (SpadeRtError,)
_scratch = scratch_file(".onnx")
PATH = _scratch.__enter__()


def run(data: bytes) -> None:
    PATH.write_bytes(data)
    looks_like_onnx(data[:64])
    attempt(ALLOWED, model_kind, PATH)
    meta = read_onnx_metadata(PATH)  # never raises: {} when unreadable
    if not (isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise AssertionError(f"read_onnx_metadata gave {type(meta).__name__} {meta!r:.200}")
    auto_backend("onnx", PATH)  # never raises: the default backend when the metadata is unreadable
    if SPEC_KEY in meta:
        attempt(ALLOWED, spec_from_onnx_metadata, meta, str(PATH))
    attempt(ALLOWED, describe_graph, PATH)


TARGET = Target(
    name="onnx_graph",
    run=run,
    allowed=ALLOWED,
    # Python side only (ONNX Runtime's own allocations are C++: libFuzzer's -rss_limit_mb bounds those); the
    # walker reads at most one 1 MiB metadata entry at a time
    max_alloc=lambda n: 8 * MiB + 64 * n,
    max_len=16 << 10,
    mutate=mutate_message,
)

if __name__ == "__main__":
    run_main(TARGET)
