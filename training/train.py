"""Entry points of training: ``spade-rt train`` and ``python -m spade_rt.training.train`` (torchrun).

    torchrun --nproc_per_node 8 -m spade_rt.training.train --preset coco --dataroot D --batch-size 32 --out RUN
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m spade_rt.training.train ...      # RUN must be on storage every node sees
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from spade_rt.errors import ConfigError, SpadeRtError
from spade_rt.training.options import (
    TRAIN_DESCRIPTION,
    TRAIN_EPILOG,
    TrainOptions,
    add_train_arguments,
    check_train_options,
)

log = logging.getLogger("spade_rt")

__all__ = ["add_train_arguments", "checked_training_options", "main", "run_from_args", "training_options"]


def training_options(args: argparse.Namespace) -> TrainOptions:
    """Parsed options -> TrainOptions; with --resume, options not given come from RUN/options.json."""
    given = {k: v for k, v in vars(args).items() if k in TrainOptions.field_names()}
    if getattr(args, "resume", False):
        path = Path(args.run_dir) / "options.json"
        if not path.is_file():
            raise ConfigError(f"nothing to resume: {path} does not exist (start the run without --resume)")
        saved = json.loads(path.read_text())
        unknown = sorted(set(saved) - TrainOptions.field_names())
        if unknown:
            raise ConfigError(f"{path} has options this spade-rt does not know: {', '.join(unknown)}")
        given = {**saved, **given}
    return TrainOptions.from_flat(given)


def checked_training_options(args: argparse.Namespace) -> TrainOptions:
    """``training_options`` with every value checked (``check_train_options``), torch-free: `spade-rt train`
    calls it before torch is imported; a torchrun process, with the number of processes torchrun starts."""
    options = training_options(args)
    check_train_options(options, int(os.environ.get("WORLD_SIZE", "1")))
    return options


def run_from_args(args: argparse.Namespace) -> int:
    options = checked_training_options(args)
    from spade_rt.training.training_loop import training_loop

    training_loop(
        args.run_dir,
        options,
        resume=getattr(args, "resume", False),
        progress=not getattr(args, "quiet", False),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m spade_rt.training.train``: one process of a (torchrun) run."""
    parser = argparse.ArgumentParser(
        prog="python -m spade_rt.training.train",
        description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bar")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet or rank else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    logging.getLogger("PIL").setLevel(logging.WARNING)  # -v: not Pillow's line per PNG chunk
    if rank:
        args.quiet = True  # one progress bar: process 0's
    try:
        return run_from_args(args)
    except SpadeRtError as exc:
        sys.stderr.write(f"spade-rt train: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
