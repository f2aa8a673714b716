"""Per-frame latency of the painter's browser mode: onnxruntime-web (WASM) in headless Chromium, per graph and
thread count, against ONNX Runtime in Python on the same graphs (docs/serving.md, "Browser mode").

    python -m spade_rt.bench.browser_latency [--graphs static,dedup] [--threads 1,2] [--rounds 3] [--frames 10]
    python -m spade_rt.bench.browser_latency --stroke [--runs 5] [--compare-tree OLD_CHECKOUT]

Each graph becomes a `spade-rt web` site served on 127.0.0.1 with the cross-origin isolation headers; the
rounds interleave graphs and thread counts (a shared machine drifts), each round loads the page, waits for
its first picture, then times ``session.run`` on the painter's map ``--frames`` times. Needs chromium,
playwright and onnxruntime-web (`npm ci --prefix web`). Prints one JSON object.

``--stroke``: stroke-to-picture in server mode, as tests/test_painter.py measures it: `spade-rt serve` (the
demo model) on 127.0.0.1, a 1280x800 page, 12 strokes per run; mouse-up to the final picture on the page, in
the page's clock. Each run's p50; the figure is the median of ``--runs`` runs. ``--compare-tree DIR``: a
second server from another checkout of spade-rt (PYTHONPATH=DIR: e.g. the painter before a change), the runs
alternating between the two in one browser (a shared machine drifts).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CHROMIUM = os.environ.get("SPADE_RT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
FRAME_TIMES = """async (n) => { const S = window.spadeRt.state, B = window.spadeRt.browser, out = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await B.session.run({labels: new B.ort.Tensor(S.dtype, S.ids.slice(), [1, S.H, S.W])});
    out.push(performance.now() - t0);
  }
  return out; }"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
    }

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, *args) -> None:
        pass


LATENCY_PROBE = """() => {
  window.__shown = [];
  const pic = document.getElementById("picture");
  new MutationObserver(() => window.__shown.push([Number(pic.dataset.frame), performance.now()]))
    .observe(pic, {attributes: true, attributeFilter: ["data-frame"]});
  window.addEventListener("pointerup", () => { window.__up = performance.now(); }, true);
}"""
IDLE = "window.painter && window.painter.state.lastSent > {after} && window.painter.idle()"


def stroke_latency_ms(page, final: int) -> float | None:
    """Mouse-up to the first picture of map ``final`` (or a later one) on the page, in the page's clock, after
    ``LATENCY_PROBE``; 0 when that picture was shown before the mouse came up (nothing was waited for); None
    when no such picture was shown."""
    return page.evaluate(
        f"(() => {{ const e = window.__shown.find(([f, t]) => f >= {final});"
        " return e ? Math.max(0, e[1] - window.__up) : null; })()"
    )


def _stroke_run(browser, url: str, seed: int) -> list[float]:
    """One page, 12 strokes (random class, radius 2-7, 4 points): mouse-up -> final picture, ms each."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(url)
        page.wait_for_function(IDLE.format(after=-1), timeout=120_000)
        page.evaluate(LATENCY_PROBE)
        box = page.locator("#labels").bounding_box()
        side = page.evaluate("window.painter.state.W")
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(12):
            n = page.evaluate("window.painter.state.lastSent")
            page.click(f'.swatch[data-id="{int(rng.integers(0, 10))}"]')
            page.locator("#size").fill(str(int(rng.integers(2, 8))))
            points = [rng.integers(0, side, 2) for _ in range(4)]
            xy = [
                (box["x"] + (x + 0.5) * box["width"] / side, box["y"] + (y + 0.5) * box["height"] / side)
                for x, y in points
            ]
            page.mouse.move(*xy[0])
            page.mouse.down()
            for q in xy[1:]:
                page.mouse.move(*q)
            page.mouse.up()
            page.wait_for_function(IDLE.format(after=n), timeout=120_000)
            final = page.evaluate("window.painter.state.lastSent")
            out.append(float(stroke_latency_ms(page, final)))
        return out
    finally:
        page.close()


def stroke_main(runs: int, compare_tree: str | None) -> int:
    from playwright.sync_api import sync_playwright

    from spade_rt.bench.serve_load import ServeProcess

    trees = {"this tree": None}
    if compare_tree:
        trees[compare_tree] = {**os.environ, "PYTHONPATH": str(Path(compare_tree).resolve())}
    servers = {name: ServeProcess(env=env) for name, env in trees.items()}
    per_run: dict[str, list[float]] = {name: [] for name in trees}
    samples: dict[str, list[float]] = {name: [] for name in trees}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for i in range(runs):
                for name, server in servers.items():  # alternating: the same drift for both
                    ms = _stroke_run(browser, server.url, seed=7 + i)
                    samples[name].extend(ms)
                    per_run[name].append(float(np.median(ms)))
            browser.close()
    finally:
        for server in servers.values():
            server.stop()
    summary = {
        name: {
            "p50_ms_median_of_runs": round(float(np.median(per_run[name])), 1),
            "p50_ms_per_run": [round(v, 1) for v in per_run[name]],
            "p90_ms_all": round(float(np.percentile(samples[name], 90)), 1),
            "n": len(samples[name]),
        }
        for name in trees
    }
    print(json.dumps({"load_average": os.getloadavg(), "cpus": os.cpu_count(), "stroke_to_picture": summary}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    from importlib import resources

    from playwright.sync_api import sync_playwright

    from spade_rt.cli import main as cli
    from spade_rt.runtime.synthesizer import Synthesizer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graphs", default="static,dedup")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--stroke", action="store_true", help="stroke-to-picture in server mode (see above)")
    p.add_argument("--runs", type=int, default=5, help="--stroke: runs of 12 strokes; the median of their p50s")
    p.add_argument("--compare-tree", default=None, help="--stroke: also a server from this checkout, alternating")
    args = p.parse_args(argv)
    if args.stroke:
        return stroke_main(args.runs, args.compare_tree)
    graphs = args.graphs.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        for kind in graphs:
            graph = Path(tmp) / f"demo-{kind}.onnx"  # the demo model, exported and verified
            demo = str(resources.files("spade_rt").joinpath("assets/landscape_demo.safetensors"))
            argv = ["export", demo, "-o", str(graph), "--graph", kind, "--batch", "1:1:1", "--verify-samples", "1"]
            assert cli([*argv, "-q"]) == 0
            site = Path(tmp) / kind
            assert cli(["web", str(graph), "-o", str(site), "--wasm-only", "-q"]) == 0
            httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=site))
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            servers[kind] = (httpd, graph)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for _ in range(args.rounds):
                for kind in graphs:
                    for t in threads:
                        url = f"http://127.0.0.1:{servers[kind][0].server_address[1]}/?threads={t}"
                        page = browser.new_page()
                        page.goto(url)
                        page.wait_for_function("window.spadeRt && window.spadeRt.idle()", timeout=120_000)
                        samples.setdefault(f"wasm {kind} {t} thread(s)", []).extend(
                            page.evaluate(FRAME_TIMES, args.frames)
                        )
                        page.close()
                for kind in graphs:  # the same map on ONNX Runtime in Python, 2 threads
                    from spade_rt.procedural import landscape_labels

                    with Synthesizer(servers[kind][1], backend="onnxruntime", threads=2) as synth:
                        ids = landscape_labels(synth.spec.labels.height, synth.spec.labels.width, 0)
                        synth(ids)
                        for _ in range(args.frames):
                            t0 = time.perf_counter()
                            synth(ids)
                            samples.setdefault(f"python onnxruntime {kind} 2 threads", []).append(
                                (time.perf_counter() - t0) * 1e3
                            )
            browser.close()
        for httpd, _ in servers.values():
            httpd.shutdown()
    summary = {
        k: {"p50_ms": round(float(np.median(v)), 1), "p10_ms": round(float(np.percentile(v, 10)), 1), "n": len(v)}
        for k, v in samples.items()
    }
    print(json.dumps({"load_average": os.getloadavg(), "cpus": os.cpu_count(), "results": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
