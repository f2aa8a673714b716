"""`spade-rt build`: ONNX graph (or model + recipe) -> TensorRT / TensorRT-RTX engine + manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from spade_rt.commands.common import add_cache_dir_argument, parse_bytes, require_toolchain
from spade_rt.errors import InputError
from spade_rt.validation import CLI, check_model_output, check_recipe_preset


def run(args: argparse.Namespace) -> int:
    from spade_rt.engines.recipes import get_recipe

    recipe = get_recipe(args.recipe) if args.recipe else None  # an unknown name lists the recipes, before all else
    require_toolchain("build", ("onnx",))
    from spade_rt.cache import built_dir
    from spade_rt.io_utils import check_output_file
    from spade_rt.runtime.model_kind import model_kind
    from spade_rt.runtime.spec import manifest_path

    built = built_dir(args.cache_dir)
    source = Path(args.input)
    if args.destination:  # before anything else: the suffix and the folder of -o
        check_model_output(args.destination, "engine", "destination", CLI)
    kind = model_kind(source)
    if kind == "engine":
        raise InputError(f"{source} is already an engine: build takes an ONNX graph or a spade-rt model")
    destination = args.destination or (recipe.engine_path(built) if recipe else built / f"{source.stem}.engine")
    check_output_file(destination, "-o" if args.destination else "engine")  # before any export or build
    check_output_file(manifest_path(destination), "manifest")
    if kind == "native":  # export first, with the recipe's options
        if recipe is None:
            raise InputError("building from a spade-rt model needs --recipe (e.g. ade20k-256-fp16); or export first")
        from spade_rt.model.header import model_config  # torch-free: the preset before torch is imported

        check_recipe_preset(recipe.name, recipe.preset, source, model_config(source).preset)
        require_toolchain("build")
        from spade_rt.export.exporter import export_model
        from spade_rt.export.onnx_graph import GraphOptions

        source = recipe.onnx_path(built)
        export_model(args.input, source, GraphOptions(recipe.precision, recipe.output, recipe.batch, recipe.size))
    elif recipe is not None:
        raise InputError("--recipe applies to spade-rt models; an ONNX graph already fixes its options")
    from spade_rt.engines.build import build_engine  # onnx and TensorRT: after every check

    build_engine(
        source,
        destination,
        backend=args.backend,
        workspace=args.workspace,
        compute_capabilities=args.compute_capability,
        timing_cache=args.timing_cache,
        progress=not args.quiet,
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "build",
        help="ONNX graph -> TensorRT / TensorRT-RTX engine + manifest",
        description="Build an engine from a graph written by `spade-rt export`. Profiles come from the graph's batch "
        "(and size) range. TensorRT-RTX builds ahead of time on any machine, GPU or not; full TensorRT builds on "
        "and for the GPU it runs on. OUT.engine.json records IO, precision, builder version, GPU targets, hashes.",
    )
    p.add_argument("input", help="graph from `spade-rt export` (fp16 for speed), or a spade-rt model with --recipe")
    p.add_argument(
        "-o",
        dest="destination",
        metavar="OUT.engine",
        help="engine to write (default: NAME.engine in the cache's built/ folder, see --cache-dir)",
    )
    add_cache_dir_argument(p, "recipe graphs and engines without -o go")
    from spade_rt.engines.recipes import load_recipes  # torch-free: engines/recipes.json

    p.add_argument(
        "--recipe",
        help="export + build options of engines/recipes.json, for a spade-rt model input: one of "
        + ", ".join(load_recipes()),
    )
    p.add_argument(
        "--backend",
        choices=("auto", "tensorrt", "tensorrt-rtx"),
        default="auto",
        help="auto: full TensorRT if installed, else TensorRT-RTX",
    )
    p.add_argument("--workspace", type=parse_bytes, metavar="SIZE", help="builder workspace limit, e.g. 4G")
    p.add_argument(
        "--compute-capability",
        nargs="+",
        metavar="CC",
        help="TensorRT-RTX targets, e.g. 7.5 8.6 8.9 12.0 (default: 8.0 8.6 8.9 12.0 and later)",
    )
    p.add_argument(
        "--timing-cache",
        metavar="FILE",
        help="full TensorRT: the tactic timing cache to reuse and update (default: timing.cache beside the "
        "engine). TensorRT-RTX has none: it times no kernels when building, it compiles them on the GPU at the "
        "first run and keeps them in ENGINE.rtxcache",
    )
    p.set_defaults(func=run)
