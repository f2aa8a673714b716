"""Helpers shared by the subcommands: toolchain checks, argument parsers, info printing."""

from __future__ import annotations

import argparse
import json
import sys

from spade_rt.runtime.registry import require_toolchain  # noqa: F401  (re-exported for the commands)


def add_cache_dir_argument(parser, what: str = "the exported demo graph is kept") -> None:
    """``--cache-dir DIR``, the user cache of built files (spade_rt.cache), as every command spells it."""
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=f"where {what}: DIR/built/ (default: $SPADE_RT_CACHE, else ~/.cache/spade-rt)",
    )


def add_backend_argument(parser) -> None:
    """``--backend``: auto or a registry entry; the help says what auto picks, from the registry."""
    from spade_rt.runtime.registry import AUTO_ONNX_CPU, backend_names, default_backend

    rule = ", ".join(f"{graph} graphs {names[0]}" for graph, names in sorted(AUTO_ONNX_CPU.items(), reverse=True))
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", *backend_names()),
        help=f"default: by file kind (spade-rt model: {default_backend('native').name}, engine: "
        f"{default_backend('engine').name}; ONNX graph: the fastest exact backend installed, by the registry's "
        f"fixed rule: {rule})",
    )


def add_tier_argument(parser, lead: str = "precision tier") -> None:
    """``--tier``: its choices and help from the tier table and the backends' entries (``tiers.tier_help``)."""
    from spade_rt.runtime.tiers import TIER_METAVAR, tier_help

    parser.add_argument("--tier", default="auto", metavar=TIER_METAVAR, help=tier_help(lead))


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch size, a count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: expected 1 or more") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected 1 or more")
    return value


def parse_batch(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch {text!r}: expected N or MIN:OPT:MAX, e.g. 1:1:8") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"batch {text!r}: expected N or MIN:OPT:MAX, e.g. 1:1:8")
    return tuple(parts)


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 256x512") from None
    return h, w


def parse_bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected bytes or a number with K/M/G, e.g. 4G") from None


def print_info(info: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            sys.stdout.write(f"{key:<{width}}  \n")
            for k, v in value.items():
                sys.stdout.write(f"  {k:<{width - 2}}  {v}\n")
        else:
            sys.stdout.write(
                f"{key:<{width}}  {value:,}\n"
                if isinstance(value, int) and not isinstance(value, bool)
                else f"{key:<{width}}  {value}\n"
            )
