"""Shared fixtures: the real COCO-Stuff sample, CLI runners, original-format checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPADE_RT_SHARED", ROOT.parent / "shared"))
COCO_SAMPLE = SHARED / "data" / "coco_stuff_sample"
sys.path.insert(0, str(Path(__file__).parent))  # reference_spade


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Built graphs and engines of the whole session go to a temporary cache, never the user's ~/.cache."""
    if "SPADE_RT_CACHE" not in os.environ:
        os.environ["SPADE_RT_CACHE"] = str(tmp_path_factory.mktemp("spade-rt-cache"))


@pytest.fixture(scope="session")
def coco_sample() -> Path:
    if not (COCO_SAMPLE / "val_label").is_dir():
        pytest.fail(f"the shared COCO-Stuff sample is missing at {COCO_SAMPLE} (set SPADE_RT_SHARED)")
    return COCO_SAMPLE


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `spade-rt ARGS` in a fresh interpreter, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "spade_rt.cli", *map(str, args)], capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"spade-rt {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture
def cli():
    return run_cli


def gpu_available() -> str | None:
    """None if a usable NVIDIA GPU + TensorRT are present, else the reason (the skip message)."""
    try:
        from spade_rt.engines.adapter import TensorRT
        from spade_rt.engines.cuda import Cuda

        TensorRT.load("auto")
        Cuda()
    except Exception as exc:
        return f"no usable GPU/TensorRT here: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            reason = reason or gpu_available() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
