"""`spade-rt convert`: original latest_net_G.pth -> spade-rt model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from spade_rt.commands.common import require_toolchain
from spade_rt.presets import add_network_flags, preset_names

log = logging.getLogger("spade_rt")


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
    add_network_flags(g, None)


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


def run(args: argparse.Namespace) -> int:
    from spade_rt.validation import CLI, check_model_output

    check_model_output(args.output, "native", "output_path", CLI)  # before torch is even imported
    check_convert_source(Path(args.checkpoint))
    require_toolchain("convert")
    from spade_rt.model.convert import convert_checkpoint

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


def check_convert_source(path: Path) -> None:
    """A spade-rt model, a graph or an engine given to convert: say what it is (it needs no converting)."""
    from spade_rt.errors import InputError, ModelFormatError
    from spade_rt.model.header import FORMAT, read_safetensors_header  # torch-free
    from spade_rt.runtime.model_kind import KINDS, RUN_LATEST, sniff

    if path.is_dir() and (path / RUN_LATEST).is_file():
        kind = "native"
    else:
        kind = sniff(path) if path.is_file() else None
        if kind == "native":  # a safetensors file: a spade-rt model says so in its header
            try:
                kind = "native" if read_safetensors_header(path)[0].get("format") == FORMAT else None
            except ModelFormatError:
                kind = None  # damaged: convert's own reader says what is wrong
    if kind == "native":
        raise InputError(
            f"{path} is already a spade-rt model: use it as it is (spade-rt synthesize/export/info {path}); convert "
            "reads original SPADE checkpoints (latest_net_G.pth)"
        )
    if kind in ("onnx", "engine"):
        raise InputError(
            f"{path} is {KINDS[kind].what}, made from a spade-rt model; convert reads original SPADE checkpoints "
            "(latest_net_G.pth)"
        )


def register(sub) -> None:
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
        choices=preset_names(),
        help="dataset conventions: label count, dontcare, instance edges, size",
    )
    p.add_argument("--encoder", help="latest_net_E.pth of a VAE model (enables synthesize --style)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output model file, e.g. coco.safetensors (always a safetensors file, whatever its name)",
    )
    _add_model_options(p)
    p.set_defaults(func=run)
