"""The painter's browser mode in a real headless Chromium: onnxruntime-web (WASM) computes in the page.

- `spade-rt serve` in browser mode: strokes, a fill and loaded label PNGs (colour-coded, and ids at a size
  that needs resizing); ``window.spadeRt.last.rgb`` must equal ``Synthesizer`` output (ONNX Runtime in
  Python, an independent runtime) for ``last.ids`` within 1 level, the ids must equal the painter's rules
  replayed and the Python label pipeline, and the server must compute nothing (``spade_rt_pictures_total``
  unchanged, no WebSocket, no /v1/labels or /v1/synthesize request).
- The static site of `spade-rt web`, served by a plain static server with the isolation headers (threads), and
  without them (one thread, and the page says so), paints the same.
- A server without onnxruntime-web still paints in server mode and says why browser mode is unavailable.

Needs chromium + playwright (as tests/test_painter.py) and onnxruntime-web (`npm ci --prefix web`, run by
.ci/run); without them the tests fail unless ``SPADE_RT_SKIP_BROWSER=1``. ``SPADE_RT_RECORD_BROWSER_LATENCY=F``
writes the per-frame latencies (WASM, 1 and 2 threads) to F as JSON (docs/serving.md, "Browser mode").
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from importlib import resources
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
from PIL import Image
from test_painter import CHROMIUM, CHROMIUM_ARGS, H, Painter, W, fill, require_browser, stroke

from spade_rt.bench.serve_load import ServeProcess
from spade_rt.cli import main
from spade_rt.labels import read_label_ids, resize_nearest
from spade_rt.palettes import colorize
from spade_rt.procedural import landscape_labels
from spade_rt.runtime.synthesizer import Synthesizer
from spade_rt.serve.web_runtime import WASM_FILES, find_runtime

from conftest import require_tools
from serve_support import demo_graph_path, metric

MOUNTAIN, SEA, SKY, TREE = 2, 7, 0, 4
LAST = """() => { const l = window.spadeRt.last;
  return {ids: Array.from(l.ids), rgb: Array.from(l.rgb), width: l.width, height: l.height,
          runtime: l.runtime, backend: l.backend, ms: l.ms}; }"""


def require_runtime() -> None:
    require_browser()
    try:
        runtime = find_runtime()
    except Exception as exc:  # a wrong $SPADE_RT_ORT_WEB
        pytest.fail(str(exc))
    require_tools([] if runtime.available else [runtime.reason], "browser mode needs onnxruntime-web:",
                  "SPADE_RT_SKIP_BROWSER")  # fmt: skip


def last_frame(page) -> dict:
    last = page.evaluate(LAST)
    assert (last["height"], last["width"]) == (H, W)
    last["ids"] = np.array(last["ids"], np.uint8).reshape(H, W)
    last["rgb"] = np.array(last["rgb"], np.uint8).reshape(H, W, 3)
    return last


def assert_models_picture(last: dict, synth: Synthesizer) -> None:
    """The page's picture is the Python runtime's for the same ids, within 1 level (float rounding)."""
    want = synth(last["ids"])
    diff = np.abs(want.astype(np.int16) - last["rgb"])
    assert diff.max() <= 1, (int(diff.max()), int((diff > 1).sum()))


@pytest.fixture(scope="module")
def browser():
    require_runtime()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def synth():
    with Synthesizer(demo_graph_path()) as s:
        yield s


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 760})
    errors, requests = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: requests.append(r.url))
    return page, errors, requests


def test_browser_mode_computes_in_the_page_and_the_server_computes_nothing(browser, synth, tmp_path):
    with ServeProcess() as server:
        info = httpx.get(f"{server.url}/v1/model").json()
        assert info["browser"]["available"] and info["browser"]["graph"] == "dedup", info["browser"]
        head = httpx.get(f"{server.url}/")
        assert head.headers["cross-origin-opener-policy"] == "same-origin"
        assert head.headers["cross-origin-embedder-policy"] == "require-corp"
        wasm = httpx.get(f"{server.url}/ort/{WASM_FILES[2]}")
        assert wasm.headers["content-type"] == "application/wasm"
        assert wasm.content == (find_runtime().files[WASM_FILES[2]]).read_bytes()
        assert httpx.get(f"{server.url}/ort/package.json").status_code == 404  # only the runtime's own files
        assert httpx.get(f"{server.url}/v1/graph").content == demo_graph_path().read_bytes()
        pictures = metric(httpx.get(f"{server.url}/metrics").text, "spade_rt_pictures_total")

        page, errors, requests = open_page(browser, server.url)
        p = Painter(page, f"{server.url}/?runtime=browser")
        assert page.evaluate("crossOriginIsolated") is True
        threads = page.evaluate("Math.min(4, navigator.hardwareConcurrency || 1)")
        note = page.inner_text("#runtime-note")
        assert f"WASM, {threads} thread" in note and "not cross-origin isolated" not in note, note
        assert page.input_value("#runtime") == "browser"
        last = last_frame(page)
        assert last["runtime"] == "browser" and last["backend"] == "wasm" and last["ms"] > 0
        np.testing.assert_array_equal(last["ids"], landscape_labels(H, W, 0))  # the first scene
        assert_models_picture(last, synth)

        n = p.frames()
        p.pick(SKY)
        page.click("#clear")
        want = np.full((H, W), SKY, np.uint8)
        p.pick(MOUNTAIN)
        p.brush(5)
        p.stroke([(0, 80), (64, 60), (127, 85)])
        stroke(want, [(0, 80), (64, 60), (127, 85)], 5, MOUNTAIN)
        p.pick(SEA)
        p.fill(5, 120)
        fill(want, 5, 120, SEA)
        p.wait(after=n)
        last = last_frame(page)
        np.testing.assert_array_equal(last["ids"], want)  # the id buffer is what was synthesized
        assert_models_picture(last, synth)
        assert page.get_attribute("#picture", "data-frame") == str(p.frames())
        assert "in this browser (WASM" in page.inner_text("#latency")

        # label PNGs, decoded in the page: colours at twice the size, and ids at a size that needs resizing
        scene = landscape_labels(H, W, 5)
        Image.fromarray(colorize(np.kron(scene, np.ones((2, 2), np.uint8)), "landscape")).save(tmp_path / "c.png")
        ids_png = tmp_path / "ids.png"
        Image.fromarray(landscape_labels(150, 211, 9)).save(ids_png)
        for png, expected in (
            (tmp_path / "c.png", scene),
            (ids_png, resize_nearest(read_label_ids(ids_png), H, W)),  # the Python label pipeline
        ):
            n = p.frames()
            page.set_input_files("#load", str(png))
            p.wait(after=n)
            last = last_frame(page)
            np.testing.assert_array_equal(last["ids"], expected)
            assert_models_picture(last, synth)

        # the server computed nothing: no picture, no painter WebSocket, no label decode
        assert metric(httpx.get(f"{server.url}/metrics").text, "spade_rt_pictures_total") == pictures
        assert p.sent == [] and p.received == []
        assert not [u for u in requests if "/ws" in u or "/v1/labels" in u or "/v1/synthesize" in u], requests
        assert errors == [], errors

        # the switch back: the same painter computes on the server again
        n = p.frames()
        page.select_option("#runtime", "server")
        p.wait(after=n)
        last = last_frame(page)
        assert last["runtime"] == "server" and len(p.received) >= 1
        np.testing.assert_array_equal(last["ids"], expected)
        np.testing.assert_array_equal(last["rgb"], synth(expected))  # the server's PNG, decoded in the page
        assert metric(httpx.get(f"{server.url}/metrics").text, "spade_rt_pictures_total") > pictures
        page.close()


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    """A plain static file server, plus the cross-origin isolation headers when ``isolate`` is set."""

    isolate = True
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
    }

    def end_headers(self) -> None:
        if self.isolate:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, *args) -> None:
        pass


class StaticServer:
    def __init__(self, folder: Path, isolate: bool) -> None:
        handler = type("Handler", (IsolatedHandler,), {"isolate": isolate})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=folder))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


FRAME_TIMES = """async (n) => { const S = window.spadeRt.state, B = window.spadeRt.browser, out = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await B.session.run({labels: new B.ort.Tensor("uint8", S.ids.slice(), [1, S.H, S.W])});
    out.push(performance.now() - t0);
  }
  return out; }"""


def test_the_static_site_paints_the_same_with_and_without_the_isolation_headers(browser, synth, tmp_path):
    site = tmp_path / "site"
    assert main(["web", "-o", str(site), "-q"]) == 0
    assert (site / "graph.onnx").read_bytes() == demo_graph_path().read_bytes()
    assert "Cross-Origin-Embedder-Policy: require-corp" in (site / "_headers").read_text()
    latency = {}
    for isolate in (True, False):
        with StaticServer(site, isolate) as static:
            for threads in (2, 1) if isolate else (None,):
                query = "" if threads is None else f"?threads={threads}"
                page, errors, requests = open_page(browser, static.url)
                p = Painter(page, static.url + query)
                assert page.evaluate("crossOriginIsolated") is isolate
                note = page.inner_text("#runtime-note")
                if isolate:
                    assert f"WASM, {threads} thread" in note and "not cross-origin isolated" not in note, note
                else:  # one thread, and the page says why
                    assert "WASM, 1 thread" in note and "not cross-origin isolated" in note, note
                assert page.is_disabled('#runtime option[value="server"]')
                last = last_frame(page)
                assert last["runtime"] == "browser" and last["backend"] == "wasm"
                np.testing.assert_array_equal(last["ids"], landscape_labels(H, W, 0))
                assert_models_picture(last, synth)
                n = p.frames()
                p.pick(TREE)
                p.brush(6)
                want = landscape_labels(H, W, 0)
                p.stroke([(20, 100), (24, 92), (60, 90)])
                stroke(want, [(20, 100), (24, 92), (60, 90)], 6, TREE)
                p.wait(after=n)
                last = last_frame(page)
                np.testing.assert_array_equal(last["ids"], want)
                assert_models_picture(last, synth)
                if threads is not None:  # per-frame latency in the page, after the frames above (warm)
                    latency[f"wasm_{threads}_threads_ms"] = page.evaluate(FRAME_TIMES, 8)
                elsewhere = [u for u in requests if not u.startswith((static.url, "blob:", "data:"))]
                assert elsewhere == [], elsewhere  # nothing from elsewhere (blob: the page's own pictures)
                assert errors == [], errors
                page.close()
    summary = {k: {"p50": float(np.median(v)), "min": float(np.min(v)), "n": len(v)} for k, v in latency.items()}
    print(f"\nbrowser mode, per frame: {json.dumps(summary)}")
    out = os.environ.get("SPADE_RT_RECORD_BROWSER_LATENCY")
    if out:
        Path(out).write_text(json.dumps({"summary": summary, "samples_ms": latency}, indent=1))


def test_without_onnxruntime_web_the_painter_paints_on_the_server_and_says_why(browser, synth):
    env = {**os.environ, "SPADE_RT_ORT_WEB": "off"}
    with ServeProcess(env=env) as server:
        offer = httpx.get(f"{server.url}/v1/model").json()["browser"]
        assert offer["available"] is False and "off" in offer["reason"]
        assert httpx.get(f"{server.url}/ort/{WASM_FILES[0]}").status_code == 404
        page, errors, _ = open_page(browser, server.url)
        p = Painter(page, f"{server.url}/?runtime=browser")  # asked for, unavailable: server mode
        assert page.input_value("#runtime") == "server"
        assert page.is_disabled('#runtime option[value="browser"]')
        assert "browser mode unavailable" in page.inner_text("#runtime-note")
        last = last_frame(page)
        assert last["runtime"] == "server" and len(p.received) >= 1
        np.testing.assert_array_equal(last["rgb"], synth(last["ids"]))
        assert errors == [], errors
        page.close()


def test_spade_rt_web_exports_a_spade_rt_model_to_the_graph_browsers_get(tmp_path, synth):
    """A spade-rt model (here the demo's safetensors) becomes its dedup graph, verified, in the site; no browser."""
    from spade_rt.demo_model import demo_model

    require_runtime()
    site = tmp_path / "site"
    assert main(["web", str(demo_model()), "-o", str(site), "--wasm-only", "-q"]) == 0
    info = json.loads((site / "model.json").read_text())
    assert info["browser"]["graph"] == "dedup" and info["browser"]["webgpu"] is False
    assert sorted(p.name for p in (site / "ort").iterdir()) == sorted(WASM_FILES)
    ids = landscape_labels(H, W, 3)
    with Synthesizer(site / "graph.onnx") as exported:
        np.testing.assert_array_equal(exported(ids), synth(ids))


def test_a_served_graph_is_offered_to_browsers_and_a_foreign_browser_graph_is_refused(tmp_path):
    """MODEL an ONNX graph: browsers get that graph; --browser-graph must take the served model's maps."""
    from serve_support import tiny_graph

    require_runtime()
    coco = tiny_graph(tmp_path, "coco", batch="1:1:2")
    ade = tiny_graph(tmp_path, "ade20k", batch="1:1:2")
    with ServeProcess(coco, "--no-warm-up") as server:
        offer = httpx.get(f"{server.url}/v1/model").json()["browser"]
        assert offer["available"] and offer["graph"] == "static" and offer["graph_bytes"] == coco.stat().st_size
        assert httpx.get(f"{server.url}/v1/graph").content == coco.read_bytes()
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "spade_rt.cli", "serve", str(coco), "--browser-graph", str(ade), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "--browser-graph" in lines[0] and "151 ids" in lines[0] and "64x64 of 183" in lines[0], lines[0]


def test_the_page_shows_the_models_tier_and_takes_its_seed_range_from_the_model_description(browser, tmp_path):
    """/v1/model (model.json on a static site) may name a precision tier and a seed range; the page shows the
    tier and bounds its seed box by the range, and without them shows no tier and keeps 0..2^32-1."""
    site = tmp_path / "site"
    assert main(["web", "-o", str(site), "-q"]) == 0
    modules = {p.name for p in (site / "static").iterdir()}
    shipped = {p.name for p in Path(str(resources.files("spade_rt.serve").joinpath("static"))).glob("*.js")}
    assert shipped <= modules and "png.js" in modules, modules  # every ES module the page imports
    plain = json.loads((site / "model.json").read_text())
    for extra, tier, top in (
        (None, None, "4294967295"),
        ({"tier": "int8", "seed": {"min": 0, "max": 1000}}, "int8", "1000"),
    ):
        (site / "model.json").write_text(json.dumps({**plain, **(extra or {})}))
        with StaticServer(site, True) as static:
            page, errors, _ = open_page(browser, static.url)
            page.goto(static.url)
            page.wait_for_function("!document.getElementById('model-info').textContent.startsWith('loading')")
            info = page.inner_text("#model-info")
            assert (f"tier {tier}" in info) if tier else ("tier" not in info), info
            assert page.get_attribute("#seed", "max") == top
            assert errors == [], errors
            page.close()
