"""`spade-rt bench`: eager PyTorch vs spade-rt, side by side, on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from spade_rt.commands.common import parse_size, positive_int, require_toolchain
from spade_rt.errors import InputError
from spade_rt.presets import preset_names
from spade_rt.runtime.registry import all_contestants


def run(args: argparse.Namespace) -> int:
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    try:
        batches = tuple(int(b) for b in args.batch.split(","))
    except ValueError:
        raise InputError(f"--batch {args.batch!r}: expected comma-separated sizes, e.g. 1,4,8") from None
    if min(batches) < 1:
        raise InputError(f"--batch {args.batch!r}: expected sizes of 1 or more, e.g. 1,4,8")
    check_bench_paths(args)  # before torch is imported and the model made: nothing for a run that cannot finish
    require_toolchain("bench")
    from spade_rt.bench.run import BenchSettings, command_line, run_bench

    if args.quick:  # CI: proves the harness end to end on a tiny model; its timings mean nothing
        args.ngf, args.size, args.repeats, args.warmup = 4, args.size or (64, 64), 3, 1
        args.warmup_max = min(args.warmup_max, 3)
        batches = (1, 2)
    settings = BenchSettings(
        preset=args.preset,
        ngf=args.ngf,
        size=args.size,
        backends=backends,
        batches=batches,
        device=args.device,
        model=Path(args.model) if args.model else None,
        data_dir=Path(args.data) if args.data else None,
        repeats=args.repeats,
        warmup=args.warmup,
        warmup_max_calls=args.warmup_max,
        settle_tolerance=args.settle,
        json_path=Path(args.json) if args.json else None,
        command=command_line(),
        measure_memory=not args.no_memory,
    )
    run_bench(settings)
    return 0


def check_bench_paths(args: argparse.Namespace) -> None:
    """--data must hold label maps; the result files (--json, else bench/results/ here) must be writable."""
    from spade_rt.io_utils import check_output_dir, check_output_file

    if args.data is not None:
        labels = Path(args.data) / "val_label"
        if not labels.is_dir() or not any(labels.glob("*.png")):
            raise InputError(
                f"--data {args.data}: no label maps in {labels}; expected a folder in the COCO-Stuff layout "
                "(val_label/*.png, val_inst/*.png), or no --data for the sample that ships with spade-rt"
            )
    if args.json is None:
        check_output_dir(Path("bench") / "results", "the results folder (--json chooses another place)")
        return
    json_path = check_output_file(args.json, "--json", (".json",))
    for beside in (json_path.with_suffix(".md"), json_path.with_suffix(".png")):
        check_output_file(beside, "--json's companion")


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="eager PyTorch vs our graph and engine, side by side, on this machine",
        description="Time the original formulation (eager PyTorch fp32, one-hot input) against stronger PyTorch "
        "baselines and spade-rt's graph/engine, interleaved in one run, on real label maps; report latency "
        "percentiles, throughput, memory, speed-up and accuracy vs fp32. Writes JSON + Markdown + PNG under "
        "bench/results/<machine>-<date>/.",
    )
    p.add_argument("--preset", default="ade20k", choices=preset_names(), help="label set and size (default ade20k)")
    p.add_argument("--ngf", type=int, default=64, help="generator width (default 64: the full-size network)")
    p.add_argument("--size", type=parse_size, metavar="HxW", help="output size (default: the preset's)")
    p.add_argument("--model", help="a spade-rt model to time instead of trained-looking random weights")
    p.add_argument(
        "--backends",
        default="torch,torch-compile,onnxruntime,onnxruntime-dedup,tensorrt",
        help=f"comma-separated, some of {', '.join(all_contestants())}: torch is the baseline (always run), "
        "onnxruntime the static graph, onnxruntime-dedup the CPU graph; those that cannot run here are recorded "
        "as skipped, with the reason",
    )
    p.add_argument("--batch", default="1,4", help="batch sizes; 1 gives latency, larger ones throughput")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the contestants run (default cpu)")
    p.add_argument(
        "--repeats", type=positive_int, default=10, help="interleaved repetitions at batch 1, 1 or more (default 10)"
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="warm-up calls per backend and batch at least (default 2); then more until the timings settle",
    )
    p.add_argument(
        "--warmup-max",
        type=int,
        default=60,
        metavar="N",
        help="at most N warm-up calls per backend and batch (default 60; the record says if they settled)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=0.05,
        metavar="FRACTION",
        help="warm-up ends when the last 5 calls lie within this fraction of their median (default 0.05)",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="a folder in the COCO-Stuff layout (DIR/val_label/*.png, DIR/val_inst/) to time on (default: the "
        "real COCO-Stuff sample that ships in the package)",
    )
    p.add_argument("--json", metavar="OUT.json", help="result file (.md and .png go beside it)")
    p.add_argument("--quick", action="store_true", help="tiny model, few repeats: proves the harness, not speed")
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory measurement (a fresh process per contestant: minutes for full-size networks)",
    )
    p.set_defaults(func=run)
