"""`spade-rt demo`: the embedded landscape model on fresh procedural scenes, through the runtime.

The model and its graphs live in spade_rt.demo_model: on CPUs the dedup graph that ships in the package
(no export, no toolchain); where ONNX Runtime has CUDA the static graph, exported once into the per-user cache
(~/.cache/spade-rt/built/, $SPADE_RT_CACHE or --cache-dir). The graph runs with ONNX Runtime, torch-free;
`--backend torch` runs the PyTorch network instead.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
from PIL import Image

from spade_rt.commands.common import add_cache_dir_argument
from spade_rt.errors import ConfigError
from spade_rt.images import PICTURE_SUFFIXES
from spade_rt.io_utils import atomic_path, check_output_file
from spade_rt.runtime.registry import backends_for, default_backend, get_backend
from spade_rt.validation import CLI, GRAPH_CHOICES, check_int_option, check_seed

log = logging.getLogger("spade_rt")


def run(args: argparse.Namespace) -> int:
    from spade_rt.demo_model import demo_graph, demo_model
    from spade_rt.palettes import colorize
    from spade_rt.procedural import landscape_labels
    from spade_rt.runtime.synthesizer import Synthesizer

    out = check_demo_args(args)  # before the first export or run
    model = demo_model()
    source = model if _runs_the_model(args.backend) else demo_graph(args.graph, args.cache_dir)
    with Synthesizer(source, backend=args.backend) as synth:
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
    if _runs_the_model(args.backend) and (args.cache_dir is not None or args.graph is not None):
        flag = "--cache-dir" if args.cache_dir is not None else f"--graph {args.graph}"
        raise ConfigError(f"{flag} chooses the demo's ONNX graph; --backend torch runs the model without one")
    return check_output_file(args.output, "-o", PICTURE_SUFFIXES)


# --backend: the registry's backends for the demo's files (its spade-rt model, its ONNX graphs)
DEMO_BACKENDS = backends_for(("native", "onnx"))


def _runs_the_model(backend: str) -> bool:
    """Whether ``backend`` runs the demo's spade-rt model itself rather than one of its ONNX graphs."""
    return "native" in get_backend(backend).kinds


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the embedded landscape model on new procedural scenes (no download)",
        description="Draw procedural landscape label maps, synthesize them with the demo model that ships in the "
        "package, and write one picture: label maps on top, pictures below. On CPUs it runs the exact ONNX graph "
        "that ships in the package; where ONNX Runtime has CUDA the first run exports the static graph into the "
        "per-user cache (~/.cache/spade-rt/built/, $SPADE_RT_CACHE or --cache-dir). ONNX Runtime only, no torch.",
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
        choices=DEMO_BACKENDS,
        default=default_backend("onnx").name,
        help="; ".join(f"{n}: {get_backend(n).summary}" for n in DEMO_BACKENDS)
        + f" (default {default_backend('onnx').name})",
    )
    p.add_argument(
        "--graph",
        choices=GRAPH_CHOICES["graph"],
        help="the exact ONNX graph to run: dedup (ships in the package) or static (exported into the cache once); "
        "default: the fastest for this machine (dedup on CPUs, static where ONNX Runtime has CUDA)",
    )
    add_cache_dir_argument(p)
    p.set_defaults(func=run)
