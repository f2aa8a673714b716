"""CUDA from Python without torch: a thin, checked layer over cuda-python's runtime bindings.

Every call returns (error, values...); ``check`` turns an error into an exception that names the call.
"""

from __future__ import annotations

import ctypes
import glob
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
            # no device node at all: say so, not the runtime's driver-version text (what CUDA reports there)
            nodes = glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/dxg")  # Linux; WSL2 exposes /dev/dxg
            if not nodes:
                raise BackendUnavailableError(
                    "no NVIDIA GPU found (no /dev/nvidia* device): TensorRT engines need one; run the ONNX graph "
                    "with the onnxruntime backend instead"
                )
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
        """(graph, graph exec) of the capture; always ends it (a failed capture must not leave the stream
        capturing); CudaError if the capture was invalidated or the graph does not instantiate."""
        graph = self.check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:
            return graph, self.check(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except CudaError:
            self.rt.cudaGraphDestroy(graph)
            raise

    def clear_error(self) -> None:
        """Reset the thread's last CUDA error after a failure that was handled (a capture that fell back)."""
        self.rt.cudaGetLastError()

    # ---- per call, and across streams ---------------------------------------------------------------------
    def activate(self) -> None:
        """Make this device current in the calling thread (CUDA's current device is per thread; cheap when
        it already is). Every entry point that may run on another thread calls it first."""
        self.check(self.rt.cudaSetDevice(self.device), "cudaSetDevice")

    def wait_event(self, stream, event) -> None:
        """Work submitted to ``stream`` from now on waits for the work ``event`` captured."""
        self.check(self.rt.cudaStreamWaitEvent(stream, event, 0), "cudaStreamWaitEvent")

    def wait_for_stream(self, stream, producer, event) -> None:
        """``stream`` waits (on the device, not the host) for what is queued on ``producer`` now."""
        self.record(event, producer)
        self.wait_event(stream, event)

    def mem_get_info(self) -> tuple[int, int]:
        """(free, total) bytes of device memory."""
        free, total = self.check(self.rt.cudaMemGetInfo(), "cudaMemGetInfo")
        return int(free), int(total)

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


LEGACY_STREAM, PER_THREAD_STREAM = 1, 2  # the CUDA Array Interface's (and DLPack's) codes for the default streams
_DLPACK_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged
_DLPACK_FLOAT, _DLPACK_INT, _DLPACK_UINT = 2, 0, 1  # DLDataTypeCode


@dataclass
class DeviceArray:
    """A GPU array handed to spade-rt: where it is, what it holds, and what must happen before it is read.

    ``stream`` is the producer's stream that the consumer's stream must wait for (CUDA Array Interface v3),
    or None when nothing must be waited for (the producer said so, or DLPack already ordered the producer's
    work before the consumer's stream). ``keepalive`` holds what keeps the memory valid (a DLPack capsule)
    until the copies that read it are complete.
    """

    ptr: int
    dtype: np.dtype
    shape: tuple[int, ...]
    stream: int | None
    keepalive: object = None
    readonly: bool = False


def device_array(obj, what: str, consumer_stream: int, device: int) -> DeviceArray:
    """The GPU array ``obj`` (``__cuda_array_interface__`` v0-v3: CuPy, Numba, PyTorch; or DLPack: JAX,
    PyTorch, CuPy), C-contiguous, with the stream synchronisation its protocol asks of a consumer:

    - CUDA Array Interface v3 ``stream``: None = no synchronisation needed; 1 = the legacy default stream;
      2 = the per-thread default stream; any other integer = a cudaStream_t; 0 is disallowed. An interface
      without the key (v0-v2) gives no ordering guarantee: the legacy default stream is waited for, which is
      where such producers enqueue.
    - DLPack: ``obj.__dlpack__(stream=consumer_stream)`` makes the producer order its pending work before
      ``consumer_stream`` itself; the capsule is kept alive until the copies are done.
    """
    from spade_rt.errors import InputError

    iface = getattr(obj, "__cuda_array_interface__", None)
    if iface is not None:
        dtype = np.dtype(iface["typestr"])
        shape = tuple(int(s) for s in iface["shape"])
        strides = iface.get("strides")
        if strides is not None and tuple(strides) != tuple(np.empty(shape, dtype).strides):
            raise InputError(f"{what}: the GPU array must be C-contiguous")
        if "stream" not in iface:
            stream = LEGACY_STREAM
        else:
            stream = iface["stream"]
            if stream == 0:
                raise InputError(f"{what}: __cuda_array_interface__ stream 0 is disallowed by the interface (v3)")
        ptr, readonly = int(iface["data"][0]), bool(iface["data"][1])
        return DeviceArray(ptr, dtype, shape, None if stream is None else int(stream), readonly=readonly)
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        kind, dev = obj.__dlpack_device__()
        if int(kind) not in _DLPACK_CUDA:
            raise InputError(f"{what}: a DLPack array on device type {int(kind)}, expected a CUDA array")
        if int(dev) != device:
            raise InputError(f"{what}: the array is on GPU {int(dev)}, this model runs on GPU {device}")
        capsule = obj.__dlpack__(stream=int(consumer_stream))
        ptr, dtype, shape, contiguous = _read_dlpack(capsule)
        if not contiguous:
            raise InputError(f"{what}: the GPU array must be C-contiguous")
        return DeviceArray(ptr, dtype, shape, None, capsule)
    raise InputError(f"{what}: expected a GPU array (__cuda_array_interface__ or DLPack), got {type(obj).__name__}")


class _DLDevice(ctypes.Structure):
    _fields_ = (("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32))


class _DLDataType(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16))


class _DLTensor(ctypes.Structure):
    _fields_ = (
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    )


def _read_dlpack(capsule) -> tuple[int, np.dtype, tuple[int, ...], bool]:
    """(pointer, dtype, shape, C-contiguous) of an unversioned DLPack capsule ("dltensor"), without taking it
    over: the capsule keeps its name, so its own destructor releases the tensor when the capsule goes."""
    from spade_rt.errors import InputError

    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, (ctypes.py_object, ctypes.c_char_p)
    address = get(capsule, b"dltensor")
    t = _DLTensor.from_address(address)  # DLManagedTensor starts with its DLTensor
    kinds = {_DLPACK_FLOAT: "f", _DLPACK_INT: "i", _DLPACK_UINT: "u"}
    if t.dtype.code not in kinds or t.dtype.lanes != 1:
        raise InputError(f"DLPack dtype code {t.dtype.code} x{t.dtype.lanes} is not a plain number type")
    dtype = np.dtype(f"{kinds[t.dtype.code]}{t.dtype.bits // 8}")
    shape = tuple(int(t.shape[i]) for i in range(t.ndim))
    contiguous = True
    if t.strides:  # element strides; NULL means C-contiguous
        expected = [s // dtype.itemsize for s in np.empty(shape, dtype).strides]
        contiguous = all(int(t.strides[i]) == expected[i] for i in range(t.ndim) if shape[i] > 1)
    return int(t.data or 0) + int(t.byte_offset), dtype, shape, contiguous
