"""`spade-rt demo`: the embedded landscape model on fresh procedural scenes, through the runtime.

The model ships in the package (spade_rt/assets/landscape_demo.safetensors, trained by
`spade-rt train --preset landscape ...`, see docs/training.md). The default path exports it once to the
fastest exact ONNX graph for the machine (dedup on CPUs, static where ONNX Runtime has CUDA) in the per-user
cache (spade_rt.cache: ~/.cache/spade-rt/built/, or $SPADE_RT_CACHE, or
--cache-dir; needs the toolchain the first time) and runs that graph with ONNX Runtime, torch-free;
`--backend torch` runs the PyTorch network instead.
"""

from __future__ import annotations

import argparse
import logging
import time
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from spade_rt.commands.common import require_toolchain
from spade_rt.errors import ConfigError, ExportError, InputError
from spade_rt.images import PICTURE_SUFFIXES
from spade_rt.io_utils import atomic_path, check_output_dir, check_output_file
from spade_rt.validation import CLI, check_int_option, check_seed

log = logging.getLogger("spade_rt")

ASSET = "assets/landscape_demo.safetensors"


def demo_model() -> Path:
    path = Path(str(resources.files("spade_rt").joinpath(ASSET)))
    if not path.is_file():
        raise InputError(f"the embedded demo model is missing ({path}): reinstall spade-rt")
    return path


def fastest_graph_kind() -> str:
    """The fastest exact graph for this machine's ONNX Runtime: ``dedup`` on CPUs (the demo model: 37 ms vs 88-108
    ms per picture for the static graph on 2 cores, docs/serving.md), ``static`` where the CUDA provider runs it."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "dedup"
    return "static" if "CUDAExecutionProvider" in ort.get_available_providers() else "dedup"


def demo_graph(model: Path, directory: Path, graph_kind: str | None = None, *, in_child: bool = False) -> Path:
    """The exported graph of the demo model (``graph_kind``: static or dedup; default the fastest for this
    machine), made (and verified against the PyTorch network) once, remade when the model is newer.
    ``in_child``: export in a child process, so that a long-running caller (the server) never maps torch."""
    kind = graph_kind or fastest_graph_kind()
    graph = directory / ("landscape-demo.onnx" if kind == "static" else f"landscape-demo-{kind}.onnx")
    if graph.is_file() and graph.stat().st_mtime >= model.stat().st_mtime:
        return graph
    require_toolchain("demo (first run: exporting the demo graph)")
    check_output_dir(directory, "the cache folder (--cache-dir, $SPADE_RT_CACHE)")
    log.info("first run: exporting the demo model to %s (%s graph)", graph, kind)
    if in_child:
        import subprocess
        import sys

        argv = ["export", str(model), "-o", str(graph), "--graph", kind, "--batch", "1:1:8", "--verify-samples", "1"]
        proc = subprocess.run([sys.executable, "-m", "spade_rt.cli", *argv, "-q"], capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise ExportError(f"exporting the demo graph failed: {last}")
        return graph
    from spade_rt.export.exporter import export_model
    from spade_rt.export.onnx_graph import GraphOptions

    export_model(model, graph, GraphOptions(batch=(1, 1, 8), graph=kind), verify_samples=1)
    return graph


def run(args: argparse.Namespace) -> int:
    from spade_rt.cache import built_dir
    from spade_rt.palettes import colorize
    from spade_rt.procedural import landscape_labels
    from spade_rt.runtime.synthesizer import Synthesizer

    out = check_demo_args(args)  # before the first export or run
    model = demo_model()
    source = model if args.backend == "torch" else demo_graph(model, built_dir(args.cache_dir))
    with Synthesizer(source) as synth:
        h, w = synth.spec.labels.height, synth.spec.labels.width
        labels = np.stack([landscape_labels(h, w, args.seed + i) for i in range(args.count)])
        synth(labels[:1])  # warm-up: the first call pays for allocation
        t0 = time.perf_counter()
        pictures = synth(labels)  # (N, H, W, 3) uint8
        ms = (time.perf_counter() - t0) * 1e3 / args.count
    # two rows: the label maps in the landscape palette, then the pictures
    rows = [np.concatenate(list(colorize(labels, "landscape")), axis=1), np.concatenate(list(pictures), axis=1)]
    grid = np.concatenate(rows, axis=0)
    with atomic_path(out) as tmp:
        Image.fromarray(grid).save(tmp, format=Image.registered_extensions()[out.suffix.lower()])
    log.info(
        "wrote %s: %d procedural landscapes (seeds %d..%d) -> %dx%d pictures by the embedded demo model, "
        "%.0f ms per picture with %s",
        out,
        args.count,
        args.seed,
        args.seed + args.count - 1,
        h,
        w,
        ms,
        synth.backend.name,
    )
    return 0


def check_demo_args(args: argparse.Namespace) -> Path:
    """Every argument of `spade-rt demo`, before anything is exported or run; returns the output path."""
    check_int_option("count", args.count, 1, 16, CLI, "a number of scenes")
    check_seed(args.seed, CLI, count=args.count)
    if args.backend == "torch" and args.cache_dir is not None:
        raise ConfigError("--cache-dir keeps the exported demo graph; --backend torch runs the model without one")
    return check_output_file(args.output, "-o", PICTURE_SUFFIXES)


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the embedded landscape model on new procedural scenes (no download)",
        description="Draw procedural landscape label maps, synthesize them with the demo model that ships in the "
        "package, and write one picture: label maps on top, pictures below. The first run exports the model to an "
        "exact ONNX graph in the per-user cache (~/.cache/spade-rt/built/, $SPADE_RT_CACHE or --cache-dir); later "
        "runs use it with ONNX Runtime only.",
    )
    p.add_argument(
        "-o",
        dest="output",
        default="demo.png",
        metavar="OUT.png",
        help="picture to write: .png (default demo.png), .jpg, .webp or .bmp",
    )
    p.add_argument("--seed", type=int, default=0, help="first scene, 0 or more (each seed is a different landscape)")
    p.add_argument("--count", type=int, default=4, help="scenes side by side, 1..16 (default 4)")
    p.add_argument(
        "--backend",
        choices=("onnxruntime", "torch"),
        default="onnxruntime",
        help="onnxruntime: the exported graph (default); torch: the PyTorch network",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where the exported demo graph is kept: DIR/built/ (default: $SPADE_RT_CACHE, else ~/.cache/spade-rt)",
    )
    p.set_defaults(func=run)
