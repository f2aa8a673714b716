"""Precision tiers: the one table of what each tier guarantees, how it is measured, and where it runs.

A tier is named by what a user gets, and reduced precision is judged by what the eye sees: the 8-bit picture.

- ``exact``: fp32, within 1e-5 relative L2 of the PyTorch network (the float output). The default.
- ``half``: bf16 (fp16 where a CPU runs it natively) on OpenVINO; worst-map PSNR of its 8-bit picture against
  the fp32 picture >= 40 dB (about 2.5 levels RMS of 255: visually lossless, docs/bench.md "Tiers").
- ``int8``: a post-training-quantized QDQ graph (`spade-rt export --tier int8`); worst-map PSNR >= 35 dB.

`spade-rt export` measures every tier before any backend offers it (``export/verify.py: measure_tiers``) and
records the figures in the report beside the graph (``tiers``: per tier the worst-map PSNR, the largest 8-bit
level difference, the relative L2, where it ran and on which maps); a backend offers a tier other than
``exact`` only where that record is within the tier's bound, else it refuses with one line
(``check_offered``). `spade-rt inspect` shows the record. torch-free, like the rest of the runtime core.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spade_rt.errors import BackendUnavailableError, ConfigError
from spade_rt.runtime.registry import tier_backends
from spade_rt.runtime.spec import report_path

PSNR_CAP_DB = 100.0  # identical pictures (infinite PSNR) are recorded as this, so the report stays plain JSON


@dataclass(frozen=True)
class Tier:
    name: str
    metric: str  # "max_rel_l2" (float output vs the PyTorch network) or "psnr_db" (worst-map 8-bit PSNR vs fp32)
    bound: float  # max_rel_l2 <= bound, or psnr_db >= bound
    guarantee: str  # which backends run it: their registry entries' ``tiers`` (``backends``)

    def within(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            return False
        return value <= self.bound if self.metric == "max_rel_l2" else value >= self.bound

    @property
    def bound_words(self) -> str:
        return f"<= {self.bound:g} relative L2" if self.metric == "max_rel_l2" else f">= {self.bound:g} dB PSNR"

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends that run it, from the registry (each entry's ``tiers``)."""
        return tier_backends(self.name)


TIERS: dict[str, Tier] = {
    t.name: t
    for t in (
        Tier(
            "exact",
            "max_rel_l2",
            1e-5,
            "fp32: within 1e-5 relative L2 of the PyTorch network",
        ),
        Tier(
            "half",
            "psnr_db",
            40.0,
            "bf16 (fp16 where the CPU runs it natively): worst-map 8-bit PSNR >= 40 dB vs fp32",
        ),
        Tier(
            "int8",
            "psnr_db",
            35.0,
            "int8 QDQ graph (spade-rt export --tier int8): worst-map 8-bit PSNR >= 35 dB vs fp32",
        ),
    )
}
TIER_CHOICES = ("auto", *TIERS)  # `--tier`: auto = the graph's own tier (exact unless the file is an int8 graph)
TIER_METAVAR = "{" + ",".join(TIER_CHOICES) + "}"


def tier_help(lead: str = "precision tier") -> str:
    """The help of every `--tier` flag, from the table and the registry: each tier, what it keeps, its backends."""
    tiers = "; ".join(f"{t.name} ({t.guarantee}; on {', '.join(t.backends)})" for t in TIERS.values())
    return (
        f"{lead}, judged by the picture (docs/bench.md, 'Tiers'): auto, the file's own (exact, or int8 for a graph "
        f"from `export --tier int8`); {tiers}; a tier is offered only where export measured it within its bound "
        "(`spade-rt inspect` shows the figures)"
    )


# ---- the measure ------------------------------------------------------------------------------------------
def to_picture(images: np.ndarray) -> np.ndarray:
    """Float (N, 3, H, W) in [-1, 1] -> the 8-bit picture (N, H, W, 3) the user sees; uint8 passes through."""
    from spade_rt.images import float_to_uint8

    return images if images.dtype == np.uint8 else float_to_uint8(images)


def picture_figures(got: np.ndarray, want: np.ndarray) -> dict:
    """Per map: PSNR (dB, peak 255) and the largest level difference of the 8-bit pictures; float or uint8 in.
    Returns the worst over the maps: ``psnr_db`` (the lowest, capped at PSNR_CAP_DB), ``max_levels``."""
    a, b = to_picture(got).astype(np.float64), to_picture(want).astype(np.float64)
    psnrs, levels = [], []
    for x, y in zip(a, b):
        mse = float(np.mean((x - y) ** 2))
        psnrs.append(PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10 * math.log10(255.0**2 / mse)))
        levels.append(int(np.abs(x - y).max()))
    return {"psnr_db": round(min(psnrs), 2), "max_levels": max(levels), "per_map_psnr_db": [round(p, 2) for p in psnrs]}


# ---- which tier a file is, and whether it is offered -------------------------------------------------------
def graph_tier(spec) -> str:
    """The tier a graph was exported for: ``int8`` for quantized graphs (their spec says so), else exact."""
    tier = spec.extra.get("tier", "exact") if spec is not None else "exact"
    return tier if tier in TIERS else "exact"


def check_tier_choice(tier: object, key: str = "--tier") -> str:
    if tier not in TIER_CHOICES:
        raise ConfigError(f"{key} {tier}: expected one of {', '.join(TIER_CHOICES)}")
    return str(tier)


def resolve_tier(requested: str | None, spec, kind: str, backend: str, key: str = "--tier") -> str:
    """The tier a run uses: ``auto``/None = the file's own tier; otherwise the requested one, where this file
    and backend can run it. ConfigError (one line) otherwise; whether it is offered is ``check_offered``'s."""
    requested = check_tier_choice(requested or "auto", key)
    own = graph_tier(spec) if kind == "onnx" else "exact"
    if requested == "auto":
        return own
    t = TIERS[requested]
    if kind != "onnx" and requested != "exact":
        what = "a TensorRT engine (its precision is its own)" if kind == "engine" else "a spade-rt model (fp32)"
        raise ConfigError(f"{key} {requested} needs an exported ONNX graph; this is {what}")
    if own == "int8" and requested != "int8":
        raise ConfigError(f"{key} {requested}: this graph is the int8 tier's; export the model again for {requested}")
    if requested == "int8" and own != "int8":
        raise ConfigError(f"{key} int8 needs the int8 graph: spade-rt export MODEL --tier int8 -o MODEL_int8.onnx")
    if backend != "auto" and backend not in t.backends:
        raise ConfigError(f"{key} {requested} runs on {' or '.join(t.backends)}, not on --backend {backend}")
    return requested


def measured_tier(graph: str | Path, tier: str) -> dict | None:
    """The ``tiers[tier]`` entry of export's report beside ``graph``, if any."""
    path = report_path(graph)
    try:
        r = json.loads(path.read_text()) if path.is_file() and path.stat().st_size < 1 << 22 else None
    except (OSError, ValueError):
        return None
    entry = r.get("tiers", {}).get(tier) if isinstance(r, dict) and isinstance(r.get("tiers"), dict) else None
    return entry if isinstance(entry, dict) else None


def check_offered(graph: str | Path, tier: str) -> dict | None:
    """Export's record of ``tier`` for ``graph`` if it is within the tier's bound (None for exact, which every
    exported graph passed at export); BackendUnavailableError, one line, otherwise."""
    if tier == "exact":
        return None
    t, name = TIERS[tier], Path(graph).name
    entry = measured_tier(graph, tier)
    if entry is None or t.metric not in entry:
        raise BackendUnavailableError(
            f"the {tier} tier of {name} was never measured by its picture: export it again with OpenVINO installed "
            f"(`spade-rt export` measures it and records it in {report_path(graph).name})"
        )
    value = entry[t.metric]
    if not t.within(value):
        shown = f"{value:.1f} dB" if isinstance(value, int | float) else repr(value)
        raise BackendUnavailableError(
            f"the {tier} tier of {name} is not offered: its worst-map PSNR {shown} is below the bound {t.bound:g} dB"
        )
    return entry


def describe_entry(name: str, entry: dict) -> str:
    """One line of `spade-rt inspect` for a tier's record: offered or why not, the figures, the bound."""
    t = TIERS.get(name)
    state = "offered" if entry.get("offered") else f"not offered ({entry.get('reason', 'outside its bound')})"
    parts = [state]
    if isinstance(entry.get("psnr_db"), int | float):
        parts.append(f"worst-map PSNR {float(entry['psnr_db']):.1f} dB")
    if isinstance(entry.get("max_levels"), int):
        parts.append(f"max {entry['max_levels']} level(s) off")
    if isinstance(entry.get("max_rel_l2"), int | float):
        parts.append(f"rel. L2 {float(entry['max_rel_l2']):.1e}")
    parts.append(f"bound {t.bound_words}" if t else f"bound {entry.get('bound')}")
    where = entry.get("maps_from")
    if where:
        parts.append(f"on {entry.get('maps', '?')} {where}")
    if entry.get("kept_in_fp32"):
        parts.append(f"{len(entry['kept_in_fp32'])} layer(s) kept in fp32")
    return "; ".join(parts)
