"""Shared by the serve, painter and Triton tests: tiny exported models, PNG helpers, the demo graph."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spade_rt.cli import main

from reference_spade import ref_generator_for


def tiny_model(tmp: Path, preset: str, *, use_vae: bool = False, size: int = 64, ngf: int = 4, seed: int = 0) -> Path:
    """A spade-rt model (safetensors) of the reference network with deterministic random weights."""
    torch.save(ref_generator_for(preset, ngf, use_vae=use_vae, seed=seed, crop_size=size).state_dict(), tmp / "G.pth")
    model = tmp / f"{preset}.safetensors"
    argv = ["convert", str(tmp / "G.pth"), "--preset", preset, "--crop-size", str(size), "-o", str(model), "-q"]
    assert main(argv) == 0
    return model


def tiny_graph(tmp: Path, preset: str, *, use_vae: bool = False, batch: str = "1:2:4", extra: tuple = ()) -> Path:
    """A tiny model exported to an ONNX graph (64x64, ngf 4), verified by export."""
    model = tiny_model(tmp, preset, use_vae=use_vae)
    graph = tmp / f"{preset}.onnx"
    argv = ["export", str(model), "-o", str(graph), "--batch", batch, "--verify-samples", "1", "-q", *extra]
    assert main(argv) == 0
    return graph


def demo_graph_path() -> Path:
    """The embedded demo model's graph for this machine: the same file `spade-rt serve` (no MODEL) uses (on CPUs
    the shipped dedup graph; else exported into the session cache, in a child process)."""
    from spade_rt.demo_model import demo_graph

    return demo_graph()


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)
