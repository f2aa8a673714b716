"""`spade-rt info` and `spade-rt inspect`: what a model file takes and gives, whatever its kind.

The kind comes from the file's content (spade_rt.runtime.model_kind); the describing function from the
kind's backend in the registry: spade-rt models through the toolchain (parameters, GMACs), ONNX graphs
through ONNX Runtime (torch-free), engines from their manifest (plus whether they can run here).
"""

from __future__ import annotations

import argparse

from spade_rt.commands.common import print_info


def run(args: argparse.Namespace) -> int:
    from spade_rt.runtime.model_kind import model_kind
    from spade_rt.runtime.registry import default_backend, load_attr

    entry = default_backend(model_kind(args.model))  # a spade-rt model: from its header, torch-free
    print_info(load_attr(entry, entry.describe)(args.model), args.json)
    return 0


def register(sub) -> None:
    for name, summary, description in (
        (
            "inspect",
            "an engine or ONNX graph: IO, precision, profiles, builder, GPU targets",
            "Describe an engine (from its manifest, plus whether it can run here), an ONNX graph (torch-free, "
            "through ONNX Runtime) or a spade-rt model.",
        ),
        (
            "info",
            "what a model takes and gives, parameters, GMACs",
            "Describe a spade-rt model: preset, input/output shapes, parameter count, GMACs per image of the "
            "original formulation (graphs and engines: as `spade-rt inspect`).",
        ),
    ):
        p = sub.add_parser(name, help=summary, description=description)
        p.add_argument("model", help="spade-rt model, X.onnx or X.engine (with X.engine.json); kind read from the file")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=run)
