"""OpenVINO backend: our exported graphs (static or dedup) on OpenVINO's CPU device (GPU/NPU where present).

Settings, chosen once: latency hint (one stream, every CPU this process may use), the inference precision of
the chosen tier, model caching in the user cache (``spade_rt.cache``: ``<cache>/built/openvino``) so that a
second start loads the compiled blob instead of compiling again. The graph is compiled once per input shape
(``labels`` shape: batch, H, W), each shape with its own infer request; shapes stay fixed inside a compiled
model, which is what OpenVINO's CPU plugin runs fastest.

Precision tiers (``spade_rt.runtime.tiers``: the table of bounds): ``exact`` is fp32
(``INFERENCE_PRECISION_HINT f32``; OpenVINO's own default on CPUs with bf16 is bf16, so the hint is set
explicitly: an unset hint is not exact); ``half`` is bf16 on CPUs that have it, else fp16 where the CPU runs it
natively (fp16 on GPUs and NPUs); ``int8`` is an int8 QDQ graph (`spade-rt export --tier int8`), its
quantized layers in int8 and the layers export kept in higher precision at f32. A tier other than exact is
offered only where export measured its picture within the tier's bound (``tiers.check_offered``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from spade_rt.errors import BackendUnavailableError, ConfigError, ModelFormatError
from spade_rt.runtime.backend import Backend, StageTimes, graph_feeds
from spade_rt.runtime.onnxruntime_backend import default_threads
from spade_rt.runtime.spec import IMAGE, spec_from_onnx_metadata
from spade_rt.runtime.tiers import TIER_CHOICES, check_offered, resolve_tier

log = logging.getLogger(__name__)

MAX_SHAPES = 8  # compiled shapes kept per backend


# tier -> device family -> INFERENCE_PRECISION_HINT choices, the first the device runs natively (CPU: bf16
# where it has it (AVX-512 BF16 / AMX), else fp16 where it has it (AVX-512 FP16, ARM)); the capability each needs
PRECISIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "exact": {"CPU": ("f32",), "GPU": ("f32",), "NPU": ("f32",)},
    "half": {"CPU": ("bf16", "f16"), "GPU": ("f16",), "NPU": ("f16",)},
    "int8": {"CPU": ("f32",), "GPU": ("f32",), "NPU": ("f16",)},
}
CAPABILITY = {"bf16": "BF16", "f16": "FP16"}  # OPTIMIZATION_CAPABILITIES entry a precision needs natively


def _openvino():
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError("OpenVINO is not installed: pip install 'spade-rt[openvino]'") from None
    return openvino


def _device_family(device: str) -> str:
    return device.split(".", 1)[0].upper()


def tier_precision(core, device: str, tier: str) -> tuple[str | None, str | None]:
    """(the inference precision ``device`` runs ``tier`` at natively, None) or (None, why it cannot)."""
    choices = PRECISIONS[tier].get(_device_family(device), ("f32",))
    needs = [CAPABILITY[p] for p in choices if p in CAPABILITY]
    if not needs:
        return choices[0], None
    try:
        caps = list(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:  # a device without the property
        return None, f"cannot read {device}'s capabilities ({exc})"
    for p in choices:
        if CAPABILITY.get(p, "") in caps or p not in CAPABILITY:
            return p, None
    return None, f"{device} has no native {' or '.join(needs)} ({', '.join(caps)})"


def tier_available(core, device: str, tier: str) -> str | None:
    """None if ``device`` runs ``tier`` natively, else why not."""
    return tier_precision(core, device, tier)[1]


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(
        self,
        model: str | Path,
        device: str = "CPU",
        tier: str | None = None,
        threads: int | None = None,
        *,
        cache_dir: str | Path | None = None,
        cache: bool = True,
        require_measured: bool = True,
    ) -> None:
        """``device``: an OpenVINO device (CPU, GPU, GPU.1, NPU). ``tier``: ``exact``, ``half`` or ``int8``
        (``spade_rt.runtime.tiers``); None or ``auto``: the graph's own (int8 for int8 graphs, else exact).
        ``cache_dir``: the compiled-model cache (default: the user cache); ``cache=False`` turns it off.
        ``require_measured``: offer a tier other than exact only if export measured its picture within the
        tier's bound (export's own measurement turns this off)."""
        if tier is not None and tier not in TIER_CHOICES:
            raise ConfigError(f"tier must be one of {', '.join(TIER_CHOICES)}, got {tier!r}")
        ov = _openvino()
        path = Path(model)
        if not path.is_file():
            raise ModelFormatError(f"ONNX file not found: {path}")
        self.core = ov.Core()
        available = list(self.core.available_devices)
        if _device_family(device) not in {_device_family(d) for d in available} and device not in available:
            raise BackendUnavailableError(f"OpenVINO device {device} is not here (have: {', '.join(available)})")
        try:
            self._model = self.core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError with its parser's message
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFormatError(f"OpenVINO cannot read {path}: {first[:300]}") from None
        self.spec = spec_from_onnx_metadata(self._metadata(), str(path))
        tier = resolve_tier(tier, self.spec, "onnx", "openvino", "tier")
        precision, why = tier_precision(self.core, device, tier)
        if why:
            raise BackendUnavailableError(f"the {tier} tier does not run here: {why}")
        measured = check_offered(path, tier) if require_measured else None
        self.device, self.tier = device, tier
        self.measured = measured  # export's record of this tier (None for exact)
        self.measured_psnr = measured.get("psnr_db") if measured else None
        if cache:
            from spade_rt.cache import built_dir

            # created and handed to OpenVINO at the first compilation: a call refused before it writes nothing
            self.cache_dir: Path | None = Path(cache_dir) if cache_dir else built_dir() / "openvino"
        else:
            self.cache_dir = None
        self.input_names = {i.get_any_name() for i in self._model.inputs}
        out = self._model.outputs[0]
        self._out_dtype = np.uint8 if out.get_element_type().get_type_name() == "u8" else np.float32
        fam = _device_family(device)
        self.config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
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
        return {k: np.ascontiguousarray(v) for k, v in graph_feeds(self.input_names, labels, edges, z).items()}

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
