"""`spade-rt synthesize`: label maps -> pictures, with any backend, one file or a folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from spade_rt.commands.common import positive_int
from spade_rt.errors import InputError, OutputError
from spade_rt.palettes import PALETTES
from spade_rt.runtime.openvino_backend import TIERS
from spade_rt.runtime.registry import backend_names

log = logging.getLogger("spade_rt")


def run(args: argparse.Namespace) -> int:
    from spade_rt.images import save_output
    from spade_rt.labels import load_inputs
    from spade_rt.palettes import palette_for
    from spade_rt.runtime.model_kind import model_kind
    from spade_rt.runtime.synthesizer import Synthesizer

    check_output(Path(args.labels), Path(args.output))  # before the model is even opened
    options = {"rebuild": True} if args.rebuild and model_kind(args.model) == "engine" else {}
    if args.trust_engine and model_kind(args.model) == "engine":
        options["trust_engine"] = True
    backend = args.backend
    if args.tier is not None:  # precision tiers are the openvino backend's (spade_rt.runtime.openvino_backend)
        if backend not in ("auto", "openvino"):
            raise InputError(f"--tier is an option of the openvino backend, not of --backend {backend}")
        backend, options["tier"] = "openvino", args.tier
    with Synthesizer(args.model, backend=backend, **options) as synth:
        spec = synth.spec
        palette = None if args.palette == "none" else (args.palette or palette_for(spec.preset))
        z = None
        if spec.use_vae:
            if args.z is not None:
                z = load_z(args.z, spec.z_dim)
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
                max_pixels=args.max_pixels,
            )
            return 0
        ids, edges = load_inputs(
            spec.labels, args.labels, args.instance, not args.no_resize, palette, max_pixels=args.max_pixels
        )
        output = "float" if Path(args.output).suffix.lower() == ".npy" else "uint8"
        images = synth(ids[None], edges=None if edges is None else edges[None], z=z, output=output)
    for path in save_output(args.output, images):
        log.info("wrote %s", path)
    return 0


def check_output(labels: Path, output: Path) -> None:
    """-o against --labels: a folder of maps writes into a folder, one map into a picture or a .npy file."""
    from spade_rt.images import OUTPUT_SUFFIXES
    from spade_rt.io_utils import check_output_dir, check_output_file

    if not labels.is_dir():
        check_output_file(output, "-o", OUTPUT_SUFFIXES)
        return
    if output.suffix.lower() in OUTPUT_SUFFIXES and not output.is_dir():
        raise OutputError(
            f"-o {output} is a {output.suffix} file name, but --labels {labels} is a folder: expected a folder "
            "for its pictures (one per map, named like the map)"
        )
    check_output_dir(output, "-o")


def load_z(path: str, z_dim: int):
    import numpy as np

    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read --z {path} as a .npy array: {exc}") from None
    if z.shape not in ((z_dim,), (1, z_dim)):
        raise InputError(f"--z {path} has shape {z.shape}: expected ({z_dim},) or (1, {z_dim})")
    return z.reshape(1, z_dim).astype(np.float32)


def register(sub) -> None:
    p = sub.add_parser(
        "synthesize",
        help="label map -> image (.png) or network output (.npy)",
        description="Run a model on a label PNG (class ids; 255 = unlabeled). The map is resized "
        "with NEAREST to the model's size, as the original test pipeline does.",
    )
    p.add_argument(
        "model",
        help="spade-rt model (.safetensors or a run directory), ONNX graph or TensorRT engine; the kind is read "
        "from the file's content",
    )
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
        choices=("auto", *backend_names()),
        help="default: by file kind (spade-rt model: torch, engine: tensorrt; ONNX graph: the fastest exact "
        "backend installed, by the registry's fixed rule: static graphs openvino, dedup graphs onnxruntime)",
    )
    p.add_argument(
        "--tier",
        choices=tuple(TIERS),
        help="ONNX graphs on OpenVINO: exact (fp32, the default) or half (bf16 on CPUs that have it; offered "
        "only when export measured it within 1e-2 relative L2; `spade-rt inspect` shows the measurement)",
    )
    p.add_argument("--no-resize", action="store_true", help="refuse maps of another size instead of resizing")
    p.add_argument(
        "--palette",
        choices=(*PALETTES, "none"),
        help="decode colour-coded label maps with this palette (default: the model's preset)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, metavar="N", help="folder mode: maps per call, 1 or more (default 1)"
    )
    p.add_argument("--format", choices=("png", "npy"), default="png", help="folder mode: output files")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="engines: rebuild a stale engine from the ONNX graph beside it instead of failing",
    )
    p.add_argument(
        "--trust-engine",
        action="store_true",
        help="engines: load an engine whose sha256 does not match its manifest (engines can carry code: only "
        "for files you trust; refused by default)",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        metavar="N",
        help="refuse label and instance maps of more than N pixels, from their header (default: 16 times the "
        "model's size, at least 4096x4096; or $SPADE_RT_MAX_PIXELS)",
    )
    p.set_defaults(func=run)
