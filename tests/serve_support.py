"""Shared by the serve, painter and Triton tests: tiny exported models, PNG helpers, the demo graph, painter
frames, Prometheus metrics (read with prometheus_client's own parser), bounded waits.

The fixtures ``demo_graph`` and ``demo_synth`` built on ``demo_graph_path`` live in tests/conftest.py.
"""

from __future__ import annotations

import io
import json
import struct
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

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


# ---- painter frames (the wire format of spade_rt/serve/inputs.py: u32 LE length, JSON header, payload) -----
def frame(n: int, ids: np.ndarray, seed: int = 0, header: dict | None = None) -> bytes:
    """A painter frame of uint8 ids (``header``: sent instead of the well-formed one)."""
    header = header or {"frame": n, "seed": seed, "height": ids.shape[0], "width": ids.shape[1], "dtype": "uint8"}
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + ids.astype(np.uint8).tobytes()


def reply(message: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack_from("<I", message)
    return json.loads(message[4 : 4 + n]), message[4 + n :]


# ---- Prometheus text, parsed by prometheus_client -----------------------------------------------------------
def metric(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` with exactly ``labels`` in a Prometheus text exposition. A family that is
    absent fails the test; a labelled sample the family has not produced yet is 0 (a counter that never
    counted that label value)."""
    known = False
    for family in text_string_to_metric_families(text):
        known = known or name == family.name or name.removeprefix(family.name) in SAMPLE_SUFFIXES
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    assert known, f"{name} missing from the metrics"
    return 0.0


SAMPLE_SUFFIXES = ("_total", "_count", "_sum", "_bucket")  # a family's samples: counters, histograms


def server_metric(server, name: str, **labels: str) -> float:
    """``metric`` read from a running server's ``/metrics`` (a ``ServeProcess``)."""
    import httpx

    return metric(httpx.get(f"{server.url}/metrics", timeout=30).text, name, **labels)


def wait_until(predicate, timeout: float = 30.0, step: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
