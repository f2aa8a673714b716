"""`spade-rt serve`: the live painter in the browser and an HTTP API, for any model the runtime opens."""

from __future__ import annotations

import argparse
import importlib.util
import logging

from spade_rt.commands.common import add_backend_argument, add_cache_dir_argument, add_tier_argument, parse_bytes
from spade_rt.errors import BackendUnavailableError
from spade_rt.serve.settings import ServeSettings, field_type, options, shown

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

    settings = settings_from_args(args).validate()
    sock = bind(settings.host, settings.port)  # first: a taken port fails before a model is loaded
    try:
        return _serve_on(sock, args, settings)
    finally:
        sock.close()


def _serve_on(sock, args: argparse.Namespace, settings) -> int:
    from pathlib import Path

    from spade_rt.runtime.model_kind import model_kind
    from spade_rt.runtime.synthesizer import Synthesizer
    from spade_rt.runtime.tiers import check_tier_choice
    from spade_rt.serve.app import ServeApp, create_app
    from spade_rt.serve.server import run_server
    from spade_rt.serve.settings import effective_max_batch
    from spade_rt.serve.web_runtime import find_runtime

    check_tier_choice(getattr(args, "tier", "auto"))  # first, with --ort-web: before a model is loaded
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
    tier = getattr(args, "tier", "auto")  # spade_rt.runtime.tiers
    # server=True: the backend `auto` (or --backend) picks gets its own long-running-server settings
    # (spade_rt.runtime.backend_options: ONNX Runtime on CPUs, no memory arena and no spinning; docs/serving.md)
    with Synthesizer(source, backend=args.backend, tier=tier, server=True) as synth:
        spec = synth.spec
        on_gpu = getattr(synth.backend, "on_gpu", kind == "engine")  # engines run on GPUs; torch/OpenVINO here: CPU
        max_batch = effective_max_batch(settings.max_batch, spec.max_batch, spec.min_batch, on_gpu=on_gpu)
        browser = browser_offer(runtime, browser_graph, spec, kind, served=browser_graph == source)
        app, state = create_app(ServeApp(synth, settings, max_batch, name, kind, browser))
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


DESCRIPTION = (
    "Serve a model over HTTP on this machine (127.0.0.1 by default). Open the printed address in "
    "a browser to paint label maps and watch the picture follow, or call the API:\n\n"
    "  curl -s --data-binary @labels.png -H 'Content-Type: image/png' \\\n"
    "      http://127.0.0.1:8000/v1/synthesize -o picture.png     # VAE models: ?seed=3 picks a style\n"
    "  curl -s -F labels=@labels.png -F instance=@inst.png -F format=jpeg \\\n"
    "      http://127.0.0.1:8000/v1/synthesize -o picture.jpg\n"
    "  curl -s http://127.0.0.1:8000/v1/model      # preset, classes (names, colours), size, backend\n"
    "  curl -s http://127.0.0.1:8000/metrics       # Prometheus: requests, errors, latency, batch sizes\n\n"
    "Concurrent requests are batched (up to --max-batch per backend call, waiting at most --max-delay-ms "
    "for companions). Bad input gets a 4xx JSON error naming what was wrong. SIGINT/SIGTERM finish the "
    "requests in flight, then stop. Without MODEL the embedded demo model is served (exported to an ONNX "
    "graph in the cache on first use, as `spade-rt demo` does)."
)
# The titled groups of --help (spade_rt.serve.settings.GROUPS; "server" flags are listed with the others).
GROUP_TITLES = {
    "trust": (
        "who may use it (docs/serving.md, threat model)",
        "Browsers may POST and open painters only from pages this server served; requests without an Origin "
        "(curl, SDKs) are not browser pages and pass. Every request's Host must name the bound address or a "
        "loopback name (DNS rebinding).",
    ),
    "limits": ("limits (each refusal is a JSON error; docs/serving.md lists them all)", None),
}


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="live painter in the browser + HTTP API (batched), for any model", description=DESCRIPTION
    )
    p.add_argument(
        "model",
        nargs="?",
        help="spade-rt model, ONNX graph or engine (kind read from the content); default: the embedded demo model",
    )
    add_tier_argument(p, "precision tier (GET /v1/model says which)")
    add_backend_argument(p)
    groups = {"server": p, **{name: p.add_argument_group(*titles) for name, titles in GROUP_TITLES.items()}}
    add_settings_arguments(groups)
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
    add_cache_dir_argument(p)
    p.set_defaults(func=run)


def add_settings_arguments(groups: dict) -> None:
    """One flag per ``ServeSettings`` field that has one, all from the table (spade_rt/serve/settings.py): the
    flag, its type, its help with the field's default. ``dest`` is the field name and the default is left out
    of the namespace (``SUPPRESS``), so the dataclass default is the only one (``settings_from_args``)."""
    for f, opt in options():
        if opt.flag is None:
            continue
        kind = field_type(f)
        kw: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": _help(f, opt, kind)}
        if kind is bool:  # a switch says the opposite of the default: --no-warm-up, --access-log
            kw["action"] = "store_false" if f.default else "store_true"
        else:
            kw["metavar"] = opt.metavar
            if kind is tuple:
                kw["action"] = "append"  # repeatable
            else:
                kw["type"] = parse_bytes if opt.unit == "bytes" else kind
        groups[opt.group].add_argument(opt.flag, **kw)


def _help(f, opt, kind: type) -> str:
    if kind in (bool, tuple) or f.default is None:
        return opt.help
    default = shown(f.default, opt.unit)
    return opt.help.format(default=default) if "{default}" in opt.help else f"{opt.help} (default {default})"


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """The flags given (``add_settings_arguments``) over the table's defaults; repeated flags -> tuples."""
    given = {f.name: getattr(args, f.name) for f, _ in options() if hasattr(args, f.name)}
    return ServeSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
