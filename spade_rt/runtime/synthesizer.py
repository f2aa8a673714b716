"""``Synthesizer``: the embeddable entry point. Label ids in, pictures out, any backend.

    with Synthesizer("ade20k.engine") as synth:
        rgb = synth(labels)                    # (H, W) ids -> (H, W, 3) uint8
        rgbs = synth(batch_of_labels)          # (N, H, W) ids -> (N, H, W, 3)

Thread safety: one Synthesizer may be called from several threads; calls are serialised by a lock
(a backend owns one set of device buffers / one stream). For parallel throughput open one Synthesizer
per thread.
"""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path

import numpy as np

from spade_rt.errors import BackendUnavailableError, InputError, ModelFormatError
from spade_rt.images import float_to_uint8
from spade_rt.labels import check_label_ids, instance_edges, map_dontcare, resize_nearest
from spade_rt.runtime.backend import Backend, ModelSpec

log = logging.getLogger(__name__)

# backend name -> "module:factory"; imported only when chosen (the torch one needs the toolchain)
BACKENDS = {
    "torch": "spade_rt.training.torch_backend:TorchBackend",
    "onnxruntime": "spade_rt.runtime.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "spade_rt.runtime.tensorrt_backend:TensorRTBackend",
}
# file kind -> default backend
KIND_BACKEND = {"native": "torch", "onnx": "onnxruntime", "engine": "tensorrt"}
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def model_kind(path: str | Path) -> str:
    """'native' (.safetensors / run dir), 'onnx' or 'engine', from the name; the loader checks the content."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    if suffix == ".safetensors" or p.is_dir() or p.with_name(p.name + ".safetensors").is_file():
        return "native"
    raise ModelFormatError(
        f"{p}: cannot tell the model kind from its name; expected a spade-rt model (.safetensors or a training "
        f"run directory), an ONNX graph (.onnx) or a TensorRT engine ({', '.join(ENGINE_SUFFIXES)})"
    )


def open_backend(model: str | Path, backend: str = "auto", **options) -> Backend:
    kind = model_kind(model)
    name = KIND_BACKEND[kind] if backend == "auto" else backend
    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r}: expected auto or one of {', '.join(BACKENDS)}")
    module_name, _, attr = BACKENDS[name].partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        hint = {
            "torch": "pip install 'spade-rt[export]'",
            "onnxruntime": "pip install onnxruntime",
            "tensorrt": "pip install 'spade-rt[rtx]' (or [trt])",
        }[name]
        raise BackendUnavailableError(f"backend {name} is not installed ({exc.name} missing): {hint}") from None
    return factory(model, **options)


class Synthesizer:
    """Validate inputs, run the backend, return images. See the module docstring."""

    def __init__(self, model: str | Path, backend: str = "auto", **backend_options) -> None:
        self.backend = open_backend(model, backend, **backend_options)
        self.spec: ModelSpec = self.backend.spec
        self._lock = threading.Lock()

    # ---- context manager -------------------------------------------------------------------------------
    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    @property
    def last_times(self):
        """Per-stage milliseconds of the last call (host-to-device, compute, device-to-host)."""
        return self.backend.last_times

    # ---- inputs ----------------------------------------------------------------------------------------
    def make_z(self, batch: int, seed: int | None = None) -> np.ndarray:
        """Standard-normal z (batch, z_dim) float32 from a numpy seed: the same z on every backend."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, self.spec.z_dim), dtype=np.float32)

    def _prepare_ids(self, labels: np.ndarray, resize: bool) -> np.ndarray:
        spec = self.spec.labels
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"labels must be an integer array of class ids, got dtype {labels.dtype}")
        if labels.ndim not in (2, 3):
            raise InputError(f"labels must be (H, W) or (N, H, W), got shape {labels.shape}")
        batch = labels if labels.ndim == 3 else labels[None]
        if self.spec.dynamic_size:
            m = self.spec.extra.get("size_multiple", 1)
            if batch.shape[1] % m or batch.shape[2] % m:
                raise InputError(
                    f"labels are {batch.shape[1]}x{batch.shape[2]}: this graph takes sizes in multiples of {m}"
                )
        elif batch.shape[1:] != (spec.height, spec.width):
            if not resize:
                raise InputError(
                    f"labels are {batch.shape[1]}x{batch.shape[2]}; this model takes {spec.height}x{spec.width} "
                    "(pass resize=True to resize with NEAREST)"
                )
            batch = np.stack([resize_nearest(b, spec.height, spec.width) for b in batch])
        batch = map_dontcare(batch, spec.label_nc)
        check_label_ids(batch, spec.num_label_ids, "labels")
        return np.ascontiguousarray(batch.astype(spec.id_dtype, copy=False))

    def _prepare_edges(self, ids: np.ndarray, instance, edges, resize: bool) -> np.ndarray | None:
        if not self.spec.uses_edges:
            if instance is not None or edges is not None:
                raise InputError("this model takes no instance map or edges")
            return None
        n, h, w = ids.shape
        if edges is not None:
            e = np.asarray(edges)
            e = e if e.ndim == 3 else e[None]
            if e.shape != (n, h, w):
                raise InputError(f"edges must have the labels' shape {(n, h, w)}, got {np.asarray(edges).shape}")
            return np.ascontiguousarray((e != 0).astype(np.uint8))
        if instance is None:  # label boundaries stand in for instance boundaries
            return instance_edges(ids)
        inst = np.asarray(instance)
        if not np.issubdtype(inst.dtype, np.integer):
            raise InputError(f"instance map must be an integer array, got dtype {inst.dtype}")
        inst = inst if inst.ndim == 3 else inst[None]
        if inst.ndim != 3 or inst.shape[0] != n:
            raise InputError(f"instance map must be (H, W) or (N, H, W) with N = {n}, got {np.asarray(instance).shape}")
        if inst.shape[1:] != (h, w):
            if not resize:
                raise InputError(f"instance map is {inst.shape[1]}x{inst.shape[2]}, labels are {h}x{w}")
            inst = np.stack([resize_nearest(i, h, w) for i in inst])
        return instance_edges(inst)

    def _prepare_z(self, n: int, z, seed: int | None) -> np.ndarray | None:
        if not self.spec.use_vae:
            if z is not None:
                raise InputError("this model is not a VAE model: it takes no z")
            return None
        if z is None:
            return self.make_z(n, seed)
        z = np.asarray(z, dtype=np.float32)
        z = z if z.ndim == 2 else z[None]
        if z.shape != (n, self.spec.z_dim):
            raise InputError(f"z must be ({self.spec.z_dim},) or ({n}, {self.spec.z_dim}), got {np.shape(z)}")
        return np.ascontiguousarray(z)

    # ---- the call -------------------------------------------------------------------------------------
    def __call__(
        self,
        labels: np.ndarray,
        instance: np.ndarray | None = None,
        *,
        edges: np.ndarray | None = None,
        z: np.ndarray | None = None,
        seed: int | None = None,
        output: str = "uint8",
        resize: bool = False,
    ) -> np.ndarray:
        """Synthesize. labels (H, W) or (N, H, W) ids -> (H, W, 3)/(N, H, W, 3) uint8, or float (N, 3, H, W).

        ``instance`` (instance ids, same shape) or ``edges`` (0/1) feed models with an edge channel; without
        either, label boundaries are used. ``z`` (z_dim,) / (N, z_dim) or ``seed`` feed VAE models.
        """
        if output not in ("uint8", "float"):
            raise InputError(f"output must be 'uint8' or 'float', got {output!r}")
        single = np.ndim(labels) == 2
        ids = self._prepare_ids(labels, resize)
        e = self._prepare_edges(ids, instance, edges, resize)
        zz = self._prepare_z(ids.shape[0], z, seed)
        with self._lock:
            out = self.run_batched(ids, e, zz)
        if output == "uint8" and out.dtype != np.uint8:
            out = float_to_uint8(out)
        elif output == "float" and out.dtype == np.uint8:
            raise InputError("this graph was exported with --output uint8: it cannot give float output")
        return out[0] if single and output == "uint8" else out

    def run_device(self, labels, edges=None, z=None, out=None):
        """GPU arrays in and out (``__cuda_array_interface__``: CuPy, PyTorch, Numba, JAX), no host copies.

        ``labels`` (N, H, W) in the graph's id dtype, ids already mapped and checked by the caller; ``edges``
        (N, H, W) uint8; ``z`` (N, z_dim) float32; ``out`` a GPU array of the output's shape and dtype (else
        the engine's own output buffer's device pointer is returned, valid until the next call).
        """
        run_device = getattr(self.backend, "run_device", None)
        if run_device is None:
            raise InputError(f"the {self.backend.name} backend takes host arrays only; GPU arrays need an engine")
        with self._lock:
            return run_device(labels, edges, z, out)

    def run_batched(self, ids: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
        """Split a batch into chunks the model accepts (its max batch), run each, concatenate."""
        max_b = self.spec.max_batch or ids.shape[0]
        if ids.shape[0] < self.spec.min_batch:
            raise InputError(f"batch {ids.shape[0]} is below the model's minimum {self.spec.min_batch}")
        outs = []
        for i in range(0, ids.shape[0], max_b):
            sl = slice(i, i + max_b)
            outs.append(self.backend.run(ids[sl], None if edges is None else edges[sl], None if z is None else z[sl]))
        return outs[0] if len(outs) == 1 else np.concatenate(outs)
