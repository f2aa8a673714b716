"""A host stand-in for the CUDA calls and the TensorRT execution context, for tests on machines without a GPU.

``HostCuda`` has the methods of ``spade_rt.engines.cuda.Cuda`` that the engine runner uses. Device memory is
host memory (numpy buffers; pointers are their real addresses, so copies are real ``memmove``s). Streams
are FIFO queues of host operations that run only when something waits for them: the most adversarial
schedule CUDA allows (work on another stream is never done early by luck). Events mark queue positions;
``wait_event`` makes a stream run another stream's queue up to the event first. Capture records what is
enqueued on a stream instead of running it; a graph launch enqueues the recording. The current device is
per thread, as in CUDA: every operation fails when the calling thread's current device is not ours.

``HostEngine`` is an engine whose "network" is a fixed formula of its inputs (see ``expected``), with
TensorRT's execution-context contract: ``set_input_shape`` returns False outside the profile, the
output's shape is the context's, ``execute_async_v3`` enqueues work that reads the bound addresses with the
shapes of that moment, and a CUDA graph captured from a context is invalid once ``set_input_shape`` changed
that context (replaying it then raises here; in TensorRT it is undefined behaviour).
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from dataclasses import dataclass, field

import numpy as np

from spade_rt.engines.cuda import CudaError, DeviceInfo

LEGACY, PER_THREAD = 1, 2


@dataclass
class HostEvent:
    stream: _Stream | None = None
    position: int = 0


@dataclass
class _Stream:
    handle: int
    ops: list = field(default_factory=list)  # pending host operations
    enqueued: int = 0
    done: int = 0
    capture: list | None = None

    def push(self, op) -> None:
        if self.capture is not None:
            self.capture.append(op)
            return
        self.ops.append(op)
        self.enqueued += 1

    def run_until(self, position: int) -> None:
        while self.done < position:
            op = self.ops.pop(0)
            self.done += 1
            op()


class HostCuda:
    """Stands in for ``spade_rt.engines.cuda.Cuda`` (see the module docstring)."""

    def __init__(
        self, device: int = 0, compute_capability: str = "8.6", name: str = "host stand-in", fail_capture: str = ""
    ) -> None:
        major, minor = (int(x) for x in compute_capability.split("."))
        self.device = device
        self.info = DeviceInfo(device, name, major, minor, 1 << 34)
        self.fail_capture = fail_capture  # "begin" | "end": that capture call fails
        self._memory: dict[int, np.ndarray] = {}
        self._streams: dict[int, _Stream] = {LEGACY: _Stream(LEGACY), PER_THREAD: _Stream(PER_THREAD)}
        self._handles = itertools.count(0x1000)
        self._current = threading.local()
        self.calls: list[str] = []  # names of the calls made, in order
        self.graphs_launched = 0
        self.activate()

    # ---- the current device, per thread -------------------------------------------------------------------
    def activate(self) -> None:
        self.calls.append("activate")
        self._current.device = self.device

    def _here(self, call: str) -> None:
        current = getattr(self._current, "device", 0)  # a new thread starts on device 0, as in CUDA
        if current != self.device:
            raise CudaError(f"{call}: memory and streams of GPU {self.device} used while GPU {current} is current")
        self.calls.append(call)

    # ---- memory -------------------------------------------------------------------------------------------
    def _alloc(self, nbytes: int) -> int:
        buf = np.zeros(max(nbytes, 1), np.uint8)
        ptr = buf.ctypes.data
        self._memory[ptr] = buf
        return ptr

    def malloc(self, nbytes: int) -> int:
        self._here("malloc")
        return self._alloc(nbytes)

    def free(self, ptr: int) -> None:
        self._here("free")
        if self._memory.pop(ptr, None) is None:
            raise CudaError(f"cudaFree of {ptr:#x}: not allocated (double free?)")

    def pinned(self, nbytes: int, dtype: np.dtype) -> tuple[int, np.ndarray]:
        self._here("pinned")
        ptr = self._alloc(nbytes)
        return ptr, self._memory[ptr][:nbytes].view(dtype)

    def free_pinned(self, ptr: int) -> None:
        self.free(ptr)

    def device_buffer(self, array: np.ndarray) -> tuple[int, np.ndarray]:
        """Test helper: 'device' memory holding a copy of ``array`` (pointer, view)."""
        ptr = self._alloc(array.nbytes)
        view = self._memory[ptr][: array.nbytes].view(array.dtype).reshape(array.shape)
        view[...] = array
        return ptr, view

    # ---- streams, events, graphs --------------------------------------------------------------------------
    def stream(self) -> int:
        self._here("stream")
        handle = next(self._handles)
        self._streams[handle] = _Stream(handle)
        return handle

    def get_stream(self, handle: int) -> _Stream:
        return self._streams[int(handle)]

    def enqueue(self, stream: int, op) -> None:
        """Put a host operation (a 'kernel') on ``stream``."""
        self.get_stream(stream).push(op)

    def copy_async(self, dst: int, src: int, nbytes: int, kind: str, stream) -> None:
        self._here(f"copy_{kind}")
        self.enqueue(stream, lambda: ctypes.memmove(dst, src, nbytes))

    def synchronize(self, stream) -> None:
        self._here("synchronize")
        s = self.get_stream(stream)
        if s.capture is not None:
            raise CudaError("cudaStreamSynchronize on a capturing stream")
        s.run_until(s.enqueued)

    def event(self) -> HostEvent:
        self._here("event")
        return HostEvent()

    def record(self, event: HostEvent, stream) -> None:
        self._here("record")
        s = self.get_stream(stream)
        event.stream, event.position = s, s.enqueued

    def wait_event(self, stream, event: HostEvent) -> None:
        self._here("wait_event")
        producer, position = event.stream, event.position
        self.enqueue(stream, lambda: producer.run_until(position))

    def wait_for_stream(self, stream, producer, event: HostEvent) -> None:
        self.record(event, producer)
        self.wait_event(stream, event)

    def elapsed_ms(self, start, end) -> float:
        return 0.0

    def begin_capture(self, stream) -> None:
        self._here("begin_capture")
        if self.fail_capture == "begin":
            raise CudaError("cudaStreamBeginCapture failed: operation not supported (stand-in)")
        self.get_stream(stream).capture = []

    def end_capture(self, stream):
        self._here("end_capture")
        s = self.get_stream(stream)
        ops, s.capture = s.capture, None
        if self.fail_capture == "end":
            raise CudaError("cudaStreamEndCapture failed: capture invalidated (stand-in)")
        graph = ("graph", tuple(ops))
        return graph, graph

    def launch_graph(self, graph_exec, stream) -> None:
        self._here("launch_graph")
        self.graphs_launched += 1
        for op in graph_exec[1]:
            self.enqueue(stream, op)

    def clear_error(self) -> None:
        pass

    def destroy(self, obj) -> None:
        self.calls.append("destroy")

    def mem_get_info(self) -> tuple[int, int]:
        return 1 << 33, 1 << 34


def _host_view(ptr: int, dtype, shape) -> np.ndarray:
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = (ctypes.c_uint8 * max(n * dtype.itemsize, 1)).from_address(ptr)
    return np.frombuffer(raw, np.uint8)[: n * dtype.itemsize].view(dtype).reshape(shape)


def expected(labels: np.ndarray, edges: np.ndarray | None = None, z: np.ndarray | None = None, layout="nchw"):
    """What ``HostEngine`` computes: image[n, c, y, x] = labels + 2 * edges + c / 4 + sum(z[n]) (float32)."""
    base = labels.astype(np.float32)
    if edges is not None:
        base = base + 2 * edges.astype(np.float32)
    if z is not None:
        base = base + z.sum(axis=1, dtype=np.float32)[:, None, None]
    image = np.stack([base + c / 4 for c in range(3)], axis=1)
    if layout == "nhwc":
        return np.clip(image.transpose(0, 2, 3, 1), 0, 255).astype(np.uint8)
    return image


class HostContext:
    def __init__(self, engine: HostEngine, memory: tuple[int, int] | None) -> None:
        self.engine = engine
        self.memory = memory
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.generation = 0  # bumped whenever set_input_shape changes a shape

    def set_input_shape(self, name: str, shape) -> bool:
        lo, hi = self.engine.profile[name]
        shape = tuple(int(s) for s in shape)
        if len(shape) != len(lo) or any(not a <= s <= b for s, a, b in zip(shape, lo, hi)):
            return False
        if self.shapes.get(name) != shape:
            self.shapes[name] = shape
            self.generation += 1
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = int(ptr)
        return True

    def set_device_memory(self, ptr: int, size: int) -> None:
        self.memory = (ptr, size)

    def is_stream_capturable(self, stream: int) -> bool:
        return self.engine.capturable

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.shapes:
            return self.shapes[name]
        n, h, w = self.shapes.get("labels", (-1, -1, -1))
        return (n, h, w, 3) if self.engine.layout == "nhwc" else (n, 3, h, w)

    def execute_async_v3(self, stream: int) -> bool:
        engine = self.engine
        if set(self.shapes) != set(engine.profile):
            engine.errors.append("not all input shapes are specified")
            return False
        cuda = engine.cuda
        capturing = cuda.get_stream(stream).capture is not None
        if capturing and engine.fail_enqueue_under_capture:
            engine.errors.append("enqueue refused under capture (stand-in)")
            return False
        shapes, addresses, generation = dict(self.shapes), dict(self.addresses), self.generation
        out_shape = self.get_tensor_shape("image")

        def kernel() -> None:
            if self.generation != generation:
                raise AssertionError(
                    "a CUDA graph captured from this context was replayed after set_input_shape changed it "
                    f"({shapes} -> {self.shapes}): undefined behaviour in TensorRT"
                )
            labels = _host_view(addresses["labels"], engine.dtypes["labels"], shapes["labels"])
            edges = z = None
            if "edges" in shapes:
                edges = _host_view(addresses["edges"], np.uint8, shapes["edges"])
            if "z" in shapes:
                z = _host_view(addresses["z"], np.float32, shapes["z"])
            out = _host_view(addresses["image"], engine.output_dtype, out_shape)
            out[...] = expected(labels, edges, z, engine.layout)
            engine.runs.append(shapes)

        cuda.enqueue(stream, kernel)
        return True


class HostEngine:
    """An engine with TensorRT's context contract whose network is ``expected``."""

    device_memory_size_v2 = 1 << 16

    def __init__(
        self,
        cuda: HostCuda,
        profile: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
        layout: str = "nchw",
        dtypes: dict[str, str] | None = None,
        capturable: bool = True,
        fail_enqueue_under_capture: bool = False,
    ) -> None:
        self.cuda = cuda
        self.profile = profile
        self.layout = layout
        self.dtypes = {"labels": "uint8", "edges": "uint8", "z": "float32", **(dtypes or {})}
        self.output_dtype = np.uint8 if layout == "nhwc" else np.float32
        self.capturable = capturable
        self.fail_enqueue_under_capture = fail_enqueue_under_capture
        self.contexts: list[HostContext] = []
        self.errors: list[str] = []
        self.runs: list[dict] = []

    def create_execution_context(self, strategy_or_config=None) -> HostContext:
        context = HostContext(self, None)
        self.contexts.append(context)
        return context

    def manifest_inputs(self) -> dict[str, dict]:
        return {
            name: {"dtype": self.dtypes[name], "min": list(lo), "opt": list(lo), "max": list(hi)}
            for name, (lo, hi) in self.profile.items()
        }


class CaiArray:
    """A 'GPU array' in stand-in device memory exposing ``__cuda_array_interface__`` v3 with its stream."""

    def __init__(self, cuda: HostCuda, array: np.ndarray, stream: int | None, version: int = 3) -> None:
        self.ptr, self.view = cuda.device_buffer(np.zeros_like(array))
        self.shape, self.dtype = array.shape, array.dtype
        self.stream = stream
        self.version = version

    @property
    def __cuda_array_interface__(self) -> dict:
        iface = {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "version": self.version,
            "strides": None,
        }
        if self.version >= 3:
            iface["stream"] = self.stream
        return iface


class DlpackArray:
    """A 'GPU array' offering DLPack on device kDLCUDA; records the stream the consumer asked it to order for."""

    def __init__(self, cuda: HostCuda, array: np.ndarray, pending_stream: int | None = None) -> None:
        self.cuda = cuda
        self.ptr, self.view = cuda.device_buffer(np.zeros_like(array))
        self.host = np.ascontiguousarray(array)
        self.pending_stream = pending_stream
        self.asked: list[int | None] = []

    def __dlpack_device__(self):
        return (2, self.cuda.device)

    def __dlpack__(self, stream=None):
        self.asked.append(stream)
        if stream is not None and stream != -1 and self.pending_stream is not None:
            # the producer's part of the protocol: make ``stream`` wait for its pending writes
            event = HostEvent()
            self.cuda.wait_for_stream(stream, self.pending_stream, event)
        return self.view.__dlpack__()
