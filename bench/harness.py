"""Timing method: warm-up, then interleaved repetitions (A B C A B C ...) so that drift (thermal, frequency,
other load) hits every contestant alike; percentiles over the repetitions; peak memory sampled while each
contestant runs; device events where a GPU is timed."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil  # the bench extra


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of process ``pid`` (default: this one) now, in bytes: the one reader (psutil)."""
    return psutil.Process(pid).memory_info().rss


def peak_rss_bytes(pid: int) -> int:
    """Peak resident memory of process ``pid`` since it started (Linux VmHWM), in bytes: catches transient
    allocations that sampling would miss. psutil reports no peak resident set on Linux, so this reads
    /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


class PeakSampler:
    """Samples resident memory every ``interval`` s in a thread; ``peak - base`` is the working set added."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakSampler:
        gc.collect()
        self._process = psutil.Process()  # one handle for the whole sampling (a lookup per sample costs)
        self.base = self.peak = self._rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    def _rss(self) -> int:
        return self._process.memory_info().rss

    @property
    def added_mb(self) -> float:
        return (self.peak - self.base) / 2**20


@dataclass
class Timing:
    samples_ms: list[float]
    device_ms: list[float] | None = None  # device-event time of the same calls, where the contestant has one

    def summary(self) -> dict:
        return summarize(self.samples_ms)

    def device_summary(self) -> dict | None:
        return summarize(self.device_ms) if self.device_ms else None


def summarize(samples: list[float]) -> dict:
    a = np.asarray(samples)
    return {
        "n": int(a.size),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
    }


def interleaved(
    calls: dict[str, Callable[[], object]],
    repeats: int,
    synchronize: Callable[[], None] | None = None,
    progress: Callable[[int], None] | None = None,
    device_timers: dict[str, Callable[[], float | None]] | None = None,
) -> dict[str, Timing]:
    """Time each call ``repeats`` times, round-robin; ``synchronize`` (GPU) runs before each clock read.

    ``device_timers[name]()`` (read after the call and the synchronisation) gives that call's device time
    from CUDA events, recorded beside the host-to-host time.
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    device: dict[str, list[float]] = {name: [] for name in calls}
    timers = device_timers or {}
    order = list(calls)
    for r in range(repeats):
        # rotate the start so no contestant always runs right after the same neighbour
        rotated = order[r % len(order) :] + order[: r % len(order)]
        for name in rotated:
            if synchronize:
                synchronize()
            t0 = time.perf_counter()
            calls[name]()
            if synchronize:
                synchronize()
            samples[name].append((time.perf_counter() - t0) * 1e3)
            if timers.get(name) is not None:
                ms = timers[name]()
                if ms is not None:
                    device[name].append(float(ms))
        if progress:
            progress(r)
    return {name: Timing(s, device[name] or None) for name, s in samples.items()}


@dataclass
class WarmUp:
    calls: int
    settled: bool
    last_ms: list[float]


def warm_up(
    call: Callable[[], object],
    synchronize: Callable[[], None] | None = None,
    *,
    min_calls: int = 3,
    max_calls: int = 60,
    window: int = 5,
    tolerance: float = 0.05,
    max_seconds: float = 120.0,
    clock: Callable[[], float] = time.perf_counter,
) -> WarmUp:
    """Call until the timings settle: the last ``window`` calls within ``tolerance`` of their median
    ((max - min) / median), after at least ``min_calls``; capped at ``max_calls`` calls, and at
    ``max_seconds`` counted after the first ``min_calls`` (a compilation in the first call never ends the
    warm-up by itself).

    Lazy work lands in the first calls of a contestant at a new shape (torch.compile's compilation and
    CUDA-graph recording, ONNX Runtime's arena growth, exhaustive cuDNN search and graph capture, TensorRT-RTX
    kernel specialisation): one fixed warm-up call per batch let some of it fall into the timed runs.
    """
    min_calls = max(1, min_calls)
    times: list[float] = []
    start = None
    while True:
        if synchronize:
            synchronize()
        t0 = clock()
        call()
        if synchronize:
            synchronize()
        times.append((clock() - t0) * 1e3)
        if len(times) == min_calls:
            start = clock()
        last = times[-window:]
        if len(times) >= max(min_calls, window):
            median = float(np.median(last))
            if median > 0 and (max(last) - min(last)) / median <= tolerance:
                return WarmUp(len(times), True, last)
        if len(times) >= max_calls or (start is not None and clock() - start >= max_seconds):
            return WarmUp(len(times), False, last)


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of images in [-1, 1] (peak-to-peak 2)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a64 - b64) / max(np.linalg.norm(b64), 1e-30))
