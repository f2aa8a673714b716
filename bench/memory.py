"""Peak memory per contestant, each measured in a fresh process.

Inside one process, freed memory stays resident and the next contestant reuses it, so per-contestant
numbers there would depend on the order. A spawned child imports everything, records its baseline, loads
one contestant, runs one batch-1 call and reports the high-water mark above the baseline:
- CPU: peak resident set (sampled every ms) - resident set before loading: weights, arenas, activations;
- GPU: the drop in free device memory (cudaMemGetInfo) across load + call, for every contestant alike
  (PyTorch's allocator peak counted only its live tensors, not what its cache, ONNX Runtime's arena or
  TensorRT hold, so the figures were not comparable). The CUDA context is created before the baseline.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np


def _child(name: str, model: str, artifact: str | None, device: str, arrays: dict, queue) -> None:
    try:
        import torch

        from spade_rt.bench.contestants import load_contestant

        gpu_free = None
        if device == "cuda":
            import torch

            torch.cuda.init()
            free, _ = torch.cuda.mem_get_info()
            gpu_free = free
        from spade_rt.bench.harness import PeakSampler

        with PeakSampler(interval=0.001) as mem:  # the import peak is behind us: sample from here on
            c = load_contestant(name, Path(model), Path(artifact) if artifact else None, device)
            c.run(arrays["ids"], arrays.get("edges"), arrays.get("z"))
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
            # one measure for every contestant: PyTorch's caching allocator, ONNX Runtime's arena and TensorRT's
            # buffers all keep what they took, and all show as free device memory gone (cudaMemGetInfo)
            free, _ = torch.cuda.mem_get_info()
            queue.put(("ok", (gpu_free - free) / 2**20))
            return
        queue.put(("ok", mem.added_mb))
    except Exception as exc:  # reported to the parent, which records it
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent says "interrupted", once
        return


def peak_memory_mb(
    name: str,
    model: Path,
    artifact: Path | None,
    device: str,
    ids: np.ndarray,
    edges: np.ndarray | None,
    z: np.ndarray | None,
    timeout: float = 900,
) -> float | None:
    """The contestant's peak memory in MB, or None if the child failed (the reason is logged)."""
    import logging

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    arrays = {"ids": ids}
    if edges is not None:
        arrays["edges"] = edges
    if z is not None:
        arrays["z"] = z
    proc = ctx.Process(
        target=_child, args=(name, str(model), str(artifact) if artifact else None, device, arrays, queue)
    )
    proc.start()
    try:
        status, value = queue.get(timeout=timeout)
    except Exception:
        status, value = "error", "timed out"
    except KeyboardInterrupt:
        proc.kill()  # do not wait for the child on the way out
        raise
    proc.join(timeout=30)
    if proc.is_alive():
        proc.kill()
    if status != "ok":
        logging.getLogger(__name__).warning("memory of %s not measured: %s", name, value)
        return None
    return round(float(value), 1)
