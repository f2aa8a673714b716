"""`spade-rt serve`: the live painter in the browser and an HTTP API, for any model the runtime opens."""

from __future__ import annotations

import argparse
import importlib.util
import logging

from spade_rt.commands.common import parse_bytes
from spade_rt.errors import BackendUnavailableError
from spade_rt.runtime.registry import backend_names
from spade_rt.serve.settings import ServeSettings

log = logging.getLogger("spade_rt")

SERVE_INSTALL = "pip install 'spade-rt[serve]'"
# The graph the demo model offers browsers: onnxruntime-web's WASM runs the dedup graph fastest (measured in
# headless Chromium, docs/serving.md "Browser mode"); any other model offers the graph it serves, or
# --browser-graph.
BROWSER_GRAPH = "dedup"


def run(args: argparse.Namespace) -> int:
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailableError(f"`spade-rt serve` needs {', '.join(missing)}: {SERVE_INSTALL}")
    from spade_rt.serve.server import bind

    settings = ServeSettings(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_queue=args.max_queue,
        allow_origins=tuple(args.allow_origin),
        allow_hosts=tuple(args.allow_host),
        max_body_bytes=args.max_body,
        max_map_pixels=args.max_map_pixels,
        max_decodes=args.max_decodes,
        max_connections=args.max_connections,
        max_painters=args.max_painters,
        max_head_bytes=args.max_head,
        idle_timeout_s=args.idle_timeout,
        read_timeout_s=args.read_timeout,
        graceful_timeout_s=args.graceful_timeout,
        access_log=args.access_log,
        warm_up=not args.no_warm_up,
    ).validate()
    sock = bind(settings.host, settings.port)  # first: a taken port fails before a model is loaded
    try:
        return _serve_on(sock, args, settings)
    finally:
        sock.close()


def _serve_on(sock, args: argparse.Namespace, settings) -> int:
    from pathlib import Path

    from spade_rt.runtime.model_kind import model_kind
    from spade_rt.runtime.synthesizer import Synthesizer
    from spade_rt.serve.app import create_app
    from spade_rt.serve.server import run_server
    from spade_rt.serve.settings import effective_max_batch
    from spade_rt.serve.web_runtime import find_runtime

    runtime = find_runtime(args.ort_web)  # first: a wrong --ort-web fails before a model is loaded
    browser_graph = Path(args.browser_graph) if args.browser_graph else None
    if args.model is None:  # the embedded demo model, exactly as `spade-rt demo` runs it
        from spade_rt.demo_model import DEMO_NAME, demo_graph

        source = demo_graph(cache_dir=args.cache_dir, purpose="serve")  # shipped, or exported in a child process
        name = DEMO_NAME
        if browser_graph is None and runtime.available:  # WASM's fastest exact graph (docs/serving.md)
            browser_graph = demo_graph(BROWSER_GRAPH, args.cache_dir, purpose="serve")
    else:
        source, name = Path(args.model), Path(args.model).name
    kind = model_kind(source)
    if browser_graph is None and kind == "onnx":
        browser_graph = source  # the served graph runs unchanged in onnxruntime-web
    if not args.verbose:
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    with Synthesizer(source, backend=args.backend, **server_backend_options(source, kind, args.backend)) as synth:
        spec = synth.spec
        on_gpu = getattr(synth.backend, "on_gpu", kind == "engine")  # engines run on GPUs; torch/OpenVINO here: CPU
        max_batch = effective_max_batch(settings.max_batch, spec.max_batch, spec.min_batch, on_gpu=on_gpu)
        browser = browser_offer(runtime, browser_graph, spec, kind, served=browser_graph == source)
        app, state = create_app(synth, settings, max_batch, name, kind, browser)
        log.info(
            "serving %s (%s, %s %dx%d, %d classes) with %s; batches of up to %d, %g ms max delay",
            name,
            kind,
            spec.preset,
            spec.labels.height,
            spec.labels.width,
            spec.labels.num_label_ids,
            synth.backend.name,
            max_batch,
            settings.max_delay_ms,
        )
        if browser.available:
            log.info("browser mode: %s graph, %s from %s", browser.graph_kind, runtime.describe(), runtime.folder)
        else:
            log.info("browser mode unavailable: %s", browser.describe()["reason"])
        run_server(app, state, settings, sock)
    return 0


def browser_offer(runtime, graph, spec, kind: str, *, served: bool = False):
    """What the painter's browser mode gets: onnxruntime-web's files and one graph checked against the model
    (``served``: the graph is the one being served: its spec is the model's)."""
    from spade_rt.serve.web_runtime import BrowserOffer, check_browser_graph

    if graph is None:
        reason = (
            f"serving a {'TensorRT engine' if kind == 'engine' else 'spade-rt model'}: browsers run ONNX graphs; "
            "give one with --browser-graph (spade-rt export MODEL -o G.onnx --graph dedup)"
        )
        return BrowserOffer(runtime, None, reason=reason)
    if served:
        return BrowserOffer(runtime, graph, (spec.extra.get("graph_options") or {}).get("graph"))
    return BrowserOffer(runtime, graph, check_browser_graph(graph, spec))


def server_backend_options(source, kind: str, backend: str) -> dict:
    """Backend options for a long-running server (docs/serving.md, "Measured"). ONNX Runtime on CPUs: no memory
    arena (it keeps the largest activations of every batch size it has seen: 480 MB resident after batches of
    8 on the demo graph, against 216 MB without it, for a per-picture time within noise), and threads that
    sleep when idle instead of spinning (a server shares its cores with its clients and the painter's browser:
    its compute per frame halved in the browser test)."""
    from spade_rt.runtime.registry import auto_backend

    name = auto_backend(kind, source).name if backend == "auto" else backend  # the pick `auto` makes, options aside
    if name != "onnxruntime":
        return {}
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return {}
    return {"memory_arena": False, "spinning": False}


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="live painter in the browser + HTTP API (batched), for any model",
        description="Serve a model over HTTP on this machine (127.0.0.1 by default). Open the printed address in "
        "a browser to paint label maps and watch the picture follow, or call the API:\n\n"
        "  curl -s --data-binary @labels.png -H 'Content-Type: image/png' \\\n"
        "      'http://127.0.0.1:8000/v1/synthesize?seed=3' -o picture.png\n"
        "  curl -s -F labels=@labels.png -F instance=@inst.png -F format=jpeg \\\n"
        "      http://127.0.0.1:8000/v1/synthesize -o picture.jpg\n"
        "  curl -s http://127.0.0.1:8000/v1/model      # preset, classes (names, colours), size, backend\n"
        "  curl -s http://127.0.0.1:8000/metrics       # Prometheus: requests, errors, latency, batch sizes\n\n"
        "Concurrent requests are batched (up to --max-batch per backend call, waiting at most --max-delay-ms "
        "for companions). Bad input gets a 4xx JSON error naming what was wrong. SIGINT/SIGTERM finish the "
        "requests in flight, then stop. Without MODEL the embedded demo model is served (exported to an ONNX "
        "graph in the cache on first use, as `spade-rt demo` does).",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="spade-rt model, ONNX graph or engine (kind read from the content); default: the embedded demo model",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port, printed)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", *backend_names()),
        help="default: by file kind (spade-rt model: torch, ONNX graph: onnxruntime, engine: tensorrt)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        metavar="N",
        help="pictures per backend call (default on GPUs: the graph's or engine's maximum batch, else 8; on CPUs 1, "
        "measured faster: docs/serving.md; 1: no batching)",
    )
    p.add_argument(
        "--max-delay-ms",
        type=float,
        default=2.0,
        metavar="MS",
        help="how long a request waits for others to share its batch when the backend is idle (default 2)",
    )
    p.add_argument(
        "--max-queue", type=int, default=64, metavar="N", help="pictures waiting at most; more get 503 (default 64)"
    )
    d = ServeSettings()
    trust = p.add_argument_group(
        "who may use it (docs/serving.md, threat model)",
        "Browsers may POST and open painters only from pages this server served; requests without an Origin "
        "(curl, SDKs) are not browser pages and pass. Every request's Host must name the bound address or a "
        "loopback name (DNS rebinding).",
    )
    trust.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="another origin whose pages may use the API and the painter, as the browser sends it, e.g. "
        "http://tools.example:3000 (repeatable; * for any: then any web page you visit can use it)",
    )
    trust.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name clients reach this server by (a reverse proxy's, a LAN name; repeatable; * for any)",
    )
    limits = p.add_argument_group("limits (each refusal is a JSON error; docs/serving.md lists them all)")
    limits.add_argument(
        "--max-body",
        type=parse_bytes,
        default=d.max_body_bytes,
        metavar="SIZE",
        help=f"largest request body (default {d.max_body_bytes >> 20}M)",
    )
    limits.add_argument(
        "--max-map-pixels",
        type=int,
        default=d.max_map_pixels,
        metavar="PX",
        help="largest map sent with resize=true, read from its PNG header before decoding (default 2048*1024); "
        "without resize a map must have the model's size",
    )
    limits.add_argument(
        "--max-decodes",
        type=int,
        default=d.max_decodes,
        metavar="N",
        help=f"PNG decodes at once; others wait (default {d.max_decodes})",
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        metavar="N",
        help=f"open connections of every kind (HTTP, idle, painters); more get 503 (default {d.max_connections})",
    )
    limits.add_argument(
        "--max-painters",
        type=int,
        default=d.max_painters,
        metavar="N",
        help=f"painter WebSockets open at once; more are refused with 503 (default {d.max_painters})",
    )
    limits.add_argument(
        "--max-head",
        type=parse_bytes,
        default=d.max_head_bytes,
        metavar="SIZE",
        help=f"largest request line + headers (default {d.max_head_bytes >> 10}K)",
    )
    limits.add_argument(
        "--idle-timeout",
        type=float,
        default=d.idle_timeout_s,
        metavar="S",
        help="seconds a connection may take to send a complete request head, after opening or after its last "
        f"response; then it is closed (default {d.idle_timeout_s:g})",
    )
    limits.add_argument(
        "--read-timeout",
        type=float,
        default=d.read_timeout_s,
        metavar="S",
        help=f"seconds a request body may pause; then 408 (default {d.read_timeout_s:g})",
    )
    p.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="on SIGINT/SIGTERM, seconds the requests in flight get to finish (default 30)",
    )
    p.add_argument(
        "--no-warm-up",
        action="store_true",
        help="start serving at once instead of running one picture and two largest batches first",
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
    web = p.add_argument_group(
        "the painter's browser mode (docs/serving.md, Browser mode)",
        "The painter can compute in the browser itself with onnxruntime-web (WebGPU or WASM): the server then "
        "only serves files. onnxruntime-web is installed by `npm ci --prefix web` in the checkout.",
    )
    web.add_argument(
        "--browser-graph",
        metavar="G.onnx",
        help="the ONNX graph browsers run (default: the served graph; the demo model: its dedup graph)",
    )
    web.add_argument(
        "--ort-web",
        metavar="DIR",
        help="onnxruntime-web's dist/ folder (default: $SPADE_RT_ORT_WEB, else the checkout's "
        "web/node_modules/onnxruntime-web/dist/); off: no browser mode",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where the exported demo graph is kept: DIR/built/ (default: $SPADE_RT_CACHE, else ~/.cache/spade-rt)",
    )
    p.set_defaults(func=run)
