"""Dynamic batching: concurrent requests -> one backend call, on one inference thread.

A request is prepared (read, checked, ids mapped) by its own handler, then ``submit`` queues it and awaits
its picture. One worker task forms batches: it takes the oldest waiting picture, adds every waiting picture
of the same shape up to ``max_batch``, and when the batch is not full waits at most ``max_delay_ms`` for
more. The backend runs on a single thread (the ``Synthesizer`` owns one set of buffers), so the event loop
stays free to accept and decode while the network runs; whatever queues up meanwhile forms the next batch.

The queue is bounded (``max_queue``): a full queue refuses at once
(``ServerBusyError``, HTTP 503) instead of growing.
A request whose client went away is dropped before it reaches the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from spade_rt.errors import SpadeRtError
from spade_rt.runtime.synthesizer import Synthesizer
from spade_rt.serve.metrics import ServerMetrics

log = logging.getLogger(__name__)


class ServerBusyError(SpadeRtError):
    """The queue is full, or the server is shutting down: try again later (HTTP 503)."""


@dataclass
class Result:
    picture: np.ndarray  # (H, W, 3) uint8
    batch: int  # pictures in the backend call that made it
    queue_ms: float  # waiting for the batch
    compute_ms: float  # the backend call


@dataclass
class Job:
    ids: np.ndarray  # (H, W) model ids, checked
    edges: np.ndarray | None  # (H, W) uint8, models with an edge channel
    z: np.ndarray | None  # (z_dim,) float32, VAE models
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple:
        return self.ids.shape, self.ids.dtype.str, self.edges is None, self.z is None


class Batcher:
    def __init__(self, synth: Synthesizer, max_batch: int, max_delay_ms: float, max_queue: int, metrics: ServerMetrics):
        self.synth = synth
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1e3
        self.max_queue = max_queue
        self.metrics = metrics
        self._waiting: deque[Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spade-rt-backend")
        self._closing = False
        self._running = 0  # pictures in the backend call now
        self._forming: list[Job] = []  # the batch waiting for companions

    @property
    def depth(self) -> int:
        """Pictures accepted and not yet answered: waiting, forming a batch, or in the backend."""
        return len(self._waiting) + len(self._forming) + self._running

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def start(self, warm_up: bool = True) -> None:
        """Warm the backend up, then batch. Warm-up runs one picture and twice the largest batch, so that the
        first requests do not pay for allocation and the server's memory is what it will stay at (ONNX Runtime
        grows its arena on the first two calls of a new batch size, then reuses it)."""
        loop = asyncio.get_running_loop()
        if warm_up:
            t0 = time.perf_counter()
            for n in (1, self.max_batch, self.max_batch) if self.max_batch > 1 else (1, 1):
                await loop.run_in_executor(self._executor, self._warm_up, n)
            log.info("warmed up in %.1f s (1 picture, then 2 batches of %d)", time.perf_counter() - t0, self.max_batch)
        self._wakeup = asyncio.Event()
        self._worker = loop.create_task(self._work(), name="spade-rt-batcher")

    def _warm_up(self, n: int) -> None:
        lab = self.synth.spec.labels
        ids = np.zeros((n, lab.height, lab.width), lab.id_dtype)
        edges = np.zeros(ids.shape, np.uint8) if lab.use_instance else None
        z = self.synth.make_z(n, 0) if self.synth.spec.use_vae else None
        self.synth(ids, edges=edges, z=z)

    async def close(self) -> None:
        """Refuse new pictures, finish the waiting ones, stop the worker and the inference thread."""
        self._closing = True
        if self._worker is not None:
            while self._waiting or self._forming or self._running:
                self._wakeup.set()
                await asyncio.sleep(0.01)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)

    # ---- requests --------------------------------------------------------------------------------------
    async def submit(self, ids: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> Result:
        if self._closing:
            raise ServerBusyError("the server is shutting down")
        if len(self._waiting) >= self.max_queue:
            raise ServerBusyError(
                f"{len(self._waiting)} pictures are waiting already (--max-queue {self.max_queue}): retry later"
            )
        job = Job(ids, edges, z, asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        self.metrics.queue_depth.set(self.depth)
        self._wakeup.set()
        return await job.future

    # ---- the worker -------------------------------------------------------------------------------------
    def _take(self, batch: list[Job]) -> None:
        """Move waiting jobs of the batch's shape into it (oldest first) up to max_batch; drop abandoned ones."""
        key = batch[0].key
        keep: deque[Job] = deque()
        while self._waiting:
            job = self._waiting.popleft()
            if job.future.done():
                continue  # cancelled: its client went away
            if len(batch) < self.max_batch and job.key == key:
                batch.append(job)
            else:
                keep.append(job)
        self._waiting = keep

    async def _next_batch(self) -> list[Job]:
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            first = self._waiting.popleft()
            if not first.future.done():
                break
        batch = self._forming = [first]
        self._take(batch)
        deadline = time.perf_counter() + self.max_delay
        while len(batch) < self.max_batch and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
            self._take(batch)
            self.metrics.queue_depth.set(self.depth)
        self._forming = []
        return [job for job in batch if not job.future.done()]

    def _run(self, batch: list[Job]) -> tuple[np.ndarray, float]:
        ids = np.stack([j.ids for j in batch])
        edges = None if batch[0].edges is None else np.stack([j.edges for j in batch])
        z = None if batch[0].z is None else np.stack([j.z for j in batch])
        t0 = time.perf_counter()
        out = self.synth(ids, edges=edges, z=z)  # (N, H, W, 3) uint8: the Synthesizer's own call
        return out, (time.perf_counter() - t0) * 1e3

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            started = time.perf_counter()
            self._running = len(batch)
            self.metrics.queue_depth.set(self.depth)
            try:
                pictures, compute_ms = await loop.run_in_executor(self._executor, self._run, batch)
            except Exception as exc:  # the backend failed: every picture of the batch gets the error
                log.error("backend call failed for a batch of %d: %s", len(batch), exc)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self._running = 0
                self.metrics.queue_depth.set(self.depth)
            self.metrics.batch_size.observe(len(batch))
            self.metrics.inference.observe(compute_ms / 1e3)
            self.metrics.pictures.inc(amount=len(batch))
            for job, picture in zip(batch, pictures):
                queue_ms = (started - job.enqueued) * 1e3
                self.metrics.queue_wait.observe(queue_ms / 1e3)
                if not job.future.done():
                    job.future.set_result(Result(picture, len(batch), queue_ms, compute_ms))
