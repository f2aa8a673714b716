"""spade_rt/demo_model.py: the shipped demo graph is a fresh export of the shipped model, the cache of exported
graphs is keyed by the model's content and the graph options, and a wheel alone (no torch) runs `spade-rt demo`,
`spade-rt serve` and `spade-rt web`.

The shipped graph is checked byte for byte against a fresh `spade-rt export` of the shipped model (export is
deterministic: two exports of the demo model gave the same SHA-256 on this machine, 2026-12-04), and the fresh
export is itself verified by export against the PyTorch network before it is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from spade_rt import demo_model as dm
from spade_rt.io_utils import sha256_file
from spade_rt.runtime.peek import peek_spec

from conftest import ROOT, building_from_the_checkout, ort_web_dist
from serve_support import tiny_model

URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+)/")


def _export(model: Path, out: Path, request: dm.GraphRequest) -> None:
    """A plain `spade-rt export` in a child: the independent way to make the graph (not demo_model's cache)."""
    argv = ["export", str(model), "-o", str(out), *request.export_argv(), "--verify-samples", "1", "-q"]
    proc = subprocess.run([sys.executable, "-m", "spade_rt.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def same_graph_up_to_float_rounding(a: Path, b: Path) -> None:
    """Two ONNX graphs are the same export: equal nodes, IO, opsets and metadata, initializers of equal names,
    types and shapes, integer ones equal and float ones within 4 ULP. Folding (spectral and batch norm) runs in
    torch's float32 kernels, whose last bit depends on the CPU's vector unit (an AMD EPYC and an Intel Xeon
    differ by 1 ULP in 8 of 264 tensors of the demo graph), so the bytes of a fresh export are the machine's."""
    import onnx
    from onnx import numpy_helper

    ga, gb = onnx.load(str(a)), onnx.load(str(b))
    assert list(ga.opset_import) == list(gb.opset_import) and ga.ir_version == gb.ir_version
    assert list(ga.metadata_props) == list(gb.metadata_props), "stale spec metadata"
    assert list(ga.graph.node) == list(gb.graph.node), "stale graph structure"
    assert list(ga.graph.input) == list(gb.graph.input) and list(ga.graph.output) == list(gb.graph.output)
    ta = {t.name: numpy_helper.to_array(t) for t in ga.graph.initializer}
    tb = {t.name: numpy_helper.to_array(t) for t in gb.graph.initializer}
    assert sorted(ta) == sorted(tb), "stale initializers"
    for name, x in ta.items():
        y = tb[name]
        assert (x.dtype, x.shape) == (y.dtype, y.shape), name
        if np.issubdtype(x.dtype, np.floating):
            try:
                np.testing.assert_array_max_ulp(x, y, maxulp=4)
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from exc
        else:
            assert np.array_equal(x, y), name


def test_the_shipped_graph_is_a_fresh_export_of_the_shipped_model(tmp_path):
    """The wheel's CPU graph is what `spade-rt export` makes of the shipped model now (the same graph, weights
    up to the CPU's float rounding); its record names the model's and the graph's SHA-256 and the options; its
    spec is the model's."""
    shipped = dm.shipped_graph_for()
    assert shipped is not None and shipped.name == "landscape_demo-dedup.onnx"
    fresh = tmp_path / "fresh.onnx"
    _export(dm.demo_model(), fresh, dm.SHIPPED)
    try:
        same_graph_up_to_float_rounding(fresh, shipped)
    except AssertionError as exc:
        raise AssertionError(f"stale shipped graph ({exc}): python -m spade_rt.demo_model --refresh") from exc
    record = json.loads((shipped.parent / "landscape_demo-dedup.json").read_text())
    assert record == {
        "model_sha256": sha256_file(dm.demo_model()),
        "graph_sha256": sha256_file(shipped),
        "options": {"graph": "dedup", "batch": [1, 1, 8]},
    }
    kind, spec = peek_spec(shipped)
    _, model_spec = peek_spec(dm.demo_model())
    assert kind == "onnx" and spec.labels == model_spec.labels and spec.preset == model_spec.preset
    assert (spec.min_batch, spec.max_batch) == (1, 8) and spec.extra["graph_options"]["graph"] == "dedup"


def test_a_damaged_or_foreign_shipped_graph_is_never_used(tmp_path, monkeypatch):
    """The shipped graph is used only while its bytes, its model's bytes and the options match the record."""
    assets = tmp_path / "spade_rt"
    (assets / "assets").mkdir(parents=True)
    for name in (dm.DEMO_MODEL, dm.SHIPPED_GRAPH, dm.SHIPPED_RECORD):
        shutil.copyfile(dm._asset(name), assets / name)
    monkeypatch.setattr(dm, "_asset", lambda name: assets / name)
    assert dm.shipped_graph_for() == assets / dm.SHIPPED_GRAPH
    assert dm.shipped_graph_for(request=dm.GraphRequest("static", (1, 1, 8))) is None
    assert dm.shipped_graph_for(request=dm.GraphRequest("dedup", (1, 1, 1))) is None
    assert dm.shipped_graph_for("0" * 64) is None  # another model's content
    graph = assets / dm.SHIPPED_GRAPH
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 1  # one bit of one weight
    graph.write_bytes(bytes(data))
    assert dm.shipped_graph_for() is None


@pytest.mark.slow
def test_the_cache_is_keyed_by_the_models_content_and_the_graph_options(tmp_path):
    """One entry per (model content, options): the same model again is a hit (nothing exported), a changed model
    under the same name and other options are new entries; each entry equals a plain `spade-rt export`."""
    model = tiny_model(tmp_path, "facades", size=64)
    cache = tmp_path / "cache"
    request = dm.GraphRequest("dedup", (1, 1, 2))
    first = dm.exported_graph(model, request, cache)
    assert first.parent == cache / "built" and sha256_file(model)[:16] in first.name and "dedup-b1-1-2" in first.name
    made = first.stat().st_mtime_ns
    assert dm.exported_graph(model, request, cache) == first and first.stat().st_mtime_ns == made
    reference = tmp_path / "reference.onnx"
    _export(model, reference, request)
    assert first.read_bytes() == reference.read_bytes()
    assert dm.GraphRequest("static", (1, 1, 2)).key != request.key != dm.GraphRequest("dedup", (1, 1, 8)).key
    changed = tiny_model(tmp_path, "facades", size=64, seed=1)  # same path, other weights
    assert changed == model
    again = dm.exported_graph(changed, request, cache)
    assert again != first and sha256_file(changed)[:16] in again.name
    assert not list((cache / "built").glob("*.tmp"))


@pytest.mark.slow
def test_a_wheel_without_torch_runs_demo_serve_and_web(tmp_path):
    """`pip wheel --no-deps`, then a fresh venv with `pip install 'WHEEL[ort]'`: demo writes the picture the full
    install writes (from the graph in the wheel; the cache stays empty) and web writes a site; with the server
    stack (`[ort,serve]`: starlette and uvicorn are serve's own extra) `spade-rt serve` answers /healthz."""
    wheels = tmp_path / "wheels"
    with building_from_the_checkout():
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT), "-w",
             str(wheels)], check=True, timeout=600,
        )  # fmt: skip
    (wheel,) = wheels.glob("spade_rt-*.whl")
    size_mb = wheel.stat().st_size / 1e6
    assert size_mb < 40, f"the wheel is {size_mb:.1f} MB"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py, cli = venv / "bin" / "python", venv / "bin" / "spade-rt"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{wheel}[ort]"], check=True, timeout=900)
    assert subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode != 0  # really absent
    env = {**os.environ, "SPADE_RT_CACHE": str(tmp_path / "cache")}
    env.pop("SPADE_RT_ORT_WEB", None)

    def spade_rt(*argv: str, exe: list[str] | None = None) -> subprocess.CompletedProcess:
        run = subprocess.run([*(exe or [str(cli)]), *argv], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run

    spade_rt("demo", "-o", "wheel.png", "--count", "3", "--seed", "7")
    spade_rt("demo", "-o", "full.png", "--count", "3", "--seed", "7", exe=[sys.executable, "-m", "spade_rt.cli"])
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "wheel.png")), np.asarray(Image.open(tmp_path / "full.png"))
    )
    assert not (tmp_path / "cache").exists()  # the graph in the wheel ran: nothing exported
    dist = ort_web_dist(optional=True)
    if dist is not None:
        spade_rt("web", "-o", "site", "--wasm-only", "--ort-web", str(dist))
        assert (tmp_path / "site" / "graph.onnx").read_bytes() == dm.shipped_graph_for().read_bytes()
        assert {"index.html", "model.json", "_headers"} <= {p.name for p in (tmp_path / "site").iterdir()}
    subprocess.run([*pip, f"{wheel}[ort,serve]"], check=True, timeout=900)
    assert subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode != 0
    server = subprocess.Popen(
        [str(cli), "serve", "--port", "0", "--no-warm-up"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        for line in server.stderr:  # bounded: the server prints its address or exits
            lines.append(line)
            if m := URL_LINE.search(line):
                break
        assert m, "".join(lines)
        for _ in range(100):
            try:
                r = httpx.get(f"{m.group(1)}/healthz", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert r.status_code == 200, r.text
        info = httpx.get(f"{m.group(1)}/v1/model", timeout=5).json()
        assert info["graph"] == "dedup" and info["backend"] == "onnxruntime", info
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    print(f"wheel {wheel.name}: {size_mb:.1f} MB")
