"""OpenVINO backend: our exported graphs (static or dedup) on OpenVINO's CPU device (GPU/NPU where present).

Settings, chosen once: latency hint (one stream, every CPU this process may use), the inference precision of
the chosen tier, model caching in the user cache (``spade_rt.cache``: ``<cache>/built/openvino``) so that a
second start loads the compiled blob instead of compiling again. The graph is compiled once per input shape
(``labels`` shape: batch, H, W), each shape with its own infer request; shapes stay fixed inside a compiled
model, which is what OpenVINO's CPU plugin runs fastest.

Precision tiers (``TIERS``), each named by what it guarantees:

- ``exact``: fp32 (``INFERENCE_PRECISION_HINT f32``): within 1e-5 relative L2 of the PyTorch network. The
  default. OpenVINO's own default on CPUs with bf16 (this one, AVX-512 BF16) is bf16, so the hint is set
  explicitly: an unset hint is not exact.
- ``half``: bf16 on CPUs that have it (fp16 on GPUs), bound 1e-2 relative L2 like the GPU fp16 path. Offered
  only when it was measured first: `spade-rt export` runs the graph at this tier on the verification inputs
  and records the error in the report beside the graph (``tiers``; `spade-rt inspect` shows it); a graph
  whose report has no such measurement within the bound is refused at this tier, with the reason.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spade_rt.errors import BackendUnavailableError, ConfigError, InputError, ModelFormatError
from spade_rt.runtime.backend import Backend, StageTimes
from spade_rt.runtime.onnxruntime_backend import default_threads
from spade_rt.runtime.spec import EDGES, IMAGE, LABELS, Z, report_path, spec_from_onnx_metadata

log = logging.getLogger(__name__)

MAX_SHAPES = 8  # compiled shapes kept per backend


@dataclass(frozen=True)
class Tier:
    name: str
    bound: float  # relative L2 vs the PyTorch network (fp32, original formulation)
    precision: dict[str, str]  # OpenVINO device -> INFERENCE_PRECISION_HINT
    capability: dict[str, str]  # device -> the OPTIMIZATION_CAPABILITIES entry it needs
    guarantee: str


TIERS: dict[str, Tier] = {
    t.name: t
    for t in (
        Tier("exact", 1e-5, {"CPU": "f32", "GPU": "f32", "NPU": "f32"}, {}, "fp32: within 1e-5 relative L2"),
        Tier(
            "half",
            1e-2,
            {"CPU": "bf16", "GPU": "f16", "NPU": "f16"},
            {"CPU": "BF16", "GPU": "FP16", "NPU": "FP16"},
            "bf16 (CPU) / fp16 (GPU): within 1e-2 relative L2, measured at export",
        ),
    )
}


def _openvino():
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError("OpenVINO is not installed: pip install 'spade-rt[openvino]'") from None
    return openvino


def _device_family(device: str) -> str:
    return device.split(".", 1)[0].upper()


def tier_available(core, device: str, tier: str) -> str | None:
    """None if ``device`` runs ``tier`` natively, else why not."""
    t = TIERS[tier]
    need = t.capability.get(_device_family(device))
    if need is None:
        return None
    try:
        caps = list(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:  # a device without the property
        return f"cannot read {device}'s capabilities ({exc})"
    if need not in caps:
        return f"{device} has no native {need} ({', '.join(caps)})"
    return None


def measured_tier(graph: str | Path, tier: str) -> dict | None:
    """The ``tiers[tier]`` entry of export's report beside ``graph``, if any."""
    path = report_path(graph)
    try:
        r = json.loads(path.read_text()) if path.is_file() and path.stat().st_size < 1 << 22 else None
    except (OSError, ValueError):
        return None
    entry = r.get("tiers", {}).get(tier) if isinstance(r, dict) and isinstance(r.get("tiers"), dict) else None
    return entry if isinstance(entry, dict) else None


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(
        self,
        model: str | Path,
        device: str = "CPU",
        tier: str = "exact",
        threads: int | None = None,
        *,
        cache_dir: str | Path | None = None,
        cache: bool = True,
        require_measured: bool = True,
    ) -> None:
        """``device``: an OpenVINO device (CPU, GPU, GPU.1, NPU). ``tier``: ``exact`` or ``half`` (TIERS).
        ``cache_dir``: the compiled-model cache (default: the user cache); ``cache=False`` turns it off.
        ``require_measured``: offer ``half`` only if export measured it within its bound (export's own
        measurement turns this off)."""
        if tier not in TIERS:
            raise ConfigError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
        ov = _openvino()
        path = Path(model)
        if not path.is_file():
            raise ModelFormatError(f"ONNX file not found: {path}")
        self.core = ov.Core()
        available = list(self.core.available_devices)
        if _device_family(device) not in {_device_family(d) for d in available} and device not in available:
            raise BackendUnavailableError(f"OpenVINO device {device} is not here (have: {', '.join(available)})")
        why = tier_available(self.core, device, tier)
        if why:
            raise BackendUnavailableError(f"the {tier} tier does not run here: {why}")
        if tier != "exact" and require_measured:
            entry = measured_tier(path, tier)
            if entry is None:
                raise BackendUnavailableError(
                    f"the {tier} tier of {path.name} was never measured: export it again with OpenVINO installed "
                    f"(`spade-rt export` measures it and records it in {report_path(path).name})"
                )
            err, bound = entry.get("max_rel_l2"), TIERS[tier].bound
            if not isinstance(err, int | float) or not err <= bound:
                raise BackendUnavailableError(
                    f"the {tier} tier of {path.name} is not offered: measured relative L2 {err} is over its "
                    f"bound {bound:g}"
                )
        self.device, self.tier = device, tier
        measured = measured_tier(path, tier) if tier != "exact" else None
        self.measured_error = measured.get("max_rel_l2") if measured else None  # export's figure for this tier
        if cache:
            from spade_rt.cache import built_dir

            # created and handed to OpenVINO at the first compilation: a call refused before it writes nothing
            self.cache_dir: Path | None = Path(cache_dir) if cache_dir else built_dir() / "openvino"
        else:
            self.cache_dir = None
        try:
            self._model = self.core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError with its parser's message
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFormatError(f"OpenVINO cannot read {path}: {first[:300]}") from None
        self.spec = spec_from_onnx_metadata(self._metadata(), str(path))
        self.input_names = {i.get_any_name() for i in self._model.inputs}
        out = self._model.outputs[0]
        self._out_dtype = np.uint8 if out.get_element_type().get_type_name() == "u8" else np.float32
        fam = _device_family(device)
        self.config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": TIERS[tier].precision.get(fam, "f32"),
        }
        if fam == "CPU":
            self.config["INFERENCE_NUM_THREADS"] = str(threads or default_threads())
        self._cache_set = False
        self._compiled: dict[tuple, tuple] = {}  # input shapes -> (compiled model, infer request)
        self.loaded_from_cache: list[bool] = []  # per compiled shape, in order
        self.last_times = StageTimes()

    def _metadata(self) -> dict[str, str]:
        """The ONNX metadata_props, which OpenVINO's ONNX reader keeps under rt_info["framework"]."""
        try:
            fw = self._model.get_rt_info()["framework"]
            fw = fw if isinstance(fw, dict) else fw.astype(dict)
            return {k: v if isinstance(v, str) else v.astype(str) for k, v in fw.items()}
        except Exception:  # no framework section: no spade-rt metadata
            return {}

    def _request(self, feeds: dict[str, np.ndarray]):
        key = tuple((name, arr.shape) for name, arr in sorted(feeds.items()))
        hit = self._compiled.get(key)
        if hit is not None:
            return hit[1]
        if self.cache_dir is not None and not self._cache_set:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self.core.set_property({"CACHE_DIR": str(self.cache_dir)})
            self._cache_set = True
        model = self._model.clone()
        model.reshape({name: list(arr.shape) for name, arr in feeds.items()})
        t0 = time.perf_counter()
        try:
            compiled = self.core.compile_model(model, self.device, self.config)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendUnavailableError(
                f"OpenVINO cannot compile the graph for {self.device}: {first[:300]}"
            ) from None
        try:
            cached = bool(compiled.get_property("LOADED_FROM_CACHE"))
        except Exception:
            cached = False
        self.loaded_from_cache.append(cached)
        log.debug(
            "openvino: %s for %s in %.2f s (%s)",
            "loaded from cache" if cached else "compiled",
            key,
            time.perf_counter() - t0,
            self.config,
        )
        request = compiled.create_infer_request()
        if len(self._compiled) < MAX_SHAPES:
            self._compiled[key] = (compiled, request)
        return request

    def _feeds(self, labels, edges, z) -> dict[str, np.ndarray]:
        feeds = {LABELS: labels}
        if EDGES in self.input_names:
            feeds[EDGES] = edges
        if Z in self.input_names:
            feeds[Z] = z
        missing = [k for k, v in feeds.items() if v is None]
        if missing:
            raise InputError(f"the graph needs input(s) {', '.join(missing)}")
        return {k: np.ascontiguousarray(v) for k, v in feeds.items()}

    def run(self, labels: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
        feeds = self._feeds(labels, edges, z)
        request = self._request(feeds)
        t0 = time.perf_counter()
        request.infer(feeds)
        t1 = time.perf_counter()
        out = np.array(request.get_tensor(IMAGE).data, dtype=self._out_dtype, copy=True)  # the next call reuses it
        t2 = time.perf_counter()
        self.last_times = StageTimes(0.0, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t2 - t0) * 1e3)
        return out

    def close(self) -> None:
        self._compiled = {}
