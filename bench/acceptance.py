"""The GPU acceptance criteria of issue 10, checked on `spade-rt bench --device cuda` records.

``bench/gpu_acceptance.sh`` runs the benches and then ``python -m spade_rt.bench.acceptance RESULT.json ...``,
which prints one table per record and, for coco at batch 1 / batch 8, each criterion with PASS or FAIL:

- spade-rt on ONNX Runtime's CUDA provider (the faster of its formulations) at least 4x eager fp32,
  host to host, at batch 1;
- faster than every PyTorch contestant that ran (torch.compile fp16 with CUDA graphs included), at batch 1
  and in batch-8 throughput;
- relative L2 against eager fp32 at most 1e-2.

Nothing here measures anything: it reads the records. Exit status 1 when a criterion fails or is missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPEEDUP = 4.0
MAX_REL_L2 = 1e-2
OURS = ("onnxruntime", "onnxruntime-onehot")  # spade-rt on the CUDA provider


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(record: dict) -> list[str]:
    cfg, machine = record["config"], record["machine"]
    lines = [
        f"{cfg['preset']} ngf {cfg['ngf']} {cfg['size'][0]}x{cfg['size'][1]} on {machine.get('device_name', '?')}, "
        f"{record.get('date', '?')}",
        f"  {'contestant':<20} {'host p50 ms':>11} {'device p50':>10} {'vs eager':>8} {'batch img/s':>12} "
        f"{'rel L2':>8}  memory MB",
    ]
    for name, e in record["backends"].items():
        if e.get("status") != "ok":
            lines.append(f"  {name:<20} skipped: {e.get('reason', '?')[:150]}")
            continue
        throughput = e.get("throughput") or {}
        best = max((t["images_per_s"] for t in throughput.values()), default=None)
        lines.append(
            f"  {name:<20} {e['latency_ms']['p50']:>11.2f} {_fmt((e.get('device_ms') or {}).get('p50'), '.2f'):>10} "
            f"{e['speedup_vs_baseline']:>7.2f}x {_fmt(best, '.1f'):>12} {e['accuracy']['max_rel_l2']:>8.1e}  "
            f"{_fmt(e.get('peak_memory_mb'), '.0f')}"
        )
    return lines


def criteria(record: dict, batch: str = "8") -> list[tuple[bool, str]]:
    """(passed, what) for each criterion on one record (meant for coco)."""
    ran = {n: e for n, e in record["backends"].items() if e.get("status") == "ok"}
    ours = [n for n in OURS if n in ran]
    if not ours:
        return [
            (
                False,
                "spade-rt on the CUDA provider did not run: "
                + "; ".join(
                    f"{n}: {record['backends'][n].get('reason', '?')}" for n in OURS if n in record["backends"]
                ),
            )
        ]
    best = min(ours, key=lambda n: ran[n]["latency_ms"]["p50"])
    e = ran[best]
    out = [
        (
            e["speedup_vs_baseline"] >= SPEEDUP,
            f"{best}: {e['speedup_vs_baseline']:.2f}x eager fp32 at batch 1 (>= {SPEEDUP:g}x)",
        )
    ]
    torch_names = [n for n in ran if n.startswith("torch")]
    for name in torch_names:
        if name == "torch":
            continue
        p50, theirs = e["latency_ms"]["p50"], ran[name]["latency_ms"]["p50"]
        out.append((p50 < theirs, f"{best} {p50:.2f} ms vs {name} {theirs:.2f} ms at batch 1"))
    mine = (e.get("throughput") or {}).get(batch, {}).get("images_per_s")
    for name in torch_names:
        theirs = (ran[name].get("throughput") or {}).get(batch, {}).get("images_per_s")
        if mine is None or theirs is None:
            out.append((False, f"batch {batch} throughput of {best} or {name} was not measured"))
            continue
        out.append((mine > theirs, f"{best} {mine:.1f} img/s vs {name} {theirs:.1f} img/s at batch {batch}"))
    for name in ours:
        err = ran[name]["accuracy"]["max_rel_l2"]
        out.append((err <= MAX_REL_L2, f"{name}: relative L2 {err:.2e} vs eager fp32 (<= {MAX_REL_L2:g})"))
    return out


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    failed = False
    for path in paths:
        record = json.loads(path.read_text())
        sys.stdout.write("\n".join(table(record)) + "\n")
        if record["config"]["preset"] == "coco":
            for ok, what in criteria(record):
                failed |= not ok
                sys.stdout.write(f"  {'PASS' if ok else 'FAIL'}  {what}\n")
        sys.stdout.write("\n")
    if not any(json.loads(p.read_text())["config"]["preset"] == "coco" for p in paths):
        sys.stdout.write("FAIL  no coco record: the acceptance criteria are stated for coco\n")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
