"""Per-frame latency of the painter's browser mode: onnxruntime-web (WASM) in headless Chromium, per graph and
thread count, against ONNX Runtime in Python on the same graphs (docs/serving.md, "Browser mode").

    python -m spade_rt.bench.browser_latency [--graphs static,dedup] [--threads 1,2] [--rounds 3] [--frames 10]

Each graph becomes a `spade-rt web` site served on 127.0.0.1 with the cross-origin isolation headers; the
rounds interleave graphs and thread counts (a shared machine drifts), each round loads the page, waits for
its first picture, then times ``session.run`` on the painter's map ``--frames`` times. Needs chromium,
playwright and onnxruntime-web (`npm ci --prefix web`). Prints one JSON object.
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
    args = p.parse_args(argv)
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

                    with Synthesizer(servers[kind][1], threads=2) as synth:
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
