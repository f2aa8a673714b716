"""Runs one deserialised engine: IO buffers, shapes per call, execution contexts, CUDA graphs, streams.

``backend.py`` opens the file (manifest, staleness, trust checks, deserialisation); this module runs what it
opened. It talks to CUDA only through ``spade_rt.engines.cuda.Cuda`` and to TensorRT only through the
engine, its contexts and the adapter, so every line here also runs against a host stand-in for both
(``tests/cuda_standin.py``): shapes, stream order and CUDA-graph bookkeeping are tested without a GPU.

Per call:
1. ``cudaSetDevice``: the current device is per thread, and a call may come from any thread.
2. Input shapes come from the arrays themselves: (N, H, W) ids and edges, (N, z_dim) z. A dynamic-size engine
   runs at the map's real size; the output's shape is asked of the context. Outside the profile: InputError.
3. Inputs go into device buffers sized for the profile's maximum and bound once (their addresses never move):
   host arrays through pinned staging buffers; GPU arrays device to device, after our stream waits for the
   producer's (``__cuda_array_interface__`` v3 ``stream``), or with the stream handed to the producer
   (DLPack ``__dlpack__(stream=...)``).
4. Execution: one execution context, one stream; ``set_input_shape`` only when the shapes change.
   TensorRT-RTX captures CUDA graphs itself (its runtime config). With TensorRT we capture: a graph belongs
   to the context's shapes at capture time, and ``set_input_shape`` invalidates it (replaying it afterwards
   is undefined per TensorRT's developer guide), so a change of shapes destroys the graph, runs plainly once
   and captures again. (One context per shape would keep several graphs, but with dynamic shapes
   TensorRT 8+ lets only one context use an optimization profile, and these engines have one.) The
   captured enqueue's return value is checked; a capture that fails, or a context that is not
   stream-capturable, leaves those shapes on plain execution, logged once.
5. The output is copied out (or into the caller's GPU array) and the stream synchronised.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from spade_rt.engines.cuda import Cuda, CudaError, DeviceArray, device_array
from spade_rt.errors import InputError, SpadeRtError
from spade_rt.runtime.backend import StageTimes
from spade_rt.runtime.spec import IMAGE, LABELS

log = logging.getLogger(__name__)

Shapes = tuple[tuple[str, tuple[int, ...]], ...]  # ((name, shape), ...) in input order: a context/graph key


class ExecutionError(SpadeRtError):
    """TensorRT refused to enqueue (its logged errors are in the message)."""


@dataclass
class Buffer:
    name: str
    dtype: np.dtype
    max_shape: tuple[int, ...]
    device: int  # device pointer, sized for max_shape
    host_ptr: int
    host: np.ndarray  # pinned, flat, max_shape elements

    @property
    def max_elements(self) -> int:
        return int(np.prod(self.max_shape))


class EngineRunner:
    """Device buffers, contexts and graphs of one engine. Thread-safe: calls are serialised (one stream)."""

    def __init__(
        self,
        engine,
        trt,
        cuda: Cuda,
        inputs: dict[str, dict],
        output_dtype: np.dtype,
        output_layout: str,
        *,
        runtime_config=None,
        own_graphs: bool = False,
        errors: list[str] | None = None,
    ) -> None:
        """``inputs``: name -> {"dtype", "min", "max"} (the manifest's profile); ``output_layout``: "nchw"
        (float image) or "nhwc" (uint8 RGB); ``own_graphs``: capture CUDA graphs here (TensorRT; TensorRT-RTX
        captures itself through ``runtime_config``)."""
        self.engine, self.trt, self.cuda = engine, trt, cuda
        self.profile = {name: (tuple(io["min"]), tuple(io["max"])) for name, io in inputs.items()}
        self.output_layout = output_layout
        self.own_graphs = own_graphs
        self.runtime_config = runtime_config
        self.errors = errors if errors is not None else []
        self._lock = threading.Lock()
        self.buffers: dict[str, Buffer] = {}
        self.last_times = StageTimes()
        self._shapes: dict[str, tuple[int, ...]] = {}  # the context's current input shapes
        self._graph: tuple | None = None  # (cudaGraph_t, cudaGraphExec_t) captured at the current shapes
        self._capture_next = False  # capture after the next plain run (shapes just changed)
        self._no_capture: set[Shapes] = set()  # shapes whose capture failed: plain execution, not retried
        self.captures = 0
        cuda.activate()
        self.stream = cuda.stream()
        self._events = [cuda.event() for _ in range(4)]
        self._sync_event = cuda.event()  # our stream waits on producers through it
        for name, io in inputs.items():
            self.buffers[name] = self._allocate(name, np.dtype(io["dtype"]), tuple(io["max"]))
        n, h, w = self.profile[LABELS][1]
        self.buffers[IMAGE] = self._allocate(IMAGE, np.dtype(output_dtype), self._image_shape(n, h, w))
        self.context = self._new_context()

    # ---- setup --------------------------------------------------------------------------------------------
    def _allocate(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> Buffer:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        device = self.cuda.malloc(nbytes)
        host_ptr, host = self.cuda.pinned(nbytes, dtype)
        return Buffer(name, dtype, shape, device, host_ptr, host)

    def _image_shape(self, n: int, h: int, w: int) -> tuple[int, ...]:
        return (n, h, w, 3) if self.output_layout == "nhwc" else (n, 3, h, w)

    def _new_context(self):
        context = self.trt.execution_context(self.engine, self.runtime_config)
        if context is None:
            raise ExecutionError(f"TensorRT could not create an execution context: {self._last_errors()}")
        for b in self.buffers.values():
            context.set_tensor_address(b.name, b.device)  # the buffers never move: bound once per context
        return context

    def _last_errors(self) -> str:
        return "; ".join(self.errors[-2:]) or "no reason logged"

    # ---- shapes -------------------------------------------------------------------------------------------
    def _check_shapes(self, shapes: dict[str, tuple[int, ...]]) -> Shapes:
        missing = [name for name in self.profile if name not in shapes]
        if missing:
            raise InputError(f"the engine needs input(s) {', '.join(missing)}")
        batch = {s[0] for s in shapes.values()}
        if len(batch) != 1:
            raise InputError(f"inputs disagree on the batch size: {shapes}")
        for name, shape in shapes.items():
            lo, hi = self.profile[name]
            if len(shape) != len(lo) or any(not a <= s <= b for s, a, b in zip(shape, lo, hi)):
                raise InputError(
                    f"{name} of shape {tuple(shape)} is outside the engine's profile: min {list(lo)}, max {list(hi)}"
                )
        return tuple((name, tuple(int(s) for s in shapes[name])) for name in self.profile)

    def _use(self, shapes: Shapes) -> Shapes:
        """Set the context's input shapes (only those that changed). A change invalidates the captured graph."""
        changed = [(name, shape) for name, shape in shapes if self._shapes.get(name) != shape]
        if not changed:
            return shapes
        self._drop_graph()  # captured at the old shapes: never replayed after set_input_shape
        for name, shape in changed:
            if not self.context.set_input_shape(name, shape):
                lo, hi = self.profile[name]
                self._shapes.clear()  # unknown state: set every shape again next time
                raise InputError(f"TensorRT refused {name} shape {shape} (profile min {list(lo)}, max {list(hi)})")
            self._shapes[name] = shape
        self._capture_next = self.own_graphs and shapes not in self._no_capture
        return shapes

    def _output_shape(self) -> tuple[int, ...]:
        shape = tuple(int(d) for d in self.context.get_tensor_shape(IMAGE))
        if any(d < 0 for d in shape) or int(np.prod(shape)) > self.buffers[IMAGE].max_elements:
            raise ExecutionError(f"TensorRT reports output shape {shape} for inputs {self._shapes}")
        return shape

    # ---- execution ----------------------------------------------------------------------------------------
    def _enqueue(self, context) -> None:
        if not context.execute_async_v3(int(self.stream)):
            raise ExecutionError(f"TensorRT failed to enqueue the engine: {self._last_errors()}")

    def _execute(self, shapes: Shapes) -> None:
        if self._graph is not None:
            self.cuda.launch_graph(self._graph[1], self.stream)
            return
        self._enqueue(self.context)
        if self._capture_next:
            self._capture_next = False  # one try per change of shapes
            self._capture(shapes)

    def _capture(self, shapes: Shapes) -> None:
        """Capture ``execute_async_v3`` at the current shapes; on any failure stay on plain execution."""
        cuda, context = self.cuda, self.context
        capturable = getattr(context, "is_stream_capturable", None)
        if capturable is not None and not capturable(int(self.stream)):
            log.info("engine context for %s is not stream-capturable: running without a CUDA graph", dict(shapes))
            self._no_capture.add(shapes)
            return
        cuda.synchronize(self.stream)  # the plain run above did any deferred allocation: settle it first
        try:
            cuda.begin_capture(self.stream)
        except CudaError as exc:
            log.warning("CUDA-graph capture could not start (%s): running without a graph", exc)
            cuda.clear_error()
            self._no_capture.add(shapes)
            return
        enqueued, graph, why = False, None, ""
        try:
            enqueued = bool(context.execute_async_v3(int(self.stream)))
        except Exception as exc:  # TensorRT raising inside a capture: the capture must still be ended
            why = str(exc)
        finally:
            try:
                graph = cuda.end_capture(self.stream)
            except CudaError as exc:
                why = why or str(exc)
        if not enqueued or graph is None:
            if graph is not None:
                cuda.destroy(graph[1])
                cuda.destroy(graph[0])
            cuda.clear_error()
            why = why or f"TensorRT did not enqueue under capture: {self._last_errors()}"
            log.warning("CUDA-graph capture failed for %s (%s): running without a graph", dict(shapes), why)
            self._no_capture.add(shapes)
            return
        self._graph = graph
        self.captures += 1

    def _time(self, t0: float) -> None:
        cuda, ev = self.cuda, self._events
        self.last_times = StageTimes(
            cuda.elapsed_ms(ev[0], ev[1]),
            cuda.elapsed_ms(ev[1], ev[2]),
            cuda.elapsed_ms(ev[2], ev[3]),
            (time.perf_counter() - t0) * 1e3,
        )

    def run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Host arrays in (name -> C-contiguous array of the input's dtype), the host output back."""
        with self._lock:
            cuda, ev = self.cuda, self._events
            cuda.activate()
            for name, arr in arrays.items():
                if name in self.buffers and arr.dtype != self.buffers[name].dtype:
                    raise InputError(f"{name}: expected {self.buffers[name].dtype}, got {arr.dtype}")
            shapes = self._use(self._check_shapes({n: a.shape for n, a in arrays.items() if n in self.profile}))
            t0 = time.perf_counter()
            cuda.record(ev[0], self.stream)
            for name in self.profile:
                b, arr = self.buffers[name], arrays[name]
                b.host[: arr.size] = arr.ravel()  # pinned staging: the async copy needs page-locked memory
                cuda.copy_async(b.device, b.host_ptr, arr.size * b.dtype.itemsize, "h2d", self.stream)
            cuda.record(ev[1], self.stream)
            self._execute(shapes)
            cuda.record(ev[2], self.stream)
            out, shape = self.buffers[IMAGE], self._output_shape()
            size = int(np.prod(shape))
            cuda.copy_async(out.host_ptr, out.device, size * out.dtype.itemsize, "d2h", self.stream)
            cuda.record(ev[3], self.stream)
            cuda.synchronize(self.stream)
            result = out.host[:size].reshape(shape).copy()
            self._time(t0)
            return result

    def run_device(self, arrays: dict[str, object], out=None) -> object:
        """GPU arrays in (name -> CUDA Array Interface / DLPack object), the output into ``out`` (a GPU array)
        or, without it, the device pointer of our output buffer (valid until the next call)."""
        with self._lock:
            cuda, ev = self.cuda, self._events
            cuda.activate()
            views: dict[str, DeviceArray] = {}
            for name in self.profile:
                if arrays.get(name) is None:
                    raise InputError(f"the engine needs {name}")
                view = device_array(arrays[name], name, int(self.stream), cuda.device)
                if view.dtype != self.buffers[name].dtype:
                    raise InputError(f"{name}: expected {self.buffers[name].dtype}, got {view.dtype}")
                views[name] = view
            shapes = self._use(self._check_shapes({n: v.shape for n, v in views.items()}))
            shape = self._output_shape()
            target = None
            if out is not None:
                target = device_array(out, "out", int(self.stream), cuda.device)
                if target.readonly:
                    raise InputError("out: the GPU array is read-only (its __cuda_array_interface__ says so)")
                if target.dtype != self.buffers[IMAGE].dtype or target.shape != shape:
                    raise InputError(
                        f"out: expected {self.buffers[IMAGE].dtype} {shape}, got {target.dtype} {target.shape}"
                    )
            t0 = time.perf_counter()
            # our stream waits (on the device) for every producer still writing what we read, or reading what
            # we are about to overwrite; DLPack producers ordered their work before our stream themselves
            for producer in {v.stream for v in (*views.values(), target) if v is not None and v.stream is not None}:
                cuda.wait_for_stream(self.stream, producer, self._sync_event)
            cuda.record(ev[0], self.stream)
            for name, view in views.items():
                b = self.buffers[name]
                nbytes = int(np.prod(view.shape)) * b.dtype.itemsize
                cuda.copy_async(b.device, view.ptr, nbytes, "d2d", self.stream)
            cuda.record(ev[1], self.stream)
            self._execute(shapes)
            cuda.record(ev[2], self.stream)
            result = self.buffers[IMAGE]
            if target is not None:
                nbytes = int(np.prod(shape)) * result.dtype.itemsize
                cuda.copy_async(target.ptr, result.device, nbytes, "d2d", self.stream)
            cuda.record(ev[3], self.stream)
            cuda.synchronize(self.stream)  # the caller's arrays are free to change once we return
            del views, target  # DLPack capsules: released only now that the copies are done
            self._time(t0)
            return out if out is not None else result.device

    # ---- teardown -----------------------------------------------------------------------------------------
    def _drop_graph(self) -> None:
        if self._graph is not None:
            self.cuda.destroy(self._graph[1])
            self.cuda.destroy(self._graph[0])
            self._graph = None

    def close(self) -> None:
        cuda = self.cuda
        if cuda is None:
            return
        cuda.activate()
        self._drop_graph()
        self.context = None
        for b in self.buffers.values():
            cuda.free(b.device)
            cuda.free_pinned(b.host_ptr)
        self.buffers = {}
        for e in (*self._events, self._sync_event):
            cuda.destroy(e)
        cuda.destroy(self.stream)
        self.cuda = None

    @property
    def replaying(self) -> bool:
        """Whether the next call at the current shapes replays a captured CUDA graph."""
        return self._graph is not None


__all__ = ["EngineRunner", "ExecutionError"]
