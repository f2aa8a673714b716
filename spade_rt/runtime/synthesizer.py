"""``Synthesizer``: the embeddable entry point. Label ids in, pictures out, any backend.

    with Synthesizer("ade20k.engine") as synth:
        rgb = synth(labels)                    # (H, W) ids -> (H, W, 3) uint8
        rgbs = synth(batch_of_labels)          # (N, H, W) ids -> (N, H, W, 3)

Thread safety: one Synthesizer may be called from several threads; calls are serialised by a lock
(a backend owns one set of device buffers / one stream). For parallel throughput open one Synthesizer
per thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np

from spade_rt.errors import InputError
from spade_rt.images import float_to_uint8
from spade_rt.labels import prepare_inputs
from spade_rt.runtime.backend import Backend
from spade_rt.runtime.model_kind import model_kind
from spade_rt.runtime.registry import (
    auto_backend,
    backend_options,
    default_backend,
    get_backend,
    load_attr,
    tier_backends,
)
from spade_rt.runtime.spec import ModelSpec
from spade_rt.validation import API, check_call_options, check_int_option, check_label_array, check_seed, check_z

log = logging.getLogger(__name__)


def open_backend(
    model: str | Path, backend: str = "auto", tier: str | None = None, *, server: bool = False, **options
) -> Backend:
    """The backend for ``model``: by its file kind and the registry's ``auto`` rule (``auto``), or by name.
    ``tier`` (``spade_rt.runtime.tiers``): None/``auto`` = the file's own (exact unless it is an int8 graph);
    another tier runs on a backend that runs it (``auto``: its pick if it does, else the first of the file's
    kind that does, e.g. OpenVINO for ``half``); a tier not offered for the file is refused in one line.
    ``options``: the chosen backend's (``spade_rt.runtime.backend_options``; they never change ``auto``'s
    pick, and a name that backend does not take is refused in one line); ``server``: a long-running server,
    which gets the chosen backend's server settings (``BackendOptions.serving``)."""
    kind = model_kind(model)
    if tier not in (None, "auto"):
        tier = _check_tier(model, kind, backend, tier)
    entry = auto_backend(kind, model) if backend == "auto" else get_backend(backend)
    if backend == "auto" and tier not in (None, "auto") and tier not in entry.tiers:
        runs_it = (get_backend(n) for n in tier_backends(tier) if kind in get_backend(n).kinds)
        entry = next(runs_it, entry)  # none (an engine's own precision): the pick stands
    if kind not in entry.kinds:
        raise InputError(
            f"the {entry.name} backend runs {', '.join(entry.kinds)} files; {model} is a {kind} file "
            f"(its backend: {default_backend(kind).name})"
        )
    why = f", which `auto` picked for {Path(model).name}" if backend == "auto" else ""
    typed = backend_options(entry, options, server=server, why=why)
    if tier not in (None, "auto") and "tier" in typed.names():  # a backend that runs several tiers is told which
        typed = replace(typed, tier=tier)
    return load_attr(entry, entry.factory)(model, **typed.given())


def _check_tier(model: str | Path, kind: str, backend: str, tier: str) -> str:
    """``tier`` against the file (its kind; an ONNX graph's spec, read from its metadata) and the backend."""
    from spade_rt.runtime.tiers import check_tier_choice, resolve_tier

    check_tier_choice(tier, "tier")
    spec = None
    if kind == "onnx":
        from spade_rt.runtime.onnx_meta import read_onnx_metadata
        from spade_rt.runtime.spec import SPEC_KEY, spec_from_onnx_metadata

        meta = read_onnx_metadata(model)
        spec = spec_from_onnx_metadata(meta, str(model)) if SPEC_KEY in meta else None
    return resolve_tier(tier, spec, kind, backend, "tier")


class Synthesizer:
    """Validate inputs, run the backend, return images. See the module docstring."""

    def __init__(
        self, model: str | Path, backend: str = "auto", tier: str | None = None, *, server: bool = False, **options
    ) -> None:
        """``tier``: None/``auto`` (the file's own: exact unless it is an int8 graph), ``exact``, ``half`` or
        ``int8`` (``spade_rt.runtime.tiers``). ``options``: the backend's (``open_backend``); ``server``: tuned
        for a long-running server (`spade-rt serve`)."""
        self.backend = open_backend(model, backend, tier, server=server, **options)
        self.name = Path(model).name  # how messages name the model
        self.spec: ModelSpec = self.backend.spec
        # the tier this backend runs: a graph's (exact, half, int8); a native model's exact; an engine's precision
        self.tier: str = getattr(self.backend, "tier", None) or (
            "exact" if self.spec.precision == "fp32" else self.spec.precision
        )
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
        """Standard-normal z (batch, z_dim) float32 from a numpy seed (0..2^32 - 1, or None: fresh entropy): the
        same z on every backend."""
        check_int_option("batch", batch, 1, None, API)
        rng = np.random.default_rng(check_seed(seed, API))
        return rng.standard_normal((batch, self.spec.z_dim), dtype=np.float32)

    def _prepare_z(self, n: int, z, seed: int | None) -> np.ndarray | None:
        if not self.spec.use_vae:
            return None  # z and seed were refused by check_call_options
        if z is None:
            return self.make_z(n, seed)
        return check_z(z, n, self.spec.z_dim, API)

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
        resize: bool = True,
    ) -> np.ndarray:
        """Synthesize. labels (H, W) or (N, H, W) ids -> (H, W, 3)/(N, H, W, 3) uint8, or float (N, 3, H, W).

        ``instance`` (instance ids, the labels' shape) or ``edges`` (0/1, the model's size) feed models with an
        edge channel; without either, label boundaries are used. ``z`` (z_dim,) / (N, z_dim) or ``seed`` feed
        VAE models (``seed``: 0..2^32 - 1); a model without z refuses both.

        Size: like the original SPADE test pipeline and `spade-rt synthesize`, a map of another size is resized
        with NEAREST to the model's size (the instance map alike, before its edges are found), and the pictures
        come out at the model's size. ``resize=False`` refuses such maps instead (InputError naming both sizes).
        Graphs exported with a dynamic size take any multiple of their cell size as it is, never resized.
        """
        # the same checks as `spade-rt synthesize` (spade_rt.validation), in keyword-argument words
        check_call_options(self.spec, z=z, seed=seed, output=output, resize=resize, voice=API, name=self.name)
        labels = check_label_array(labels, self.spec, API)
        single = labels.ndim == 2
        ids, e = prepare_inputs(
            labels,
            self.spec.labels,
            instance=instance,
            edges=edges,
            resize=resize,
            dynamic_multiple=self.spec.dynamic_multiple,
        )
        if single:
            ids, e = ids[None], None if e is None else e[None]
        zz = self._prepare_z(ids.shape[0], z, seed)
        with self._lock:
            out = self.run_batched(ids, e, zz)
        if output == "uint8" and out.dtype != np.uint8:
            out = float_to_uint8(out)
        elif output == "float" and out.dtype == np.uint8:  # a spec that did not say uint8
            raise InputError("this graph was exported with --output uint8: it cannot give float output")
        return out[0] if single and output == "uint8" else out

    def run_device(self, labels, edges=None, z=None, out=None):
        """GPU arrays in and out (``__cuda_array_interface__``: CuPy, Numba, PyTorch; or DLPack: JAX, PyTorch,
        CuPy), no host copies; the engine's stream waits for the producer's stream (the interface's
        ``stream``; DLPack is handed the engine's stream), and ``out`` is written before this returns.

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
