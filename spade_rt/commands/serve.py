"""`spade-rt serve`: the live painter in the browser and an HTTP API, for any model the runtime opens."""

from __future__ import annotations

import argparse
import importlib.util
import logging

from spade_rt.commands.common import parse_bytes
from spade_rt.errors import BackendUnavailableError
from spade_rt.runtime.registry import backend_names

log = logging.getLogger("spade_rt")

SERVE_INSTALL = "pip install 'spade-rt[serve]'"


def run(args: argparse.Namespace) -> int:
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailableError(f"`spade-rt serve` needs {', '.join(missing)}: {SERVE_INSTALL}")
    from spade_rt.serve.server import bind
    from spade_rt.serve.settings import ServeSettings

    settings = ServeSettings(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_queue=args.max_queue,
        max_body_bytes=args.max_body,
        max_map_pixels=args.max_map_pixels,
        max_connections=args.max_connections,
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

    if args.model is None:  # the embedded demo model, exactly as `spade-rt demo` runs it
        from spade_rt.cache import built_dir
        from spade_rt.commands.demo import demo_graph, demo_model

        source = demo_graph(demo_model(), built_dir(args.cache_dir))
        name = "landscape demo (embedded)"
    else:
        source, name = Path(args.model), Path(args.model).name
    kind = model_kind(source)
    if not args.verbose:
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    with Synthesizer(source, backend=args.backend) as synth:
        spec = synth.spec
        max_batch = effective_max_batch(settings.max_batch, spec.max_batch, spec.min_batch)
        app, state = create_app(synth, settings, max_batch, name, kind)
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
        run_server(app, state, settings, sock)
    return 0


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
        help="pictures per backend call (default: the graph's or engine's maximum batch, else 8; 1: no batching)",
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
    p.add_argument(
        "--max-body", type=parse_bytes, default=16 << 20, metavar="SIZE", help="largest request body (default 16M)"
    )
    p.add_argument(
        "--max-map-pixels",
        type=int,
        default=4096 * 4096,
        metavar="PX",
        help="largest label/instance map, read from its header before decoding (default 4096*4096)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=64,
        metavar="N",
        help="open connections (HTTP and painters) at most; more get 503 (default 64)",
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
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where the exported demo graph is kept: DIR/built/ (default: $SPADE_RT_CACHE, else ~/.cache/spade-rt)",
    )
    p.set_defaults(func=run)
