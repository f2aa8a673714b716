"""Resumable training state: one ``RUN/state.pt`` holding everything a run needs to continue exactly.

Contents (tensors and plain containers only, so it loads with ``torch.load(weights_only=True)``): the step,
G / D / E / EMA state dicts (with spectral-norm u, v and batch-norm statistics), both optimizers, AMP
scalers, the RNG states of torch / numpy / python (as tensors), and what fixes the data order (seed,
global batch size, dataset fingerprint). The learning rate is a pure function of the step, and the data
order a pure function of (seed, step), so no scheduler or sampler object needs pickling.

Written atomically (a temporary file renamed over the old one): a run killed mid-save keeps the previous
complete state.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spade_rt.errors import ModelFormatError
from spade_rt.io_utils import atomic_path
from spade_rt.model.original_checkpoint import torch_load_weights_only

STATE_FORMAT = "spade-rt-train-state"
STATE_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """Global RNG states as tensors / plain values."""
    np_state = np.random.get_state()  # ('MT19937', uint32[624], pos, has_gauss, cached_gaussian)
    py_version, py_internal, py_gauss = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomic torch.save of a plain dict (tensors, numbers, strings, lists, dicts)."""
    payload = {"format": STATE_FORMAT, "version": STATE_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"no training state to resume from: {path} does not exist")
    state = torch_load_weights_only(path, "training state")  # one-line errors for damaged or unsafe files
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ModelFormatError(f"{path} is not a spade-rt training state (format {STATE_FORMAT!r} expected)")
    if int(state.get("version", 0)) > STATE_VERSION:
        raise ModelFormatError(
            f"{path} has state version {state['version']}; this spade-rt reads up to {STATE_VERSION}"
        )
    return state
