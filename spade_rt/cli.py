"""``spade-rt``: one command for the whole pipeline.

Runtime subcommands (synthesize, inspect) stay torch-free for ONNX graphs and engines; toolchain
subcommands (convert, info on native models, export, build, train, bench) import torch lazily, inside
their handlers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from spade_rt import __version__
from spade_rt.errors import BackendUnavailableError, InputError, SpadeRtError

log = logging.getLogger("spade_rt")

EPILOG = """\
examples:
  spade-rt convert latest_net_G.pth --preset coco -o coco.safetensors
  spade-rt synthesize coco.safetensors --labels val_label/000000000139.png \\
      --instance val_inst/000000000139.png -o out.png
  spade-rt info coco.safetensors

Run `spade-rt COMMAND --help` for the options of each command.
"""


# ---- convert ---------------------------------------------------------------------------------------------
def _add_model_options(p: argparse.ArgumentParser) -> None:
    """Options that describe a generator; None (unset) means 'from the file or the preset'."""
    g = p.add_argument_group("model options (default: read from the file's shapes, else the preset)")
    g.add_argument("--ngf", type=int, help="generator width (read from the file; given only to check it)")
    g.add_argument(
        "--use-vae",
        action="store_true",
        default=None,
        help="the generator takes z (read from the file: a linear fc means VAE)",
    )
    g.add_argument(
        "--label-nc",
        type=int,
        help="number of classes without dontcare (preset: coco 182, ade20k 150, cityscapes 35, facades/custom 13)",
    )
    g.add_argument(
        "--instance",
        dest="use_instance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the model takes an instance edge channel (preset: coco, cityscapes)",
    )
    g.add_argument(
        "--dontcare",
        dest="contain_dontcare_label",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stored 255 becomes id label_nc and is an input channel (preset: coco, ade20k)",
    )
    g.add_argument(
        "--num-upsampling-layers",
        choices=("normal", "more", "most"),
        help="preset: 'more' for cityscapes, else 'normal'; 'most' is read from the file",
    )
    g.add_argument("--crop-size", type=int, help="output width (preset: 256, cityscapes 512)")
    g.add_argument("--aspect-ratio", type=float, help="width / height (preset: 1, cityscapes 2)")


def _model_options(args: argparse.Namespace) -> dict:
    keys = (
        "ngf",
        "use_vae",
        "label_nc",
        "contain_dontcare_label",
        "use_instance",
        "num_upsampling_layers",
        "crop_size",
        "aspect_ratio",
    )
    return {k: getattr(args, k) for k in keys}


def require_toolchain(command: str, modules: tuple[str, ...] = ("torch", "safetensors", "onnx")) -> None:
    """Toolchain commands need torch (and onnx); say how to get them instead of an ImportError traceback."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailableError(
            f"`spade-rt {command}` needs the toolchain ({', '.join(missing)} not installed): "
            "pip install 'spade-rt[export]' (CPU torch: pip install torch==2.13.0 first)"
        )


def cmd_convert(args: argparse.Namespace) -> int:
    require_toolchain("convert")
    from spade_rt.training.convert import convert_checkpoint

    model = convert_checkpoint(
        args.checkpoint, args.preset, args.output, encoder_path=args.encoder, **_model_options(args)
    )
    cfg = model.config
    h, w = cfg.output_hw
    log.info(
        "converted %s -> %s: preset %s, ngf %d, %d input channels (%s), %dx%d%s",
        args.checkpoint,
        args.output,
        cfg.preset,
        cfg.ngf,
        cfg.semantic_nc,
        cfg.describe_channels(),
        h,
        w,
        ", VAE" + (" + encoder" if cfg.has_encoder else "") if cfg.use_vae else "",
    )
    return 0


# ---- synthesize ------------------------------------------------------------------------------------------
def cmd_synthesize(args: argparse.Namespace) -> int:
    from spade_rt.images import save_output
    from spade_rt.labels import load_inputs
    from spade_rt.palettes import palette_for
    from spade_rt.runtime.synthesizer import Synthesizer, model_kind

    options = {"rebuild": True} if args.rebuild and model_kind(args.model) == "engine" else {}
    with Synthesizer(args.model, backend=args.backend, **options) as synth:
        spec = synth.spec
        palette = None if args.palette == "none" else (args.palette or palette_for(spec.preset))
        z = None
        if spec.use_vae:
            if args.z is not None:
                z = _load_z(args.z, spec.z_dim)
            elif args.style is not None:
                if not hasattr(synth.backend, "encode_style"):
                    raise InputError("--style needs a native model with an encoder (the PyTorch backend)")
                z = synth.backend.encode_style(args.style)
            else:
                z = synth.make_z(1, args.seed)
        elif args.z is not None or args.style is not None:
            raise InputError(f"{args.model} is not a VAE model: it takes no --z or --style")

        if Path(args.labels).is_dir():
            from spade_rt.runtime.jobs import synthesize_folder

            synthesize_folder(
                synth,
                Path(args.labels),
                Path(args.output),
                instance_dir=Path(args.instance) if args.instance else None,
                fmt=args.format,
                batch_size=args.batch_size or 1,
                z=z,
                seed=args.seed,
                resize=not args.no_resize,
                palette=palette,
                progress=not getattr(args, "quiet", False),
            )
            return 0
        ids, edges = load_inputs(spec.labels, args.labels, args.instance, not args.no_resize, palette)
        output = "float" if Path(args.output).suffix.lower() == ".npy" else "uint8"
        images = synth(ids[None], edges=None if edges is None else edges[None], z=z, output=output)
    for path in save_output(args.output, images):
        log.info("wrote %s", path)
    return 0


def _load_z(path: str, z_dim: int):
    import numpy as np

    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read --z {path} as a .npy array: {exc}") from None
    if z.shape not in ((z_dim,), (1, z_dim)):
        raise InputError(f"--z {path} has shape {z.shape}: expected ({z_dim},) or (1, {z_dim})")
    return z.reshape(1, z_dim).astype(np.float32)


# ---- info ------------------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from spade_rt.runtime.synthesizer import model_kind

    kind = model_kind(args.model)
    if kind != "native":
        return cmd_inspect(args)
    require_toolchain("info")
    from spade_rt.training.model_io import count_parameters, generator_macs, load_model

    model = load_model(args.model)
    cfg = model.config
    h, w = cfg.output_hw
    info = {
        "file": str(model.path),
        "kind": "spade-rt native model",
        "preset": cfg.preset,
        "inputs": {
            "labels": f"N x {h} x {w} ids 0..{cfg.num_label_ids - 1}",
            **({"instance": f"N x {h} x {w} instance ids (edges computed)"} if cfg.use_instance else {}),
            **({"z": f"N x {cfg.z_dim} float32"} if cfg.use_vae else {}),
        },
        "output": f"N x 3 x {h} x {w} float32 in [-1, 1]",
        "semantic_nc": cfg.semantic_nc,
        "ngf": cfg.ngf,
        "num_upsampling_layers": cfg.num_upsampling_layers,
        "norm_G": cfg.norm_G,
        "use_vae": cfg.use_vae,
        "encoder": cfg.has_encoder,
        "parameters": count_parameters(model.generator),
        "gmacs_per_image": round(generator_macs(cfg) / 1e9, 2),
        "source": model.source,
    }
    _print_info(info, args.json)
    return 0


def _print_info(info: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            sys.stdout.write(f"{key:<{width}}  \n")
            for k, v in value.items():
                sys.stdout.write(f"  {k:<{width - 2}}  {v}\n")
        else:
            sys.stdout.write(
                f"{key:<{width}}  {value:,}\n"
                if isinstance(value, int) and not isinstance(value, bool)
                else f"{key:<{width}}  {value}\n"
            )


def cmd_inspect(args: argparse.Namespace) -> int:
    from spade_rt.runtime.inspect import inspect_model

    _print_info(inspect_model(args.model), args.json)
    return 0


# ---- export ----------------------------------------------------------------------------------------------
def _parse_batch(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch {text!r}: expected N or MIN:OPT:MAX, e.g. 1:1:8") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"batch {text!r}: expected N or MIN:OPT:MAX, e.g. 1:1:8")
    return tuple(parts)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 256x512") from None
    return h, w


def cmd_export(args: argparse.Namespace) -> int:
    require_toolchain("export")
    from spade_rt.export.exporter import export_model
    from spade_rt.export.onnx_graph import GraphOptions

    options = GraphOptions(
        precision=args.precision,
        output=args.output,
        batch=args.batch,
        size=args.size,
        dynamic=args.dynamic,
        opset=args.opset,
        graph=args.graph,
    )
    export_model(
        args.model,
        args.destination,
        options,
        verify=not args.no_verify,
        verify_samples=args.verify_samples,
        verify_labels=args.verify_labels,
    )
    return 0


# ---- build -----------------------------------------------------------------------------------------------
def _parse_bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected bytes or a number with K/M/G, e.g. 4G") from None


def cmd_build(args: argparse.Namespace) -> int:
    require_toolchain("build", ("onnx",))
    from spade_rt.engines import BUILT_DIR, get_recipe
    from spade_rt.export.trt_build import build_engine
    from spade_rt.runtime.synthesizer import model_kind

    source = Path(args.input)
    kind = model_kind(source)
    if kind == "engine":
        raise InputError(f"{source} is already an engine: build takes an ONNX graph or a spade-rt model")
    recipe = get_recipe(args.recipe) if args.recipe else None
    if kind == "native":  # export first, with the recipe's options
        if recipe is None:
            raise InputError("building from a spade-rt model needs --recipe (e.g. ade20k-256-fp16); or export first")
        require_toolchain("build")
        from spade_rt.export.exporter import export_model
        from spade_rt.export.onnx_graph import GraphOptions
        from spade_rt.training.model_io import load_model

        preset = load_model(source).config.preset
        if preset != recipe.preset:
            raise InputError(f"recipe {recipe.name} is for preset {recipe.preset}; {source} is a {preset} model")
        source = recipe.onnx_path()
        export_model(args.input, source, GraphOptions(recipe.precision, recipe.output, recipe.batch, recipe.size))
    elif recipe is not None:
        raise InputError("--recipe applies to spade-rt models; an ONNX graph already fixes its options")
    destination = args.destination or (recipe.engine_path() if recipe else BUILT_DIR / f"{source.stem}.engine")
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


# ---- train -----------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    require_toolchain("train", ("torch", "safetensors"))
    from spade_rt.training.train import run_from_args

    return run_from_args(args)


# ---- bench -----------------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    require_toolchain("bench")
    from spade_rt.bench.run import ALL_BACKENDS, command_line, run_bench

    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    unknown = [b for b in backends if b not in ALL_BACKENDS]
    if unknown:
        raise InputError(f"unknown backend(s) {', '.join(unknown)}: expected some of {', '.join(ALL_BACKENDS)}")
    try:
        batches = tuple(int(b) for b in args.batch.split(","))
    except ValueError:
        raise InputError(f"--batch {args.batch!r}: expected comma-separated sizes, e.g. 1,4,8") from None
    if args.quick:  # CI: proves the harness end to end on a tiny model; its timings mean nothing
        args.ngf, args.size, args.repeats, args.warmup = 4, args.size or (64, 64), 3, 1
        batches = (1, 2)
    run_bench(
        preset=args.preset,
        ngf=args.ngf,
        size=args.size,
        backends=backends,
        batches=batches,
        device=args.device,
        model=Path(args.model) if args.model else None,
        data_dir=Path(args.data) if args.data else None,
        repeats=args.repeats,
        warmup=args.warmup,
        json_path=Path(args.json) if args.json else None,
        command=command_line(),
    )
    return 0


# ---- parser ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spade-rt",
        description="Real-time SPADE/GauGAN label-to-image synthesis: convert original checkpoints, export exact "
        "ONNX graphs, build FP16 TensorRT engines, synthesize, benchmark, train.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spade-rt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    # the same flags after the command name (spade-rt build ... -q); SUPPRESS keeps the top-level value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="warnings and errors only, no progress bars",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add = sub.add_parser

    def add_parser(name, **kw):
        return add(name, parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter, **kw)

    sub.add_parser = add_parser

    p = sub.add_parser(
        "convert",
        help="original latest_net_G.pth -> spade-rt model (.safetensors)",
        description="Load an original SPADE generator checkpoint safely (weights only), check it "
        "against the preset and write a spade-rt model: safetensors weights + JSON config.",
    )
    p.add_argument("checkpoint", help="latest_net_G.pth from the original SPADE code")
    p.add_argument(
        "--preset",
        required=True,
        choices=("coco", "ade20k", "cityscapes", "facades", "custom"),
        help="dataset conventions: label count, dontcare, instance edges, size",
    )
    p.add_argument("--encoder", help="latest_net_E.pth of a VAE model (enables synthesize --style)")
    p.add_argument("-o", "--output", required=True, help="output model file, e.g. coco.safetensors")
    _add_model_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "synthesize",
        help="label map -> image (.png) or network output (.npy)",
        description="Run a model on a label PNG (class ids; 255 = unlabeled). The map is resized "
        "with NEAREST to the model's size, as the original test pipeline does.",
    )
    p.add_argument("model", help="spade-rt model (.safetensors), ONNX graph (.onnx) or TensorRT engine (.engine)")
    p.add_argument(
        "--labels",
        required=True,
        help="label PNG (one channel of class ids, or colour-coded with the preset's palette), "
        "or a folder of them (then -o is a folder)",
    )
    p.add_argument(
        "--instance",
        help="instance PNG or folder, matched by file name (models with an edge "
        "channel; default: the label map's boundaries)",
    )
    zg = p.add_mutually_exclusive_group()
    zg.add_argument("--z", help="VAE models: style vector, a .npy of shape (z_dim,)")
    zg.add_argument("--seed", type=int, default=0, help="VAE models: seed of a standard-normal z (default 0)")
    zg.add_argument("--style", help="VAE models with an encoder: take z from this style image")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help=".png/.jpg: RGB image; .npy: float32 N x 3 x H x W in [-1, 1], the network output",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "torch", "onnxruntime", "tensorrt"),
        help="default: by file kind (.safetensors: torch, .onnx: onnxruntime, .engine: tensorrt)",
    )
    p.add_argument("--no-resize", action="store_true", help="refuse maps of another size instead of resizing")
    p.add_argument(
        "--palette",
        choices=("coco", "ade20k", "cityscapes", "landscape", "none"),
        help="decode colour-coded label maps with this palette (default: the model's preset)",
    )
    p.add_argument("--batch-size", type=int, help="folder mode: maps per call (default 1)")
    p.add_argument("--format", choices=("png", "npy"), default="png", help="folder mode: output files")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="engines: rebuild a stale engine from the ONNX graph beside it instead of failing",
    )
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser(
        "export",
        help="spade-rt model -> exact, verified ONNX inference graph",
        description="Write the inference graph: label ids in (no one-hot), spectral and batch norm folded, one-hot "
        "convs as lookups, gamma/beta fused; FP16 weights and convs with --precision fp16. The graph is run under "
        "ONNX Runtime against the PyTorch network before anything is written; OUT.onnx.json holds the report.",
    )
    p.add_argument("model", help="spade-rt model (.safetensors) or training run directory")
    p.add_argument("-o", dest="destination", required=True, metavar="OUT.onnx", help="graph to write")
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default="fp32",
        help="fp16: FP16 weights and convolutions in the graph itself (what strongly typed TensorRT needs)",
    )
    p.add_argument(
        "--output",
        choices=("float", "uint8"),
        default="float",
        help="float: N x 3 x H x W in [-1, 1]; uint8: N x H x W x 3 RGB (4x less to copy back)",
    )
    p.add_argument(
        "--batch",
        type=_parse_batch,
        default=(1, 1, 8),
        metavar="MIN:OPT:MAX",
        help="batch range for engine profiles (default 1:1:8; one number fixes the batch)",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--size",
        type=_parse_size,
        metavar="HxW",
        help="fixed output size (default: the model's; multiples of 32, 64 for 'more')",
    )
    size.add_argument("--dynamic", action="store_true", help="symbolic H and W (models with a conv fc)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..20 (default 17)")
    p.add_argument(
        "--graph",
        choices=("static", "dedup"),
        default="static",
        help="static: shape-static graph for TensorRT and GPUs (default); dedup: computes SPADE's "
        "gamma/beta once per distinct 5x5 label patch (exact; ~1.7x faster on CPUs with ONNX Runtime, "
        "cost depends on the map; fp32, fixed size; not for TensorRT)",
    )
    p.add_argument(
        "--verify-labels",
        nargs="+",
        default=[],
        metavar="PNG",
        help="your own label maps to verify on, besides the random ones",
    )
    p.add_argument("--verify-samples", type=int, default=2, help="random label maps to verify on (default 2)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch (not recommended)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "build",
        help="ONNX graph -> TensorRT / TensorRT-RTX engine + manifest",
        description="Build an engine from a graph written by `spade-rt export`. Profiles come from the graph's batch "
        "(and size) range. TensorRT-RTX builds ahead of time on any machine, GPU or not; full TensorRT builds on "
        "and for the GPU it runs on. OUT.engine.json records IO, precision, builder version, GPU targets, hashes.",
    )
    p.add_argument("input", help="graph from `spade-rt export` (fp16 for speed), or a spade-rt model with --recipe")
    p.add_argument(
        "-o", dest="destination", metavar="OUT.engine", help="engine to write (default: engines/built/NAME.engine)"
    )
    p.add_argument("--recipe", help="export options of engines/recipes.json, e.g. ade20k-256-fp16 (model input)")
    p.add_argument(
        "--backend",
        choices=("auto", "tensorrt", "tensorrt-rtx"),
        default="auto",
        help="auto: full TensorRT if installed, else TensorRT-RTX",
    )
    p.add_argument("--workspace", type=_parse_bytes, metavar="SIZE", help="builder workspace limit, e.g. 4G")
    p.add_argument(
        "--compute-capability",
        nargs="+",
        metavar="CC",
        help="TensorRT-RTX targets, e.g. 7.5 8.6 8.9 12.0 (default: 8.0 8.6 8.9 12.0 and later)",
    )
    p.add_argument(
        "--timing-cache",
        metavar="FILE",
        help="TensorRT timing cache to reuse and update (default: timing.cache beside the engine)",
    )
    p.set_defaults(func=cmd_build)

    from spade_rt.training.options import TRAIN_DESCRIPTION, TRAIN_EPILOG, add_train_arguments  # torch-free

    p = sub.add_parser(
        "train", help="train a SPADE generator (resumable, torchrun-ready)", description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
    )  # fmt: skip
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "inspect",
        help="an engine or ONNX graph: IO, precision, profiles, builder, GPU targets",
        description="Describe an engine (from its manifest, plus whether it can run here) or an ONNX graph "
        "(torch-free, through ONNX Runtime).",
    )
    p.add_argument("model", help="X.engine (with X.engine.json) or X.onnx")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "bench",
        help="eager PyTorch vs our graph and engine, side by side, on this machine",
        description="Time the original formulation (eager PyTorch fp32, one-hot input) against stronger PyTorch "
        "baselines and spade-rt's graph/engine, interleaved in one run, on real label maps; report latency "
        "percentiles, throughput, memory, speed-up and accuracy vs fp32. Writes JSON + Markdown + PNG under "
        "bench/results/<machine>-<date>/.",
    )
    p.add_argument("--preset", default="ade20k", choices=("coco", "ade20k", "cityscapes", "facades"))
    p.add_argument("--ngf", type=int, default=64, help="generator width (default 64: the full-size network)")
    p.add_argument("--size", type=_parse_size, metavar="HxW", help="output size (default: the preset's)")
    p.add_argument("--model", help="a spade-rt model to time instead of trained-looking random weights")
    p.add_argument(
        "--backends",
        default="torch,torch-compile,onnxruntime,onnxruntime-dedup,tensorrt",
        help="comma-separated: torch (baseline, always run), torch-fp16, torch-compile, onnxruntime (static graph), "
        "onnxruntime-dedup (CPU graph), tensorrt; those that cannot run here are recorded as skipped, with the reason",
    )
    p.add_argument("--batch", default="1,4", help="batch sizes; 1 gives latency, larger ones throughput")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--repeats", type=int, default=10, help="interleaved repetitions at batch 1 (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up calls per backend (default 2)")
    p.add_argument("--data", help="the COCO-Stuff sample folder (default ../shared/data/coco_stuff_sample)")
    p.add_argument("--json", metavar="OUT.json", help="result file (.md and .png go beside it)")
    p.add_argument("--quick", action="store_true", help="tiny model, few repeats: proves the harness, not speed")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "info",
        help="what a model takes and gives, parameters, GMACs",
        description="Describe a spade-rt model: preset, input/output shapes, parameter count, "
        "GMACs per image of the original formulation.",
    )
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    try:
        return args.func(args)
    except SpadeRtError as exc:
        sys.stderr.write(f"spade-rt {args.command}: error: {exc}\n")
        return 1
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        sys.stderr.write(f"spade-rt {args.command}: error: {exc.strerror}: {exc.filename}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
