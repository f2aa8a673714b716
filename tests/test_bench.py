"""The benchmark harness end to end on a tiny model (CI): it runs, records, and its records are coherent.

Speed is never asserted here: tests do not time things; `bench/results/` holds the measured figures.
"""

from __future__ import annotations

import json

from conftest import run_cli


def test_quick_bench_writes_json_markdown_and_chart(tmp_path):
    """No --data: the real COCO-Stuff sample that ships in the package (spade_rt/assets/coco_stuff_sample)."""
    out = tmp_path / "quick.json"
    backends = "torch,onnxruntime,onnxruntime-dedup,tensorrt"
    proc = run_cli("bench", "--quick", "--preset", "coco", "--backends", backends, "--json", out)
    result = json.loads(out.read_text())
    assert result["config"]["inputs"].startswith("8 real label maps from coco_stuff_sample")
    assert set(result["backends"]) == {"torch", "onnxruntime", "onnxruntime-dedup", "tensorrt"}
    base = result["backends"]["torch"]
    ours = result["backends"]["onnxruntime"]
    for entry in (base, ours):
        assert entry["status"] == "ok"
        lat = entry["latency_ms"]
        assert lat["n"] == 3 and 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
        assert entry["peak_memory_mb"] is not None and entry["peak_memory_mb"] >= 0
        assert entry["throughput"]["2"]["images_per_s"] > 0
    assert base["accuracy"]["max_rel_l2"] == 0.0  # the baseline against itself
    assert ours["accuracy"]["max_rel_l2"] < 1e-5 and ours["accuracy"]["maps"] == 8  # real COCO-Stuff maps
    assert result["backends"]["onnxruntime-dedup"]["accuracy"]["max_rel_l2"] < 1e-5
    assert abs(ours["speedup_vs_baseline"] - base["latency_ms"]["p50"] / ours["latency_ms"]["p50"]) < 1e-9
    if result["machine"]["device"] == "cpu":
        assert (
            result["backends"]["tensorrt"]["status"] == "skipped" and "GPU" in result["backends"]["tensorrt"]["reason"]
        )
    assert result["machine"]["versions"]["torch"] and result["date"]
    md = (tmp_path / "quick.md").read_text()
    assert "| onnxruntime |" in md and "speed-up" in md and "Command: `spade-rt bench --quick" in md
    assert (tmp_path / "quick.png").read_bytes()[:4] == b"\x89PNG"
    assert "| torch |" in proc.stdout
