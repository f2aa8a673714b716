"""`spade-rt triton`: a Triton Inference Server model repository for a model, graph or engine."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from spade_rt.commands.common import add_tier_argument, require_toolchain
from spade_rt.runtime.peek import peek_spec
from spade_rt.validation import GRAPH_CHOICES

log = logging.getLogger("spade_rt")


def run(args: argparse.Namespace) -> int:
    from spade_rt.serve.triton import TritonOptions, default_name, write_repository
    from spade_rt.validation import check_triton_destination, check_triton_options

    source = Path(args.model)
    # every flag against the source's header and each other, and REPO/NAME, before anything is exported
    kind, spec = peek_spec(source)
    check_triton_options(
        kind,
        spec,
        device=args.device,
        gpus=args.gpus,
        precision=args.precision,
        max_batch=args.max_batch,
        instances=args.instances,
    )
    from spade_rt.runtime.tiers import check_tier_choice, resolve_tier

    check_tier_choice(args.tier)
    resolve_tier(args.tier, spec, kind, "auto")  # the runtime picks a backend that runs it
    check_triton_destination(args.output, args.name or default_name(source), force=args.force)
    options = TritonOptions(
        name=args.name or default_name(source),
        instances=args.instances,
        device=args.device,
        gpus=tuple(args.gpus or ()),
        max_queue_delay_us=args.max_queue_delay_us,
        max_batch=args.max_batch,
        backend=args.backend,
        png=args.png,
        execution_env=args.execution_env,
        tier=args.tier,
    )
    repo = Path(args.output)
    if kind != "native":
        write_repository(source, kind, repo, options.validate(kind), force=args.force)
        return 0
    # a spade-rt model: export the uint8-output graph Triton serves, verified, then write the repository
    options.validate("onnx")
    require_toolchain("triton (exporting the model)")
    from spade_rt.export.exporter import export_model
    from spade_rt.export.onnx_graph import GraphOptions

    max_batch = args.max_batch or 8
    repo.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=repo) as tmp:
        graph = Path(tmp) / f"{options.name}.onnx"
        report = export_model(
            source,
            graph,
            GraphOptions(
                precision=args.precision or "fp32", output="uint8", batch=(1, max_batch, max_batch), graph=args.graph
            ),
            verify_samples=1,
            announce=False,  # the graph is written to a temporary folder: the repository is what was written
        )
        provenance = {"exported_from": source.name, "verification": report.get("verification")}
        write_repository(graph, "onnx", repo, options, force=args.force, provenance=provenance)
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "triton",
        help="write a Triton Inference Server model repository (config.pbtxt + graph or engine)",
        description="Write REPO/NAME/config.pbtxt and REPO/NAME/1/model.onnx (or model.plan) for NVIDIA Triton "
        "Inference Server: uint8 label ids in, uint8 RGB out, dims and max batch from the graph's spec or the "
        "engine's manifest, dynamic batching, instance groups. A spade-rt model is exported first (--output uint8, "
        "verified); for the native backends an ONNX graph or engine must already give uint8 output. "
        "--backend python runs the spade-rt runtime inside Triton's python backend instead (any graph, "
        "TensorRT-RTX engines, the label pipeline done by spade-rt) and adds NAME_png, label PNGs in. "
        "Serving, the Triton environment and scaling out: docs/triton.md.\n\n"
        "examples:\n"
        "  spade-rt triton coco.safetensors -o models/                 # export + repository (onnxruntime_onnx)\n"
        "  spade-rt triton coco_fp16_u8.onnx -o models/ --instances 2  # two instances per GPU\n"
        "  spade-rt triton coco.engine -o models/ --name coco_trt      # tensorrt_plan\n"
        "  spade-rt triton coco.engine -o models/ --backend python     # an RTX engine, spade-rt in Triton\n"
        "  docker run --gpus all -p 8000:8000 -v $PWD/models:/models nvcr.io/nvidia/tritonserver:<tag>-py3 \\\n"
        "      tritonserver --model-repository=/models",
    )
    p.add_argument(
        "model", help="spade-rt model, ONNX graph (uint8 output) or engine; the kind is read from the content"
    )
    p.add_argument("-o", dest="output", required=True, metavar="REPO", help="model repository folder (created)")
    p.add_argument("--name", help="model name in the repository (default: the file name without suffix)")
    p.add_argument("--instances", type=int, default=1, metavar="N", help="model instances per device (default 1)")
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu", help="instance kind (default gpu)")
    p.add_argument("--gpus", type=int, nargs="+", metavar="ID", help="GPUs the instances go on (default: all)")
    p.add_argument(
        "--max-batch",
        type=int,
        metavar="N",
        help="spade-rt models: the exported graph's max batch (default 8); graphs and engines keep their own",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=1000,
        metavar="US",
        help="dynamic batching: microseconds Triton waits to fill a batch (default 1000)",
    )
    p.add_argument(
        "--precision",
        choices=GRAPH_CHOICES["precision"],
        help="spade-rt models: precision of the exported graph (default fp32; fp16 for TensorRT execution on GPUs); "
        "a graph or engine keeps its own",
    )
    p.add_argument(
        "--backend",
        choices=("native", "python"),
        default="native",
        help="native: Triton's onnxruntime_onnx / tensorrt_plan backends (default); python: the spade-rt runtime "
        "in Triton's python backend (needs spade-rt and numpy < 2 in Triton's python, docs/triton.md)",
    )
    p.add_argument(
        "--png",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also write NAME_png: a label PNG (ids or palette colours) in, the picture out, calling NAME "
        "(python backend; default: with --backend python)",
    )
    p.add_argument(
        "--execution-env",
        metavar="PATH",
        help="python backend: EXECUTION_ENV_PATH, a conda-pack archive with spade-rt for Triton's python "
        "(e.g. '$$TRITON_MODEL_DIRECTORY/spade-rt-env.tar.gz')",
    )
    p.add_argument(
        "--graph",
        choices=GRAPH_CHOICES["graph"],
        default="static",
        help="spade-rt models: the exported graph (dedup: fastest on CPUs; static: TensorRT, GPUs)",
    )
    add_tier_argument(p, "python backend: the precision tier the runtime runs (half: on CPU instances)")
    p.add_argument("--force", action="store_true", help="replace REPO/NAME if it exists")
    p.set_defaults(func=run)
