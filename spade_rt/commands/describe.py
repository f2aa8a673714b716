"""`spade-rt info` (spade-rt models) and `spade-rt inspect` (engines, ONNX graphs)."""

from __future__ import annotations

import argparse

from spade_rt.commands.common import print_info, require_toolchain


def run_info(args: argparse.Namespace) -> int:
    from spade_rt.runtime.synthesizer import model_kind

    kind = model_kind(args.model)
    if kind != "native":
        return run_inspect(args)
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
    print_info(info, args.json)
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from spade_rt.runtime.inspect import inspect_model

    print_info(inspect_model(args.model), args.json)
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="an engine or ONNX graph: IO, precision, profiles, builder, GPU targets",
        description="Describe an engine (from its manifest, plus whether it can run here) or an ONNX graph "
        "(torch-free, through ONNX Runtime).",
    )
    p.add_argument("model", help="X.engine (with X.engine.json) or X.onnx")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_inspect)

    p = sub.add_parser(
        "info",
        help="what a model takes and gives, parameters, GMACs",
        description="Describe a spade-rt model: preset, input/output shapes, parameter count, "
        "GMACs per image of the original formulation.",
    )
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_info)
