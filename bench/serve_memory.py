"""Which graph and which ONNX Runtime memory settings `spade-rt serve` uses on CPUs, measured.

    python -m spade_rt.bench.serve_memory            # the embedded demo model

For the demo model's static and dedup graphs, with ONNX Runtime's CPU memory arena on and off, and a
server's warm-up for batches of up to 1 and 8 (one picture, then two of the largest batch, as
``spade_rt.serve.batching.Batcher.start`` does): the resident memory of a fresh process after loading and
after warm-up, and the median time of one picture. Each configuration runs in its own process (memory is a
process's), one after the other, on the same machine; the table says the load average before the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

CHILD = "--child"


def _rss_mb() -> float:
    from spade_rt.bench.harness import rss_bytes

    return rss_bytes() / 2**20


def _child(graph: str, arena: bool, max_batch: int) -> dict:
    from spade_rt.procedural import landscape_labels
    from spade_rt.runtime.synthesizer import Synthesizer

    with Synthesizer(graph, backend="onnxruntime", memory_arena=arena) as synth:
        h, w = synth.spec.labels.height, synth.spec.labels.width
        loaded = _rss_mb()
        for n in (1, max_batch, max_batch):  # the server's warm-up
            synth(np.stack([landscape_labels(h, w, i) for i in range(n)]))
        warm = _rss_mb()
        one = landscape_labels(h, w, 99)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            synth(one)
            times.append((time.perf_counter() - t0) * 1e3)
    return {"loaded_mb": loaded, "warm_mb": warm, "p50_ms": float(np.median(times))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spade_rt.bench.serve_memory", description=__doc__.split("\n\n")[0])
    p.add_argument(CHILD, nargs=3, metavar=("GRAPH", "ARENA", "MAX_BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        graph, arena, max_batch = args.child
        print(json.dumps(_child(graph, arena == "1", int(max_batch))))
        return 0
    from spade_rt.demo_model import demo_graph

    # the demo model's graphs, exactly as `spade-rt demo` and `spade-rt serve` get them (spade_rt.demo_model)
    graphs = {kind: demo_graph(kind, purpose="bench") for kind in ("static", "dedup")}
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    columns = ("graph", "ORT memory arena", "warm-up batches up to", "RSS loaded MB", "RSS warm MB", "1 picture ms")
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, graph in graphs.items():
        for arena in ("1", "0"):
            for max_batch in ("1", "8"):
                cmd = [sys.executable, "-m", "spade_rt.bench.serve_memory", CHILD, str(graph), arena, max_batch]
                r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
                print(
                    f"| {kind} | {'on' if arena == '1' else 'off'} | {max_batch} | {r['loaded_mb']:.0f} | "
                    f"{r['warm_mb']:.0f} | {r['p50_ms']:.1f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
