"""Benchmark results -> JSON (the record), Markdown (the table the README quotes), PNG (the chart)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from spade_rt.io_utils import atomic_path, atomic_write_json

log = logging.getLogger(__name__)


def markdown_table(result: dict) -> str:
    cfg, m = result["config"], result["machine"]
    base = result["baseline"]
    lines = [
        f"**{cfg['preset']}**, ngf {cfg['ngf']}, {cfg['size'][0]}x{cfg['size'][1]}, batch 1 — "
        f"{m['device_name']} ({m['cpus']} CPUs), {result['date']}",
        "",
        "| backend | tier | p50 ms | p90 ms | p99 ms | speed-up vs eager | peak memory MB | rel. L2 vs fp32 | PSNR dB "
        "|",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in result["backends"].items():
        if e["status"] != "ok":
            lines.append(f"| {name} | — | — | — | — | — | — | — | — |  ")
            continue
        lat, acc = e["latency_ms"], e["accuracy"]
        psnr = "exact" if acc["psnr_db"] == float("inf") else f"{acc['psnr_db']:.1f}"
        speed = "1.00x (baseline)" if name == base else f"{e['speedup_vs_baseline']:.2f}x"
        lines.append(
            f"| {name} | {e.get('tier', '')} | {lat['p50']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} | {speed} | "
            f"{'—' if e['peak_memory_mb'] is None else format(e['peak_memory_mb'], '.0f')} | "
            f"{acc['max_rel_l2']:.1e} | {psnr} |"
        )
    skipped = [f"- {n}: {e['reason']}" for n, e in result["backends"].items() if e["status"] != "ok"]
    throughput = [
        f"- {n}: " + ", ".join(f"batch {b}: {t['images_per_s']:.2f} img/s" for b, t in e["throughput"].items())
        for n, e in result["backends"].items()
        if e["status"] == "ok" and e.get("throughput")
    ]
    device = [
        f"- {n}: p50 {e['device_ms']['p50']:.2f} ms, p90 {e['device_ms']['p90']:.2f} ms ({e.get('device_timing', '')})"
        for n, e in result["backends"].items()
        if e["status"] == "ok" and e.get("device_ms")
    ]
    if device:
        lines += ["", "Device time of the same batch-1 calls (CUDA events):", *device]
    if throughput:
        lines += ["", "Throughput (median over repetitions):", *throughput]
    if skipped:
        lines += ["", "Not run here:", *skipped]
    load = result.get("load_average") or {}
    if load:
        lines += ["", f"Load average (1, 5, 15 min; `uptime`): start {load.get('start')}, end {load.get('end')}"]
    if result.get("reference_std") is not None:
        model = result.get("model", {}).get("kind", "")
        lines += ["", f"Model: {model}; eager output std over the maps (reference_std): {result['reference_std']:.3f}"]
    lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def default_stem(result: dict) -> str:
    cfg = result["config"]
    return f"{cfg['preset']}-ngf{cfg['ngf']}-{cfg['size'][0]}x{cfg['size'][1]}"


def write_results(result: dict, json_path: Path) -> dict[str, Path]:
    """``X.json`` plus ``X.md`` and ``X.png`` beside it."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    paths = {"json": json_path, "md": json_path.with_suffix(".md"), "png": json_path.with_suffix(".png")}
    atomic_write_json(paths["json"], result)
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(markdown_table(result))
    try:
        _chart(result, paths["png"])
    except ImportError:
        log.warning("matplotlib is not installed: no chart (pip install 'spade-rt[bench]')")
        paths.pop("png")
    for path in paths.values():
        log.info("wrote %s", path)
    return paths


def _chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, e in result["backends"].items() if e["status"] == "ok"]
    p50 = [result["backends"][n]["latency_ms"]["p50"] for n in names]
    p90 = [result["backends"][n]["latency_ms"]["p90"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.55 * len(names)))
    y = range(len(names))
    ax.barh(y, p50, color=["#888888" if n == result["baseline"] else "#2a7ab9" for n in names])
    ax.errorbar(
        p50, y, xerr=[[0] * len(names), [b - a for a, b in zip(p50, p90)]], fmt="none", ecolor="black", capsize=3, lw=1
    )
    for i, n in enumerate(names):
        e = result["backends"][n]
        label = "baseline" if n == result["baseline"] else f"{e['speedup_vs_baseline']:.2f}x"
        ax.text(p90[i], i, f"  {p50[i]:.0f} ms ({label})", va="center", fontsize=9)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("latency per image, batch 1 (ms; bar = p50, whisker = p90)")
    cfg, m = result["config"], result["machine"]
    ax.set_title(
        f"SPADE {cfg['preset']} ngf {cfg['ngf']} {cfg['size'][0]}x{cfg['size'][1]} — {m['device_name']}", fontsize=10
    )
    ax.set_xlim(0, max(p90) * 1.6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())
