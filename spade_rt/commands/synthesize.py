"""`spade-rt synthesize`: label maps -> pictures, with any backend, one file or a folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from spade_rt.commands.common import add_backend_argument, add_tier_argument, positive_int
from spade_rt.errors import InputError
from spade_rt.palettes import PALETTES
from spade_rt.validation import CLI, check_model_options, check_seed, check_synthesize_paths

log = logging.getLogger("spade_rt")


def run(args: argparse.Namespace) -> int:
    from spade_rt.images import save_output
    from spade_rt.labels import load_inputs
    from spade_rt.palettes import palette_for
    from spade_rt.runtime.synthesizer import Synthesizer

    kind, _, folder = check_synthesize_args(args)  # every argument, before the model is opened
    options = {"rebuild": True} if args.rebuild else {}
    if args.trust_engine:
        options["trust_engine"] = True
    if args.tier != "auto":  # checked against the file and the backend in check_synthesize_args
        options["tier"] = args.tier
    with Synthesizer(args.model, backend=args.backend, **options) as synth:
        spec = synth.spec
        check_model_options(spec, args.model, kind, seed=args.seed, z=args.z, style=args.style, voice=CLI)
        palette = None if args.palette == "none" else (args.palette or palette_for(spec.preset))
        dynamic = spec.dynamic_multiple  # as Synthesizer: any multiple, never resized
        z = None
        if spec.use_vae:
            if args.z is not None:
                z = load_z(args.z, spec.z_dim)
            elif args.style is not None:
                if not hasattr(synth.backend, "encode_style"):
                    raise InputError("--style needs a native model with an encoder (the PyTorch backend)")
                z = synth.backend.encode_style(args.style)
            else:
                z = synth.make_z(1, args.seed or 0)

        if folder:
            from spade_rt.runtime.jobs import synthesize_folder

            synthesize_folder(
                synth,
                Path(args.labels),
                Path(args.output),
                instance_dir=Path(args.instance) if args.instance else None,
                fmt=args.format or "png",
                batch_size=args.batch_size or 1,
                z=z,
                seed=args.seed or 0,
                resize=not args.no_resize,
                palette=palette,
                progress=not getattr(args, "quiet", False),
                max_pixels=args.max_pixels,
                voice=CLI,
            )
            return 0
        ids, edges = load_inputs(
            spec.labels,
            args.labels,
            args.instance,
            not args.no_resize,
            palette,
            note_resize=True,
            max_pixels=args.max_pixels,
            dynamic_multiple=dynamic,
            voice=CLI,
        )
        output = "float" if Path(args.output).suffix.lower() == ".npy" else "uint8"
        images = synth(ids[None], edges=None if edges is None else edges[None], z=z, output=output)
    for path in save_output(args.output, images):
        log.info("wrote %s", path)
    return 0


def check_synthesize_args(args: argparse.Namespace) -> tuple[str, object, bool]:
    """All of `spade-rt synthesize`'s checks that need no model loaded: paths and modes (--labels, --instance,
    -o, --format, --batch-size), the seed, and the flags that apply to some models only, against the model's
    header (spade_rt.runtime.peek.peek_spec: torch-free). Returns (kind, spec or None, folder mode)."""
    from spade_rt.runtime.peek import peek_spec
    from spade_rt.runtime.tiers import check_tier_choice, resolve_tier

    folder = check_synthesize_paths(
        args.labels, args.output, instance=args.instance, fmt=args.format, batch_size=args.batch_size, voice=CLI
    )
    check_seed(args.seed, CLI)
    check_tier_choice(args.tier)
    kind, spec = peek_spec(args.model)
    resolve_tier(args.tier, spec, kind, args.backend)  # one line where this file or backend cannot run it
    model_flags = {key: getattr(args, key) for key in ("seed", "z", "style", "rebuild", "trust_engine")}
    check_model_options(spec, args.model, kind, **model_flags, voice=CLI)  # the flags some models only take
    for key, path in (("--z", args.z), ("--style", args.style)):
        if path is not None and not Path(path).is_file():
            raise InputError(f"{key} {path}: not found")
    if kind == "native":  # the maps against the header's spec: a bad map costs no torch import, no weights read
        check_maps(args, spec, folder)  # (graphs and engines open in a moment: the file's own errors come first)
    return kind, spec, folder


def check_maps(args: argparse.Namespace, spec, folder: bool) -> None:
    """Read and check the label (and instance) maps for a model of ``spec``, as the run reads them."""
    from spade_rt.labels import load_inputs
    from spade_rt.palettes import palette_for

    palette = None if args.palette == "none" else (args.palette or palette_for(spec.preset))
    resize = not args.no_resize
    if folder:
        from spade_rt.runtime.jobs import check_folder

        instance = Path(args.instance) if args.instance else None
        check_folder(spec, Path(args.labels), instance, resize=resize, palette=palette, max_pixels=args.max_pixels,
                     voice=CLI)  # fmt: skip
        return
    dynamic = spec.dynamic_multiple
    load_inputs(spec.labels, args.labels, args.instance, resize, palette, note_missing_instance=False,
                max_pixels=args.max_pixels, dynamic_multiple=dynamic, voice=CLI)  # fmt: skip


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
    zg.add_argument("--seed", type=int, help="VAE models: seed of a standard-normal z, 0..2^32-1 (default 0)")
    zg.add_argument("--style", help="VAE models with an encoder: take z from this style image")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help=".png/.jpg: RGB image; .npy: float32 N x 3 x H x W in [-1, 1], the network output",
    )
    add_backend_argument(p)
    add_tier_argument(p)
    p.add_argument("--no-resize", action="store_true", help="refuse maps of another size instead of resizing")
    p.add_argument(
        "--palette",
        choices=(*PALETTES, "none"),
        help="decode colour-coded label maps with this palette (default: the model's preset)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, metavar="N", help="folder mode: maps per call, 1 or more (default 1)"
    )
    p.add_argument(
        "--format", choices=("png", "npy"), help="folder mode: output files (default png); one map: -o's suffix"
    )
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
