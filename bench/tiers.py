"""Each precision tier on each CPU runtime, with its picture: a short, bounded measurement for a busy machine.

    python -m spade_rt.bench.tiers --model spade_rt/assets/landscape_demo.safetensors --out DIR [--repeats 5]
    python -m spade_rt.bench.tiers --preset coco --ngf 64 --out DIR   # the bench's realistic weights, 256x256

Exports the model's static graph (exact; export measures half) and its int8 graph (`export --tier int8`), then
times, interleaved in one process (p50 of ``--repeats`` rounds, one real map per round): eager PyTorch fp32
(the baseline), the exact graph on ONNX Runtime and OpenVINO, the half tier on OpenVINO, the int8 graph on ONNX
Runtime and OpenVINO. Accuracy: the worst-map PSNR of each 8-bit picture against the eager fp32 picture on the
shipped COCO-Stuff val maps (ids folded into the model's range for other label sets, as ``spade-rt bench``
does), and the largest level difference. Writes ``tiers-<model>.json``/``.md`` and, per tier, a side-by-side
PNG (fp32 | tier | difference amplified 8x) into ``--out``. The full ``spade-rt bench`` has the same
contestants (``openvino-half``, ``openvino-int8``, ``onnxruntime-int8``, ``openvino-plain-int8``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

from spade_rt.bench.harness import interleaved
from spade_rt.bench.run import load_average, real_inputs
from spade_rt.images import float_to_uint8
from spade_rt.model.native_format import build_generator, load_model
from spade_rt.model.semantics import one_hot_semantics
from spade_rt.runtime.tiers import TIERS, picture_figures
from spade_rt.sample_data import coco_stuff_sample

log = logging.getLogger(__name__)


def side_by_side(ref: np.ndarray, got: np.ndarray, path: Path) -> None:
    """fp32 | tier | |difference| x 8, one float (3, H, W) map each, as one PNG."""
    from PIL import Image

    a, b = float_to_uint8(ref[None])[0], float_to_uint8(got[None])[0]
    diff = np.clip(np.abs(a.astype(np.int16) - b.astype(np.int16)) * 8, 0, 255).astype(np.uint8)
    gap = np.full((a.shape[0], 4, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([a, gap, b, gap, diff], axis=1)).save(path)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a spade-rt model (else the bench's realistic weights of --preset, --ngf)")
    p.add_argument("--preset", default="coco")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--out", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--maps", type=int, default=8)
    p.add_argument("--graph", choices=("static", "dedup"), default="static", help="the exact graph's kind")
    p.add_argument("--skip-int8", action="store_true", help="no int8 export (where it is known to be refused)")
    return p


def _graphs(a: argparse.Namespace, name: str, work: Path) -> tuple[Path, Path, str | None]:
    """The exact graph (export measures half on it) and the int8 graph, exported once into ``work``; the int8
    export's refusal (one line) or None."""
    from spade_rt.export.exporter import export_model
    from spade_rt.export.onnx_graph import GraphOptions

    graph, int8 = work / f"{name}.onnx", work / f"{name}_int8.onnx"
    if not graph.is_file():
        export_model(a.model, graph, GraphOptions(batch=(1, 1, 1), graph=a.graph))
    int8_error = "not tried (--skip-int8)" if a.skip_int8 else None
    if not int8.is_file() and not a.skip_int8:
        try:
            export_model(a.model, int8, GraphOptions(batch=(1, 1, 1), graph=a.graph), tier="int8",
                         cache_dir=work / "cache")  # fmt: skip
        except Exception as exc:  # the int8 tier refused (one line): recorded, the rest still measured
            int8_error = str(exc)
    return graph, int8, int8_error


def _write(out: Path, name: str, record: dict, results: dict) -> None:
    """``tiers-<name>.json`` (the record) and ``tiers-<name>.md`` (its table), printed too."""
    (out / f"tiers-{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "| contestant | tier | p50 ms | speed-up vs eager | worst-map PSNR dB | max level diff |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | {r['tier']} | {r['p50_ms']} | {r['speedup']}x | {r['psnr_db']} | {r['max_levels']} |"
        )
    (out / f"tiers-{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from spade_rt.runtime.synthesizer import Synthesizer

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".work"
    work.mkdir(exist_ok=True)
    load_start = load_average()
    if a.model is None:  # realistic random weights (batch-norm statistics from real maps), as `spade-rt bench`
        from spade_rt.bench.run import CALIBRATION_MAPS, realistic_model
        from spade_rt.model.config import GeneratorConfig

        gcfg = GeneratorConfig.from_preset(a.preset, ngf=a.ngf)
        path = work / f"{a.preset}-ngf{a.ngf}.safetensors"
        if not path.is_file():
            realistic_model(gcfg, path, real_inputs(gcfg.label_spec, coco_stuff_sample(), CALIBRATION_MAPS))
        a.model = str(path)
    native = load_model(a.model)
    cfg = native.config
    name = Path(a.model).stem + ("" if a.graph == "static" else f"-{a.graph}")
    graph, int8, int8_error = _graphs(a, name, work)
    inputs = real_inputs(cfg.label_spec, coco_stuff_sample(), a.maps)
    net = build_generator(native).eval()

    def eager(ids, edges, z):
        with torch.inference_mode():
            seg = one_hot_semantics(torch.from_numpy(ids), cfg.num_label_ids, None if edges is None else
                                    torch.from_numpy(edges))  # fmt: skip
            return net(seg, None).numpy()

    runners = {"torch (eager fp32, baseline)": ("exact", eager)}
    opened = []
    for label, path, backend, tier in (
        ("onnxruntime exact", graph, "onnxruntime", None),
        ("openvino exact", graph, "openvino", None),
        ("openvino half", graph, "openvino", "half"),
        ("onnxruntime int8", int8, "onnxruntime", None),
        ("openvino int8", int8, "openvino", None),
    ):
        if not path.is_file():
            continue
        try:
            s = Synthesizer(path, backend=backend, tier=tier)
        except Exception as exc:
            log.warning("%s: not run (%s)", label, exc)
            continue
        opened.append(s)
        runners[label] = (s.tier, s.backend.run)
    ref = [eager(ids[None], None if e is None else e[None], None) for ids, e in inputs]
    results = {}
    for label, (tier, run) in runners.items():
        got = [run(ids[None], None if e is None else e[None], None) for ids, e in inputs]
        figs = picture_figures(np.concatenate(got), np.concatenate(ref))
        results[label] = {"tier": tier, "psnr_db": figs["psnr_db"], "max_levels": figs["max_levels"]}
        if tier != "exact" and label.startswith("openvino"):
            worst = int(np.argmin(figs["per_map_psnr_db"]))
            side_by_side(ref[worst][0], got[worst][0], out / f"tier-{tier}-{name}.png")
    rounds = {"i": 0}

    def call(run):
        def f():
            ids, e = inputs[rounds["i"] % len(inputs)]
            run(ids[None], None if e is None else e[None], None)

        return f

    for run in runners.values():  # warm-up: compile, first calls
        for _ in range(2):
            call(run[1])()
    timings = interleaved({k: call(v[1]) for k, v in runners.items()}, a.repeats, None,
                          progress=lambda r: rounds.__setitem__("i", r + 1))  # fmt: skip
    base = timings["torch (eager fp32, baseline)"].summary()["p50"]
    for label, t in timings.items():
        p50 = t.summary()["p50"]
        results[label].update(p50_ms=round(p50, 1), speedup=round(base / p50, 2))
    for s in opened:
        s.close()
    record = {
        "date": date.today().isoformat(),
        "model": Path(a.model).name,
        "size": list(cfg.output_hw),
        "maps": f"{len(inputs)} shipped COCO-Stuff val maps (ids folded into the model's range)",
        "repeats": a.repeats,
        "bounds": {n: t.bound_words for n, t in TIERS.items()},
        "int8_export": int8_error or "ok",
        "int8_report": json.loads((work / f"{name}_int8.onnx.json").read_text())["tiers"]["int8"]
        if int8.is_file()
        else None,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": len(os.sched_getaffinity(0))},
        "load_average": {"start": load_start, "end": load_average()},
        "results": results,
        "command": "python -m spade_rt.bench.tiers " + " ".join(argv or []),
    }
    _write(out, name, record, results)
    print("load", record["load_average"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
