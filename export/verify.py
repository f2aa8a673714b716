"""Export verification: the graph under ONNX Runtime against the PyTorch network, on the same inputs.

Inputs: random region maps (every id can appear, plus isolated pixels that exercise every lookup tap) and
the user's own label maps. The reference is the original formulation (one-hot semantics, spectral norm and
batch norm as written), in fp32, at the graph's size.

fp16 graphs run on ONNX Runtime's CUDA provider where it is installed and a GPU answers (real fp16 kernels);
elsewhere on the CPU provider, and the report's ``numerics`` says what that exercised (``FP16_ON_CPU``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spade_rt.errors import BackendUnavailableError, ExportError
from spade_rt.images import float_to_uint8
from spade_rt.labels import LabelSpec, instance_edges, load_inputs
from spade_rt.model.config import GeneratorConfig
from spade_rt.model.networks import SPADEGenerator
from spade_rt.model.original_checkpoint import load_strict
from spade_rt.model.semantics import semantics_from_numpy
from spade_rt.procedural import random_label_maps
from spade_rt.runtime.onnxruntime_backend import make_session
from spade_rt.runtime.spec import EDGES, IMAGE, LABELS, Z

log = logging.getLogger(__name__)

BOUNDS = {"fp32": 1e-5, "fp16": 1e-2}  # relative L2 of the float output
# uint8 output: at most this many levels from the reference's own tensor2im (truncation flips one level
# where the value sits on a boundary; fp16's ~1e-3 absolute error moves a value by well under 4 levels)
UINT8_MAX_LEVELS = {"fp32": 1, "fp16": 4}
# What an fp16 graph's verification exercises where ONNX Runtime has no GPU provider (tests/test_export.py
# compares such a graph with the PyTorch network run in fp16 too)
FP16_ON_CPU = (
    "fp16 weights, and every tensor rounded to fp16 between nodes; ONNX Runtime's CPU provider computes nodes "
    "it has no fp16 kernel for (Conv, Gemm, InstanceNormalization ...) in fp32 between inserted casts, which "
    "equals fp16 storage with fp32 accumulation; fp16 arithmetic inside GPU kernels was not exercised"
)


@dataclass
class VerifyCase:
    name: str
    ids: np.ndarray  # (H, W)
    edges: np.ndarray | None
    z: np.ndarray | None


@dataclass
class VerifyReport:
    precision: str
    output: str
    bound: float
    cases: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    provider: str = "CPUExecutionProvider"
    # the inputs and the PyTorch network's outputs on them, kept for the tier measurements (not written)
    inputs: list = field(default_factory=list, repr=False)
    reference: np.ndarray | None = field(default=None, repr=False)

    @property
    def worst(self) -> float:
        return max(c["rel_l2"] for c in self.cases)

    @property
    def numerics(self) -> str:
        """What the comparison exercised: fp16 on a GPU provider, or what the CPU provider does with it."""
        if self.precision != "fp16":
            return "fp32"
        if self.provider != "CPUExecutionProvider":
            return f"fp16 kernels of ONNX Runtime's {self.provider}"
        return FP16_ON_CPU

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "provider": self.provider,
            "numerics": self.numerics,
            "output": self.output,
            "metric": (
                "max |levels| vs the PyTorch network's tensor2im (uint8 output)"
                if self.output == "uint8"
                else "relative L2 vs the PyTorch network (fp32, original formulation)"
            ),
            "bound": self.bound,
            "max_rel_l2": self.worst,
            "max_abs_levels": max((c.get("max_abs_levels", 0) for c in self.cases), default=0),
            "cases": self.cases,
            "seconds": round(self.seconds, 2),
        }


def reference_generator(config: GeneratorConfig, state: dict, hw: tuple[int, int]) -> SPADEGenerator:
    """The PyTorch network at (H, W): the conv fc makes it fully convolutional, so only the latent grid moves."""
    h, w = hw
    if (h, w) != config.output_hw:
        config = config.replace(crop_size=w, aspect_ratio=w / h)
    net = SPADEGenerator(config)
    load_strict(net, state, "model")
    return net.eval()


def make_cases(config: GeneratorConfig, hw: tuple[int, int], samples: int, user_labels, seed: int = 0):
    h, w = hw
    spec = LabelSpec(config.label_nc, config.contain_dontcare_label, config.use_instance, h, w)
    rng = np.random.default_rng(seed)
    cases = []
    maps = random_label_maps(samples, h, w, config.num_label_ids, seed=seed) if samples else []
    instances = random_label_maps(samples, h, w, 4, seed=seed + 1, regions=6) if samples else []
    for i in range(samples):
        edges = instance_edges(instances[i]) if config.use_instance else None
        cases.append(VerifyCase(f"random-{i}", maps[i].astype(spec.id_dtype), edges, None))
    for path in user_labels or []:
        ids, edges = load_inputs(spec, path)
        cases.append(VerifyCase(Path(path).name, ids, edges, None))
    for case in cases:
        if config.use_vae:
            case.z = rng.standard_normal(config.z_dim).astype(np.float32)
    return cases


def run_reference(net: SPADEGenerator, cases: list[VerifyCase]) -> np.ndarray:
    cfg = net.cfg
    out = []
    with torch.inference_mode():
        for case in cases:
            seg = semantics_from_numpy(case.ids, cfg.num_label_ids, case.edges)
            z = None if case.z is None else torch.from_numpy(case.z[None])
            out.append(net(seg, z).numpy())
    return np.concatenate(out)


def verification_providers(precision: str, available: list[str]) -> list[str]:
    """Where to run the graph under test: fp16 graphs on a GPU provider when ONNX Runtime has one (real fp16
    kernels), else (and for fp32) on the CPU. The TensorRT provider is never used here: it would build an
    engine of its own, which is not the graph being verified."""
    if precision == "fp16" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def graph_session(model_bytes: bytes, precision: str):
    """(session, provider it runs on). A GPU provider that cannot start (no device) falls back to the CPU."""
    import onnxruntime as ort

    providers = verification_providers(precision, ort.get_available_providers())
    try:
        session = make_session(model_bytes, providers=providers)
    except BackendUnavailableError as exc:
        log.warning("verifying on the CPU: %s", exc)
        session = make_session(model_bytes, providers=["CPUExecutionProvider"])
    provider = session.get_providers()[0]
    if providers[0] != provider:
        log.warning("verifying on %s: %s did not start here", provider, providers[0])
    return session, provider


def run_graph(model_bytes: bytes, cases: list[VerifyCase], max_batch: int, session=None) -> np.ndarray:
    if session is None:
        session = make_session(model_bytes, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    # a graph exported with a fixed batch (--batch B) takes exactly B maps: fill the last chunk, drop the fill
    fixed = next(i.shape[0] for i in session.get_inputs() if i.name == LABELS)
    step = fixed if isinstance(fixed, int) else max_batch
    out = []
    for start in range(0, len(cases), step):
        chunk = cases[start : start + step]
        n = len(chunk)
        if isinstance(fixed, int):
            chunk = chunk + [chunk[-1]] * (fixed - n)
        feeds = {LABELS: np.stack([c.ids for c in chunk])}
        if EDGES in names:
            feeds[EDGES] = np.stack([c.edges for c in chunk])
        if Z in names:
            feeds[Z] = np.stack([c.z for c in chunk])
        out.append(session.run([IMAGE], feeds)[0][:n])
    return np.concatenate(out)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a64 - b64) / max(np.linalg.norm(b64), 1e-30))


def verify_graph(
    model_bytes: bytes,
    config: GeneratorConfig,
    state: dict,
    precision: str,
    output: str,
    hw: tuple[int, int],
    max_batch: int,
    samples: int = 2,
    user_labels=(),
) -> VerifyReport:
    """Run both, compare, raise ExportError with the measured error if over the precision's bound."""
    t0 = time.perf_counter()
    cases = make_cases(config, hw, samples, user_labels)
    if not cases:
        raise ExportError("nothing to verify: give --verify-samples >= 1 or --verify-labels")
    want = run_reference(reference_generator(config, state, hw), cases)  # (N, 3, H, W) float32
    session, provider = graph_session(model_bytes, precision)
    got = run_graph(model_bytes, cases, max(1, min(max_batch, 2)), session)
    report = VerifyReport(precision, output, BOUNDS[precision], provider=provider, inputs=cases, reference=want)
    for i, case in enumerate(cases):
        if output == "uint8":
            want_u8 = float_to_uint8(want[i : i + 1])[0].astype(np.int16)
            diff = np.abs(got[i].astype(np.int16) - want_u8)
            entry = {
                "input": case.name,
                "rel_l2": rel_l2(got[i].astype(np.float32), want_u8.astype(np.float32)),
                "max_abs_levels": int(diff.max()),
                "mean_abs_levels": float(diff.mean()),
                "pixels_off": float((diff > 0).mean()),
            }
        else:
            entry = {"input": case.name, "rel_l2": rel_l2(got[i], want[i])}
        report.cases.append(entry)
    report.seconds = time.perf_counter() - t0
    if output == "uint8":
        report.bound = UINT8_MAX_LEVELS[precision]
        worst_levels = max(c["max_abs_levels"] for c in report.cases)
        if worst_levels > report.bound:
            raise ExportError(
                f"verification failed: uint8 output differs from the PyTorch network's by up to {worst_levels} "
                f"levels (the {precision} bound is {report.bound}); nothing was written"
            )

    elif report.worst > report.bound:
        worst = max(report.cases, key=lambda c: c["rel_l2"])
        raise ExportError(
            f"verification failed: relative L2 {report.worst:.3g} on {worst['input']} exceeds the {precision} bound "
            f"{report.bound:g}; nothing was written"
        )
    if output == "uint8":  # the bound is in uint8 levels: report the figure in the same unit
        log.info(
            "verified against PyTorch: max %d uint8 level(s) off its tensor2im (%s bound %g levels)",
            max(c["max_abs_levels"] for c in report.cases),
            precision,
            report.bound,
        )
    else:
        log.info("verified against PyTorch: max relative L2 %.2e (%s bound %g)", report.worst, precision, report.bound)
    return report


# ---- the precision tiers, judged by the picture -------------------------------------------------------------
COCO_LABELS = (182, True)  # label_nc, dontcare: the label set of the shipped COCO-Stuff sample
# (weights, size, split) -> (cases, reference): one model exported as several graphs in one process (the
# bench: static, dedup, int8) runs the PyTorch reference on the real maps once
_TIER_MAPS: dict[tuple, tuple] = {}


def _state_key(state: dict, hw: tuple[int, int], split: str) -> tuple:
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        h.update(name.encode())
        if hasattr(value, "numpy"):
            h.update(value.detach().cpu().numpy().tobytes())
    return h.hexdigest(), tuple(hw), split


def tier_maps(config: GeneratorConfig, state: dict, hw: tuple[int, int], report: VerifyReport, split: str = "val"):
    """(cases, the PyTorch network's fp32 outputs on them, where the maps come from) for the tier measurements.

    The shipped COCO-Stuff sample's real maps (``spade_rt.sample_data``; ``split`` val: 8 maps, judged on;
    train: 13, calibration) where the model's label set is COCO-Stuff's; otherwise the verification inputs
    (random region maps: other label sets have no real maps here)."""
    if (config.label_nc, config.contain_dontcare_label) != COCO_LABELS:
        if split == "val":
            return report.inputs, report.reference, "verification inputs (random region maps)"
        cases = make_cases(config, hw, 8, (), seed=101)
        return cases, None, "random region maps (calibration)"
    key = _state_key(state, hw, split)
    if key in _TIER_MAPS:
        cases, reference = _TIER_MAPS[key]
        return cases, reference, f"real COCO-Stuff {split} maps (shipped sample)"
    from spade_rt.sample_data import coco_stuff_sample

    folder = coco_stuff_sample()
    spec = LabelSpec(config.label_nc, config.contain_dontcare_label, config.use_instance, *hw)
    rng = np.random.default_rng(7)
    cases = []
    for label in sorted((folder / f"{split}_label").glob("*.png")):
        inst = folder / f"{split}_inst" / label.name
        ids, edges = load_inputs(spec, label, inst if config.use_instance and inst.is_file() else None)
        z = rng.standard_normal(config.z_dim).astype(np.float32) if config.use_vae else None
        cases.append(VerifyCase(label.name, ids, edges, z))
    reference = run_reference(reference_generator(config, state, hw), cases) if split == "val" else None
    if len(_TIER_MAPS) >= 4:
        _TIER_MAPS.clear()
    _TIER_MAPS[key] = (cases, reference)
    return cases, reference, f"real COCO-Stuff {split} maps (shipped sample)"


def run_cases(backend, cases: list[VerifyCase]) -> np.ndarray:
    """A backend's float outputs (N, 3, H, W) on the cases, one map per call."""
    return np.concatenate(
        [
            backend.run(c.ids[None], None if c.edges is None else c.edges[None], None if c.z is None else c.z[None])
            for c in cases
        ]
    )


def figures(got: np.ndarray, reference: np.ndarray) -> dict:
    """What a tier's run measured against the fp32 picture: worst-map PSNR, max 8-bit level difference,
    worst relative L2 of the float output."""
    from spade_rt.runtime.tiers import picture_figures

    f = picture_figures(got, reference)
    f["max_rel_l2"] = max(rel_l2(g, r) for g, r in zip(got, reference))
    return f


def tier_entry(name: str, measured: dict[str, dict], maps: int, maps_from: str, reason: str | None = None) -> dict:
    """A tier's record in the report: the tier's bound, each run's figures, the worst of them, offered or not."""
    from spade_rt.runtime.tiers import TIERS

    t = TIERS[name]
    entry: dict = {"metric": t.metric, "bound": t.bound, "measured": measured, "maps": maps, "maps_from": maps_from}
    if measured:
        entry["psnr_db"] = min(m["psnr_db"] for m in measured.values())
        entry["max_levels"] = max(m["max_levels"] for m in measured.values())
        entry["max_rel_l2"] = max(m["max_rel_l2"] for m in measured.values())
        entry["offered"] = t.within(entry[t.metric])
        if not entry["offered"]:
            entry["reason"] = f"measured {entry[t.metric]:.3g}, bound {t.bound_words}"
    else:
        entry["offered"] = False
        entry["reason"] = reason or "not measured"
    return entry


def measure_tiers(
    model_bytes: bytes, report: VerifyReport, config: GeneratorConfig, state: dict, hw: tuple[int, int]
) -> dict:
    """Each precision tier measured by its picture before any backend offers it (``spade_rt.runtime.tiers``).

    ``exact``: the fp32 graph on ONNX Runtime (the verification) and on OpenVINO fp32; ``half``: OpenVINO at
    bf16 (fp16 where the CPU has it natively). Each against the PyTorch network's fp32 picture on the tier maps
    (``tier_maps``: the shipped real maps where the label set fits, else the verification inputs): worst-map
    PSNR of the 8-bit pictures, the largest level difference, the relative L2. ``int8`` is its own graph
    (`spade-rt export --tier int8`, export/quantize.py). Float-output fp32 graphs only.
    """
    import tempfile

    from spade_rt.runtime.openvino_backend import OpenVinoBackend, tier_precision

    cases, reference, maps_from = tier_maps(config, state, hw, report)
    exact = {f"onnxruntime {report.provider}": figures(run_graph(model_bytes, cases, 1), reference)}
    half: dict[str, dict] = {}
    reason = None
    try:
        import openvino as ov
    except ImportError:
        reason = "OpenVINO is not installed here (pip install 'spade-rt[openvino]')"
        ov = None
    if ov is not None:
        core = ov.Core()
        with tempfile.TemporaryDirectory(prefix="spade-rt-tiers-") as tmp:
            path = Path(tmp) / "graph.onnx"
            path.write_bytes(model_bytes)
            for name, into in (("exact", exact), ("half", half)):
                precision, why = tier_precision(core, "CPU", name)
                if why:
                    reason = why
                    continue
                backend = OpenVinoBackend(path, "CPU", name, cache=False, require_measured=False)
                try:
                    into[f"openvino CPU {precision}"] = figures(run_cases(backend, cases), reference)
                finally:
                    backend.close()
    tiers = {
        "exact": tier_entry("exact", exact, len(cases), maps_from),
        "half": tier_entry("half", half, len(cases), maps_from, reason),
        "int8": tier_entry(
            "int8", {}, len(cases), maps_from, "int8 is its own graph: spade-rt export MODEL --tier int8 -o G.onnx"
        ),
    }
    log.info(
        "tiers on %d %s: %s",
        len(cases),
        maps_from,
        ", ".join(f"{n} {e.get('psnr_db', float('nan')):.1f} dB" for n, e in tiers.items() if e["measured"]),
    )
    return tiers
