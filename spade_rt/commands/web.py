"""`spade-rt web MODEL -o SITE`: the painter as a static site that computes in the browser only.

SITE holds the painter (``index.html``, ``static/``), the model's classes and size (``model.json``), one ONNX
graph (``graph.onnx``), onnxruntime-web's files (``ort/``, found as `spade-rt serve` finds them:
``spade_rt.serve.web_runtime``), a few procedural scenes for landscape models (``examples.bin``) and a
``_headers`` file with the cross-origin isolation headers (the format of hosts that read one). Any static web
host serves it; with COOP/COEP the WASM runtime runs multithreaded, without them on one thread (the page says
so). docs/serving.md, "Browser mode".
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from spade_rt.commands.common import add_cache_dir_argument
from spade_rt.errors import ConfigError, InputError
from spade_rt.io_utils import atomic_path, atomic_write_bytes, check_output_dir

log = logging.getLogger("spade_rt")

EXAMPLES = 8  # landscape scenes in examples.bin ("new scene" cycles through them)
# the cross-origin isolation headers in the `_headers` format of Netlify and Cloudflare Pages (others: docs/serving.md)
HEADERS = "/*\n  Cross-Origin-Opener-Policy: same-origin\n  Cross-Origin-Embedder-Policy: require-corp\n"


def run(args: argparse.Namespace) -> int:
    from spade_rt.runtime.model_kind import model_kind
    from spade_rt.serve.web_runtime import WASM_FILES, WEBGPU_FILES, find_runtime, graph_spec

    site = check_output_dir(args.output, "-o")
    if site.is_dir() and (site / "index.html").is_file() and not (site / "model.json").is_file():
        raise InputError(f"-o {site}: holds an index.html that `spade-rt web` did not write; expected a new folder")
    model = Path(args.model) if args.model else None
    if model is not None and not model.is_file():
        raise InputError(f"MODEL {model}: no such file; expected an ONNX graph or a spade-rt model")
    kind = model_kind(model) if model is not None else "native"
    if kind == "engine":
        raise InputError(
            f"MODEL {model}: a TensorRT engine runs on NVIDIA GPUs only; give its ONNX graph or the spade-rt model"
        )
    if kind not in ("onnx", "native"):
        raise InputError(f"MODEL {model}: a {kind} file; expected an ONNX graph or a spade-rt model")
    runtime = find_runtime(args.ort_web)
    if not runtime.available:
        raise ConfigError(runtime.reason)
    graph = _graph(model, kind, args)
    spec = graph_spec(graph, "MODEL")
    files = [*WASM_FILES, *(() if args.wasm_only else WEBGPU_FILES)]
    files = [name for name in files if name in runtime.files]

    site.mkdir(parents=True, exist_ok=True)
    _copy(graph, site / "graph.onnx")
    for name in files:
        _copy(runtime.files[name], site / "ort" / name)
    for name in {*WASM_FILES, *WEBGPU_FILES} - set(files):  # a site written before, with other runtime files
        (site / "ort" / name).unlink(missing_ok=True)
    info = _describe(spec, model, graph, runtime, webgpu=all(n in files for n in WEBGPU_FILES))
    if info["examples"]:
        import numpy as np

        from spade_rt.procedural import landscape_labels

        h, w = spec.labels.height, spec.labels.width
        atomic_write_bytes(
            site / "examples.bin", np.stack([landscape_labels(h, w, i) for i in range(EXAMPLES)]).tobytes()
        )
    atomic_write_bytes(site / "model.json", (json.dumps(info, indent=1) + "\n").encode())
    static = _static_dir()
    for path in sorted(static.iterdir()):  # the painter's ES modules and style: what the wheel ships (*.js, *.css)
        if path.suffix in (".js", ".css"):
            _copy(path, site / "static" / path.name)
    html = (static / "index.html").read_text()
    html = html.replace('href="/static/', 'href="static/').replace('src="/static/', 'src="static/')
    html = html.replace("<body>", '<body data-site="static">', 1)
    atomic_write_bytes(site / "index.html", html.encode())
    atomic_write_bytes(site / "_headers", HEADERS.encode())
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    log.info(
        "wrote %s: the painter, %s (%s graph, %.1f MB), %s (%s); %.1f MB in all. Serve it with the headers in "
        "%s/_headers (COOP + COEP: multithreaded WASM; docs/serving.md, Browser mode)",
        site,
        graph.name if model is not None else "the demo model",
        info["browser"]["graph"],
        graph.stat().st_size / 1e6,
        runtime.describe(),
        "WASM + WebGPU" if info["browser"]["webgpu"] else "WASM",
        size / 1e6,
        site,
    )
    return 0


def _static_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("spade_rt.serve").joinpath("static")))


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _graph(model: Path | None, kind: str, args: argparse.Namespace) -> Path:
    """The ONNX graph for the site: the given graph as is; the demo model's graph (shipped on CPUs) or a spade-rt
    model exported, verified, to the graph WASM runs fastest (dedup, docs/serving.md), one picture at a time,
    in the cache (spade_rt.demo_model: keyed by the model's content and the graph options)."""
    if kind == "onnx":
        return model
    from spade_rt.commands.serve import BROWSER_GRAPH
    from spade_rt.demo_model import GraphRequest, demo_graph, exported_graph

    if model is None:
        return demo_graph(BROWSER_GRAPH, args.cache_dir, purpose="web")
    return exported_graph(model, GraphRequest(BROWSER_GRAPH, (1, 1, 1)), args.cache_dir, purpose="web")


def _describe(spec, model: Path | None, graph: Path, runtime, *, webgpu: bool) -> dict:
    """model.json: what /v1/model says about the model, for a site without a server."""
    from spade_rt.serve.inputs import describe_model
    from spade_rt.serve.settings import ServeSettings

    settings = ServeSettings()
    from spade_rt.demo_model import DEMO_NAME

    name = model.name if model is not None else DEMO_NAME
    info = describe_model(spec, model=name, kind="onnx", backend="onnxruntime-web", max_batch=1, settings=settings)
    info.pop("batching")
    info["limits"] = {"max_map_pixels": settings.max_map_pixels}  # label PNGs the page decodes
    info["browser"] = {
        "available": True,
        "reason": None,
        "runtime": runtime.describe(),
        "webgpu": webgpu,
        "graph": (spec.extra.get("graph_options") or {}).get("graph"),
        "graph_bytes": graph.stat().st_size,
    }
    return info


def register(sub) -> None:
    p = sub.add_parser(
        "web",
        help="the painter as a static site that computes in the browser (no server)",
        description="Write a static web site: the painter, the model's graph and onnxruntime-web (WebGPU where the "
        "browser has a GPU adapter, else WASM). Any static host serves it; the pictures are computed on the "
        "visitor's machine. Send the headers in SITE/_headers (Cross-Origin-Opener-Policy: same-origin, "
        "Cross-Origin-Embedder-Policy: require-corp) for multithreaded WASM; without them WASM runs on one "
        "thread and the page says so. onnxruntime-web comes from `npm ci --prefix web` in the checkout.",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="ONNX graph (used as is) or spade-rt model (exported to the dedup graph); default: the demo model",
    )
    p.add_argument("-o", dest="output", required=True, metavar="SITE", help="folder to write the site into")
    p.add_argument(
        "--ort-web",
        metavar="DIR",
        help="onnxruntime-web's dist/ folder (default: $SPADE_RT_ORT_WEB, else the checkout's "
        "web/node_modules/onnxruntime-web/dist/)",
    )
    p.add_argument(
        "--wasm-only", action="store_true", help="leave out the WebGPU runtime files (28 MB): WASM everywhere"
    )
    add_cache_dir_argument(p, "exported graphs are kept")
    p.set_defaults(func=run)
