"""``spade-rt``: one command for the whole pipeline.

Each subcommand lives in ``spade_rt.commands.<name>``. Runtime subcommands (synthesize, inspect, demo on a
graph) stay torch-free; toolchain subcommands (convert, info, export, build, train, bench) import torch
lazily, inside their handlers. Any ``SpadeRtError`` ends as one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from spade_rt import __version__
from spade_rt.commands import bench, build, convert, demo, describe, export, serve, synthesize, train, triton, web
from spade_rt.errors import SpadeRtError

EPILOG = """\
examples:
  spade-rt demo -o demo.png                                   # the embedded landscape model, no download
  spade-rt convert latest_net_G.pth --preset coco -o coco.safetensors
  spade-rt synthesize coco.safetensors --labels val_label/000000000139.png \\
      --instance val_inst/000000000139.png -o out.png
  spade-rt export coco.safetensors -o coco.onnx --graph dedup   # fastest on CPUs (ONNX Runtime)
  spade-rt export coco.safetensors -o coco_fp16.onnx --precision fp16 --output uint8
  spade-rt build coco_fp16.onnx -o coco.engine                  # TensorRT-RTX builds without a GPU
  spade-rt synthesize coco.engine --labels labels/ -o out/      # a folder, on the GPU
  spade-rt bench --preset ade20k                                # eager PyTorch vs ours, on this machine
  spade-rt serve                                                # live painter + HTTP API (demo model)
  spade-rt web -o site/                                         # the painter as a static site (in-browser)
  spade-rt triton coco.safetensors -o models/                   # a Triton Inference Server repository

Run `spade-rt COMMAND --help` for the options of each command.
"""

COMMANDS = (demo, serve, web, convert, synthesize, export, build, triton, train, bench, describe)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr, like every other error: what was wrong and where
    the help is (the usage block argparse prints first would hide it). Exit status 2, as argparse's."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="warnings and errors only, no progress"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add = sub.add_parser

    def add_parser(name, **kw):
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        return add(name, parents=[common], **kw)

    sub.add_parser = add_parser
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    logging.getLogger("PIL").setLevel(logging.WARNING)  # -v is spade-rt's debug, not Pillow's line per PNG chunk
    try:
        return args.func(args)
    except SpadeRtError as exc:
        sys.stderr.write(f"spade-rt {args.command}: error: {exc}\n")
        return 1
    except OSError as exc:  # a file that vanished or a disk that filled up mid-run: still one line
        where = f": {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"spade-rt {args.command}: error: {exc.strerror or exc}{where}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
