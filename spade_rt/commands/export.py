"""`spade-rt export`: spade-rt model -> verified ONNX inference graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from spade_rt.commands.common import parse_batch, parse_size, require_toolchain
from spade_rt.errors import ConfigError, InputError
from spade_rt.validation import GRAPH_CHOICES

GRAPH_FLAGS = ("precision", "output", "batch", "size", "dynamic", "opset", "graph", "index_pad", "lookup")


def run(args: argparse.Namespace) -> int:
    check_export_args(args)  # every argument, before torch is even imported
    require_toolchain("export")
    from spade_rt.export.exporter import export_model
    from spade_rt.export.onnx_graph import GraphOptions

    export_model(
        args.model,
        args.destination,
        GraphOptions(**graph_flags(args)),
        verify=not args.no_verify,
        verify_samples=2 if args.verify_samples is None else args.verify_samples,
        verify_labels=args.verify_labels,
        tier=args.tier,
        cache_dir=args.cache_dir,
    )
    return 0


def check_export_args(args: argparse.Namespace) -> None:
    """-o, the report beside it, the model's header (torch-free) and every graph option against it: the same
    checks as ``GraphOptions`` (spade_rt.validation.check_graph_options), in flags."""
    from spade_rt.io_utils import check_output_file
    from spade_rt.model.header import model_config  # torch-free
    from spade_rt.runtime.spec import report_path
    from spade_rt.validation import CLI, ModelShape, check_graph_options, check_int_option, check_model_output

    check_model_output(args.destination, "onnx", "destination", CLI)
    check_output_file(report_path(args.destination), "report")
    if args.no_verify and (args.verify_labels or args.verify_samples is not None):
        given = "--verify-labels" if args.verify_labels else "--verify-samples"
        raise ConfigError(f"{given} chooses what verification runs on; --no-verify turns verification off")
    if args.verify_samples is not None:
        check_int_option("verify_samples", args.verify_samples, 0, 64, CLI)
    if args.tier not in ("exact", "int8"):
        raise ConfigError(f"--tier {args.tier}: expected exact or int8 (the half tier is measured on every fp32 graph)")
    if args.tier == "int8":
        wrong = {"--precision fp16": args.precision != "fp32", "--output uint8": args.output != "float"}
        bad = [flag for flag, on in {**wrong, "--no-verify": args.no_verify}.items() if on]
        if bad:
            raise ConfigError(f"--tier int8 quantizes a verified fp32 graph with float output: drop {bad[0]}")
        import importlib.util

        if importlib.util.find_spec("nncf") is None:
            raise ConfigError("--tier int8 needs NNCF: pip install 'spade-rt[int8]'")
    for png in args.verify_labels:
        if not Path(png).is_file():
            raise InputError(f"--verify-labels {png}: not found")
    cfg = model_config(args.model)
    shape = ModelShape(cfg.output_hw, 2**cfg.num_up, cfg.num_upsampling_layers, cfg.use_vae)
    check_graph_options(**graph_flags(args), model=shape, voice=CLI)


def graph_flags(args: argparse.Namespace) -> dict:
    """The graph's options as given (dest = the GraphOptions field = check_graph_options' keyword)."""
    return {key: getattr(args, key) for key in GRAPH_FLAGS}


def register(sub) -> None:
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
        choices=GRAPH_CHOICES["precision"],
        default="fp32",
        help="fp16: FP16 weights and convolutions in the graph itself (what strongly typed TensorRT needs)",
    )
    p.add_argument(
        "--output",
        choices=GRAPH_CHOICES["output"],
        default="float",
        help="float: N x 3 x H x W in [-1, 1]; uint8: N x H x W x 3 RGB (4x less to copy back)",
    )
    p.add_argument(
        "--batch",
        type=parse_batch,
        default=(1, 1, 8),
        metavar="MIN:OPT:MAX",
        help="batch range for engine profiles (default 1:1:8; one number fixes the batch)",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--size",
        type=parse_size,
        metavar="HxW",
        help="fixed output size (default: the model's; multiples of 32, 64 for 'more')",
    )
    size.add_argument("--dynamic", action="store_true", help="symbolic H and W (models with a conv fc)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..20 (default 17)")
    p.add_argument(
        "--graph",
        choices=GRAPH_CHOICES["graph"],
        default="static",
        help="static: shape-static graph for TensorRT and GPUs (default); dedup: computes SPADE's "
        "gamma/beta once per distinct 5x5 label patch (exact; ~1.7x faster on CPUs with ONNX Runtime, "
        "cost depends on the map; fp32, fixed size; not for TensorRT)",
    )
    p.add_argument(
        "--index-pad",
        choices=GRAPH_CHOICES["index_pad"],
        default="int32",
        help="int32: pad the index maps as int32 (default; TensorRT fuses it into the lookups); float: pad them "
        "as float32 (exact), for ONNX Runtime's CUDA provider, which has no int32 Pad kernel",
    )
    p.add_argument(
        "--lookup",
        choices=GRAPH_CHOICES["lookup"],
        default="gather",
        help="gather: one-hot convs as row lookups (default); onehot: a one-hot map built on the device and one "
        "dense conv per resolution (more MACs, fewer kernels; exact either way; measure with spade-rt bench)",
    )
    p.add_argument(
        "--verify-labels",
        nargs="+",
        default=[],
        metavar="PNG",
        help="your own label maps to verify on, besides the random ones",
    )
    p.add_argument("--verify-samples", type=int, help="random label maps to verify on, 0..64 (default 2)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch (not recommended)")
    p.add_argument(
        "--tier",
        default="exact",
        metavar="{exact,int8}",
        help="exact (default): the fp32 graph, on which export also measures the half tier; int8: that graph "
        "quantized (NNCF, calibrated on the shipped real maps, layers kept in fp32 until its picture is within "
        "35 dB PSNR of fp32), written only within the bound, cached; needs pip install 'spade-rt[int8]'",
    )
    p.add_argument("--cache-dir", help="int8: where the quantized graph is cached (default: the user cache)")
    p.set_defaults(func=run)
