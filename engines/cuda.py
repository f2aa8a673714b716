"""CUDA from Python without torch: a thin, checked layer over cuda-python's runtime bindings.

Every call returns (error, values...); ``check`` turns an error into an exception that names the call.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from spade_rt.errors import BackendUnavailableError


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6 layout
        except ImportError:
            raise BackendUnavailableError(
                "cuda-python is not installed (the TensorRT backend needs it): pip install 'spade-rt[rtx]'"
            ) from None
    return cudart


class CudaError(BackendUnavailableError):
    """A CUDA runtime call failed."""


@dataclass
class DeviceInfo:
    index: int
    name: str
    major: int
    minor: int
    total_bytes: int

    @property
    def compute_capability(self) -> str:
        return f"{self.major}.{self.minor}"


class Cuda:
    """Stream, memory, events and graphs on one device."""

    def __init__(self, device: int = 0) -> None:
        self.rt = _cudart()
        err, count = self.rt.cudaGetDeviceCount()
        if err != self.rt.cudaError_t.cudaSuccess or count == 0:
            reason = self.error_string(err) if err != self.rt.cudaError_t.cudaSuccess else "no device found"
            raise BackendUnavailableError(
                f"no usable NVIDIA GPU ({reason}): TensorRT engines need one; run the ONNX graph with the "
                "onnxruntime backend instead"
            )
        if device >= count:
            raise BackendUnavailableError(f"GPU {device} requested, this machine has {count}")
        self.device = device
        self.check(self.rt.cudaSetDevice(device), "cudaSetDevice")
        prop = self.check(self.rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
        self.info = DeviceInfo(device, name, prop.major, prop.minor, prop.totalGlobalMem)

    def error_string(self, err) -> str:
        _, msg = self.rt.cudaGetErrorString(err)
        return msg.decode() if isinstance(msg, bytes) else str(msg)

    def check(self, result, call: str):
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise CudaError(f"{call} failed: {self.error_string(err)}")
        return values[0] if len(values) == 1 else (tuple(values) if values else None)

    # ---- memory ---------------------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        return int(self.check(self.rt.cudaMalloc(max(nbytes, 1)), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        self.check(self.rt.cudaFree(ptr), "cudaFree")

    def pinned(self, nbytes: int, dtype: np.dtype) -> tuple[int, np.ndarray]:
        """Page-locked host memory (fast, async copies) as a flat numpy array."""
        ptr = int(self.check(self.rt.cudaMallocHost(max(nbytes, 1)), f"cudaMallocHost({nbytes})"))
        raw = (ctypes.c_uint8 * max(nbytes, 1)).from_address(ptr)
        return ptr, np.frombuffer(raw, dtype=np.uint8)[:nbytes].view(dtype)

    def free_pinned(self, ptr: int) -> None:
        self.check(self.rt.cudaFreeHost(ptr), "cudaFreeHost")

    def copy_async(self, dst: int, src: int, nbytes: int, kind: str, stream) -> None:
        kinds = self.rt.cudaMemcpyKind
        k = {
            "h2d": kinds.cudaMemcpyHostToDevice,
            "d2h": kinds.cudaMemcpyDeviceToHost,
            "d2d": kinds.cudaMemcpyDeviceToDevice,
        }[kind]
        self.check(self.rt.cudaMemcpyAsync(dst, src, nbytes, k, stream), f"cudaMemcpyAsync({kind})")

    # ---- streams, events, graphs ----------------------------------------------------------------------
    def stream(self):
        return self.check(self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking), "cudaStreamCreate")

    def synchronize(self, stream) -> None:
        self.check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def event(self):
        return self.check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def record(self, event, stream) -> None:
        self.check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start, end) -> float:
        return float(self.check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def begin_capture(self, stream) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self.check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream):
        graph = self.check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        return graph, self.check(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def launch_graph(self, graph_exec, stream) -> None:
        self.check(self.rt.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")

    def destroy(self, obj) -> None:
        """Streams, events, graphs and graph execs, whichever ``obj`` is."""
        rt = self.rt
        for kind, fn in (
            (rt.cudaGraphExec_t, rt.cudaGraphExecDestroy),
            (rt.cudaGraph_t, rt.cudaGraphDestroy),
            (rt.cudaEvent_t, rt.cudaEventDestroy),
            (rt.cudaStream_t, rt.cudaStreamDestroy),
        ):
            if isinstance(obj, kind):
                fn(obj)
                return


def cuda_array_pointer(obj, expected_dtype: np.dtype, expected_shape: tuple[int, ...], what: str) -> int:
    """Device pointer of an array exposing ``__cuda_array_interface__`` (CuPy, PyTorch, Numba, JAX), checked."""
    from spade_rt.errors import InputError

    iface = getattr(obj, "__cuda_array_interface__", None)
    if iface is None:
        raise InputError(f"{what}: expected a GPU array with __cuda_array_interface__, got {type(obj).__name__}")
    dtype = np.dtype(iface["typestr"])
    shape = tuple(iface["shape"])
    if dtype != expected_dtype or shape != tuple(expected_shape):
        raise InputError(f"{what}: expected {expected_dtype} {expected_shape}, got {dtype} {shape}")
    strides = iface.get("strides")
    if strides is not None and tuple(strides) != tuple(np.empty(shape, dtype).strides):
        raise InputError(f"{what}: the GPU array must be C-contiguous")
    return int(iface["data"][0])
