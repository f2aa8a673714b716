"""Precision tiers judged by the picture (spade_rt/runtime/tiers.py): each tier's 8-bit picture against the fp32
picture of the independent reference network (tests/reference_spade.py) within the tier's bound; a tier that
misses its bound is refused with one line; `--tier` is checked early, in one line; `export --tier int8` end to end.

Tiny models (4 channels, 64x64 and 32x32); OpenVINO and NNCF are installed by CI (the `openvino` and `int8`
extras): these tests fail, not skip, without them.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spade_rt.cli import main
from spade_rt.errors import BackendUnavailableError
from spade_rt.runtime.spec import report_path
from spade_rt.runtime.synthesizer import Synthesizer
from spade_rt.runtime.tiers import TIERS

from conftest import run_cli
from reference_spade import ref_generator_for, ref_semantics


def psnr_8bit(got: np.ndarray, want: np.ndarray) -> float:
    """Worst-map PSNR of two float (N, 3, H, W) outputs as 8-bit pictures (the test's own tensor2im)."""

    def pic(x):
        return np.clip((x.astype(np.float64) + 1) / 2 * 255, 0, 255).astype(np.uint8).astype(np.float64)

    worst = math.inf
    for a, b in zip(pic(got), pic(want)):
        mse = np.mean((a - b) ** 2)
        worst = min(worst, math.inf if mse == 0 else 10 * math.log10(255**2 / mse))
    return worst


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny COCO-Stuff model (its label set: export measures its tiers on the shipped real maps), its graph."""
    tmp = tmp_path_factory.mktemp("tiers")
    ref = ref_generator_for("coco", 4, seed=31, crop_size=64)
    torch.save(ref.state_dict(), tmp / "G.pth")
    model = tmp / "m.safetensors"
    assert main(["convert", str(tmp / "G.pth"), "--preset", "coco", "--crop-size", "64", "-o", str(model), "-q"]) == 0
    graph = tmp / "g.onnx"
    assert main(["export", str(model), "-o", str(graph), "--batch", "1:1:2", "-q"]) == 0
    return ref, model, graph


def real_maps(coco_sample, n=3):
    from PIL import Image

    labels = sorted((coco_sample / "val_label").glob("*.png"))[:n]
    ids = np.stack([np.array(Image.open(p).resize((64, 64), Image.NEAREST)) for p in labels]).astype(np.int64)
    ids[ids == 255] = 182  # dontcare
    inst = np.stack(
        [np.array(Image.open(coco_sample / "val_inst" / p.name).resize((64, 64), Image.NEAREST)) for p in labels]
    )
    return ids.astype(np.uint8), inst


def reference_pictures(ref, ids, inst):
    with torch.no_grad():
        return ref(ref_semantics(ids, 183, inst), None).numpy()


def test_the_table_names_each_bound():
    assert (TIERS["exact"].metric, TIERS["exact"].bound) == ("max_rel_l2", 1e-5)
    assert (TIERS["half"].metric, TIERS["half"].bound) == ("psnr_db", 40.0)
    assert (TIERS["int8"].metric, TIERS["int8"].bound) == ("psnr_db", 35.0)
    assert TIERS["half"].within(40.0) and not TIERS["half"].within(39.9) and not TIERS["half"].within(float("nan"))


def test_export_records_each_tier_by_its_picture_on_real_maps(tiny):
    _, _, graph = tiny
    tiers = json.loads(report_path(graph).read_text())["tiers"]
    for name in ("exact", "half"):
        entry = tiers[name]
        assert entry["maps_from"].startswith("real COCO-Stuff val maps") and entry["maps"] == 8
        assert {"psnr_db", "max_levels", "max_rel_l2"} <= set(entry) and entry["bound"] == TIERS[name].bound
    assert tiers["exact"]["offered"] and tiers["exact"]["max_rel_l2"] <= 1e-5 and tiers["exact"]["max_levels"] <= 1
    assert tiers["half"]["offered"] == (tiers["half"]["psnr_db"] >= 40)
    assert not tiers["int8"]["offered"] and "--tier int8" in tiers["int8"]["reason"]
    out = run_cli("inspect", graph).stdout
    assert "tier half" in out and "worst-map PSNR" in out and ">= 40 dB PSNR" in out and "level(s)" in out


def test_half_tier_picture_is_within_its_bound_of_the_fp32_picture(tiny, coco_sample):
    ref, _, graph = tiny
    if not json.loads(report_path(graph).read_text())["tiers"]["half"]["offered"]:
        pytest.fail("half is not offered on this CPU's tiny graph: " + str(json.loads(report_path(graph).read_text())))
    ids, inst = real_maps(coco_sample)
    want = reference_pictures(ref, ids, inst)
    with Synthesizer(graph, tier="half") as half, Synthesizer(graph) as exact:
        assert half.backend.name == "openvino" and half.tier == "half" and exact.tier == "exact"
        assert half.backend.config["INFERENCE_PRECISION_HINT"] in ("bf16", "f16")
        got_half = half(ids, inst, output="float")
        got_exact = exact(ids, inst, output="float")
    assert psnr_8bit(got_half, want) >= TIERS["half"].bound
    assert np.abs(got_half - want).max() > 0  # the tier really ran in reduced precision
    assert np.abs(got_exact - want).max() < 1e-4


def test_a_tier_over_its_bound_is_refused_in_one_line(tiny, tmp_path, coco_sample):
    _, _, graph = tiny
    copy = tmp_path / "g.onnx"
    copy.write_bytes(graph.read_bytes())
    data = json.loads(report_path(graph).read_text())
    data["tiers"]["half"].update(psnr_db=31.5, offered=False)
    report_path(copy).write_text(json.dumps(data))
    with pytest.raises(BackendUnavailableError, match=r"half tier of g.onnx is not offered: .*31.5 dB.*bound 40 dB"):
        Synthesizer(copy, tier="half")
    label = sorted((coco_sample / "val_label").glob("*.png"))[0]
    proc = run_cli("synthesize", copy, "--labels", label, "--tier", "half", "-o", tmp_path / "o.png", check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1 and "not offered" in proc.stderr
    assert not (tmp_path / "o.png").exists()
    report_path(copy).unlink()  # no record at all: never measured
    with pytest.raises(BackendUnavailableError, match="never measured"):
        Synthesizer(copy, tier="half")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--tier", "fast"], "--tier fast: expected one of auto, exact, half, int8"),
        (["--tier", "int8"], "--tier int8 needs the int8 graph"),
        (["--tier", "half", "--backend", "onnxruntime"], "--tier half runs on openvino, not on --backend onnxruntime"),
    ],
)
def test_bad_tier_flags_are_one_line(tiny, tmp_path, coco_sample, args, words):
    _, _, graph = tiny
    label = sorted((coco_sample / "val_label").glob("*.png"))[0]
    proc = run_cli("synthesize", graph, "--labels", label, *args, "-o", tmp_path / "o.png", check=False)
    assert proc.returncode in (1, 2) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_tier_on_a_native_model_is_refused(tiny, tmp_path, coco_sample):
    _, model, _ = tiny
    label = sorted((coco_sample / "val_label").glob("*.png"))[0]
    proc = run_cli("synthesize", model, "--labels", label, "--tier", "half", "-o", tmp_path / "o.png", check=False)
    assert proc.returncode == 1 and "needs an exported ONNX graph" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_int8_export_end_to_end(tiny, tmp_path, coco_sample):
    """`export --tier int8`: calibrated on the real train maps, judged on the val maps; written only within the
    bound (then both runtimes run it, as its own tier, within 35 dB of the reference's picture), else one line."""
    ref, model, _ = tiny
    out = tmp_path / "g_int8.onnx"
    proc = run_cli("export", model, "-o", out, "--tier", "int8", "--cache-dir", tmp_path / "cache", check=False)
    if proc.returncode != 0:
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "the int8 tier misses its bound" in proc.stderr and "nothing was written" in proc.stderr
        assert not out.exists() and not report_path(out).exists()
        return
    entry = json.loads(report_path(out).read_text())["tiers"]["int8"]
    assert entry["offered"] and entry["psnr_db"] >= 35 and isinstance(entry["kept_in_fp32"], list)
    assert entry["quantization"]["calibration"].startswith("13 real COCO-Stuff train maps")
    ids, inst = real_maps(coco_sample)
    want = reference_pictures(ref, ids, inst)
    for backend in ("onnxruntime", "openvino"):
        with Synthesizer(out, backend=backend) as s:
            assert s.tier == "int8"
            got = s(ids, inst, output="float")
        assert psnr_8bit(got, want) >= TIERS["int8"].bound
        assert np.abs(got - want).max() > 0  # quantized: not the fp32 graph
    label = sorted((coco_sample / "val_label").glob("*.png"))[0]
    bad = run_cli("synthesize", out, "--labels", label, "--tier", "exact", "-o", tmp_path / "o.png", check=False)
    assert bad.returncode == 1 and "this graph is the int8 tier's" in bad.stderr


def test_serve_says_which_tier_it_serves(tiny):
    """A real server on loopback: GET /v1/model's top-level "tier" is the tier asked for (and exact by default)."""
    import httpx

    from spade_rt.bench.serve_load import ServeProcess

    _, _, graph = tiny
    with ServeProcess(graph, "--tier", "half") as half:
        info = httpx.get(f"{half.url}/v1/model").json()
        assert info["tier"] == "half" and info["backend"] == "openvino"
    with ServeProcess(graph) as exact:
        assert httpx.get(f"{exact.url}/v1/model").json()["tier"] == "exact"


def test_triton_python_backend_takes_the_tier(tiny, tmp_path):
    """`triton --backend python --tier half`: the tier travels in the model's parameters with export's record
    beside the graph (so the runtime inside Triton offers it as here); the native backends refuse --tier."""
    _, _, graph = tiny
    repo = tmp_path / "models"
    argv = ["triton", graph, "-o", repo, "--backend", "python", "--device", "cpu", "--tier", "half", "--name", "g"]
    run_cli(*argv)
    config = (repo / "g" / "config.pbtxt").read_text()
    assert 'key: "spade_rt_tier"' in config and 'string_value: "half"' in config
    copied = repo / "g" / "1" / "model.onnx"
    assert (
        json.loads(report_path(copied).read_text())["tiers"]["half"]
        == json.loads(report_path(graph).read_text())["tiers"]["half"]
    )
    with Synthesizer(copied, backend="openvino", tier="half") as s:  # what triton_python.py opens for this tier
        assert s.tier == "half"
    bad = run_cli("triton", graph, "-o", tmp_path / "m2", "--tier", "half", "--device", "cpu", check=False)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "--backend python" in bad.stderr
