"""The benchmark harness end to end on a tiny model (CI): it runs, records, and its records are coherent.

Speed is never asserted here: tests do not time things; `bench/results/` holds the measured figures.
"""

from __future__ import annotations

import json

from conftest import run_cli


def test_quick_bench_writes_json_markdown_and_chart(tmp_path):
    """No --data: the real COCO-Stuff sample that ships in the package (spade_rt/assets/coco_stuff_sample)."""
    out = tmp_path / "quick.json"
    peers_and_openvino = ("onnxruntime-plain", "openvino-plain-exact", "openvino", "openvino-dedup", "openvino-half")
    backends = ",".join(("torch", "onnxruntime", "onnxruntime-dedup", "tensorrt", *peers_and_openvino))
    proc = run_cli("bench", "--quick", "--preset", "coco", "--backends", backends, "--json", out)
    result = json.loads(out.read_text())
    assert result["config"]["inputs"].startswith("8 real label maps from coco_stuff_sample")
    assert set(result["backends"]) == {"torch", "onnxruntime", "onnxruntime-dedup", "tensorrt", *peers_and_openvino}
    # the random model spreads like real pictures, and the record says how it was made and how loaded we were
    assert result["reference_std"] >= 0.3 and "batch-norm statistics" in result["model"]["kind"]
    assert len(result["load_average"]["start"]) == 3 and len(result["load_average"]["end"]) == 3
    for name in ("onnxruntime-plain", "openvino-plain-exact", "openvino", "openvino-dedup"):
        entry = result["backends"][name]
        assert entry["status"] == "ok" and entry["tier"] == "exact", (name, entry)
        assert entry["accuracy"]["max_rel_l2"] < 1e-5, name  # exact tier: the same pictures as eager fp32
    half = result["backends"]["openvino-half"]  # offered only if export measured its picture within 40 dB
    assert half["status"] == "skipped" or (half["tier"] == "half" and half["accuracy"]["psnr_db"] >= 40)
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
    assert "| openvino | exact |" in md and "reference_std" in md and "Load average" in md
    assert "| onnxruntime |" in md and "speed-up" in md and "Command: `spade-rt bench --quick" in md
    assert (tmp_path / "quick.png").read_bytes()[:4] == b"\x89PNG"
    assert "| torch |" in proc.stdout
