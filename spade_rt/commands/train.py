"""`spade-rt train`: the options live in spade_rt.training.options (torch-free), the loop is imported lazily."""

from __future__ import annotations

import argparse

from spade_rt.commands.common import require_toolchain


def run(args: argparse.Namespace) -> int:
    from spade_rt.io_utils import check_output_dir
    from spade_rt.training.train import checked_training_options  # torch-free

    check_output_dir(args.run_dir, "--out")  # before any data is read or any step is run
    checked_training_options(args)  # every value, before torch is imported
    require_toolchain("train", ("torch", "safetensors"))
    from spade_rt.training.train import run_from_args

    return run_from_args(args)


def register(sub) -> None:
    from spade_rt.training.options import TRAIN_DESCRIPTION, TRAIN_EPILOG, add_train_arguments  # torch-free

    p = sub.add_parser(
        "train", help="train a SPADE generator (resumable, torchrun-ready)", description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
    )  # fmt: skip
    add_train_arguments(p)
    p.set_defaults(func=run)
