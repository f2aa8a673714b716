"""The OpenVINO backend: the same Synthesizer contract as ONNX Runtime, exact against the PyTorch network and
ONNX Runtime, its model cache, the precision tiers (measured at export before they are offered), the `auto`
rule for ONNX graphs on CPUs, and what `spade-rt inspect` shows.

OpenVINO is installed by CI (the `openvino` extra); these tests fail, not skip, without it.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from spade_rt.cli import main
from spade_rt.errors import BackendUnavailableError, ConfigError
from spade_rt.runtime.onnx_meta import read_onnx_metadata
from spade_rt.runtime.openvino_backend import OpenVinoBackend, tier_available
from spade_rt.runtime.registry import AUTO_ONNX_CPU, auto_backend, get_backend
from spade_rt.runtime.spec import report_path
from spade_rt.runtime.synthesizer import Synthesizer
from spade_rt.runtime.tiers import TIERS

from conftest import run_cli
from reference_spade import blobby_labels, ref_generator_for, ref_semantics, rel_l2


def _export(tmp, ref, preset, size, graph):
    torch.save(ref.state_dict(), tmp / "G.pth")
    model = tmp / "m.safetensors"
    if not model.is_file():
        args = ["convert", str(tmp / "G.pth"), "--preset", preset, "--crop-size", str(size), "-o", str(model), "-q"]
        assert main(args) == 0
    out = tmp / f"{preset}_{graph}.onnx"
    assert main(["export", str(model), "-o", str(out), "--batch", "1:1:2", "--graph", graph, "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ov")
    ref = ref_generator_for("coco", 4, seed=11, crop_size=64)
    return ref, _export(tmp, ref, "coco", 64, "static"), _export(tmp, ref, "coco", 64, "dedup")


def want(ref, ids, inst):
    with torch.no_grad():
        return ref(ref_semantics(ids, 183, inst), None).numpy()


@pytest.mark.parametrize("graph", ["static", "dedup"])
def test_openvino_matches_pytorch_and_onnxruntime(coco, graph):
    ref, static, dedup = coco
    path = static if graph == "static" else dedup
    ids = blobby_labels(3, 64, 64, 183, seed=21)
    inst = blobby_labels(3, 64, 64, 5, seed=22, cell=20)
    expected = want(ref, ids, inst)
    with Synthesizer(path, backend="openvino") as ov, Synthesizer(path, backend="onnxruntime") as ort:
        assert ov.backend.name == "openvino" and ov.backend.tier == "exact"
        assert ov.backend.config["INFERENCE_PRECISION_HINT"] == "f32"  # OpenVINO's CPU default may be bf16
        assert ov.spec == ort.spec and ov.spec.max_batch == 2
        got = ov(ids, inst, output="float")  # 3 > max batch 2: two calls, two compiled shapes
        assert got.shape == (3, 3, 64, 64)
        assert rel_l2(got, expected) < 1e-5
        assert rel_l2(got, ort(ids, inst, output="float")) < 1e-5
        one = ov(ids[0], inst[0])  # (H, W) -> (H, W, 3) uint8
        assert one.shape == (64, 64, 3) and one.dtype == np.uint8
        again = ov(ids[:1], inst[:1], output="float")
        np.testing.assert_array_equal(again[0], got[0])  # outputs are copies, not views of reused buffers
        assert ov.last_times.compute_ms > 0


def test_second_start_loads_the_compiled_model_from_the_cache(coco, tmp_path):
    _, static, _ = coco
    ids = blobby_labels(1, 64, 64, 183, seed=23)
    edges = np.zeros_like(ids)
    outs = []
    for _ in range(2):
        with OpenVinoBackend(static, cache_dir=tmp_path / "cache") as backend:
            outs.append(backend.run(ids, edges, None))
            outs[-1] = (outs[-1], list(backend.loaded_from_cache))
    (first, first_cached), (second, second_cached) = outs
    assert first_cached == [False] and second_cached == [True]
    assert any((tmp_path / "cache").iterdir())
    np.testing.assert_array_equal(first, second)
    with OpenVinoBackend(static, cache=False) as backend:
        backend.run(ids, edges, None)
        assert backend.cache_dir is None and backend.loaded_from_cache == [False]


def test_tiers_are_measured_at_export_and_shown_by_inspect(coco):
    _, static, _ = coco
    report = json.loads(report_path(static).read_text())
    tiers = report["tiers"]
    exact = tiers["exact"]
    assert exact["offered"] and exact["bound"] == 1e-5 and exact["max_rel_l2"] < 1e-5
    assert {"onnxruntime CPUExecutionProvider", "openvino CPU f32"} <= set(exact["measured"])
    half = tiers["half"]
    assert half["bound"] == 40.0 and half["metric"] == "psnr_db"
    import openvino as ov

    why = tier_available(ov.Core(), "CPU", "half")
    if why is None:  # a CPU with bf16 (or native fp16): measured, and offered exactly when within the bound
        assert len(half["measured"]) == 1 and next(iter(half["measured"])) in ("openvino CPU bf16", "openvino CPU f16")
        assert half["offered"] == (half["psnr_db"] >= 40)
        assert half["max_rel_l2"] > 0  # bf16 is not fp32: a zero would mean the hint was ignored
    else:
        assert not half["offered"] and half["reason"] == why
    out = run_cli("inspect", static).stdout
    assert "tier exact" in out and "openvino CPU f32" in out and "tier half" in out
    assert f"auto_backend_here {AUTO_ONNX_CPU['static'][0]}" in " ".join(out.split())


def test_half_tier_is_offered_only_when_measured_within_its_bound(tmp_path):
    """The trained demo model (pictures that spread like real ones): bf16 within 1e-2 of the PyTorch network
    on real-looking maps; a report without the measurement, or over the bound, is refused."""
    import openvino as ov

    ref = ref_generator_for("coco", 4, seed=12, crop_size=32)
    path = _export(tmp_path, ref, "coco", 32, "static")
    why = tier_available(ov.Core(), "CPU", "half")
    if why is not None:
        with pytest.raises(BackendUnavailableError, match="half tier does not run here"):
            OpenVinoBackend(path, tier="half")
        return
    report = report_path(path)
    data = json.loads(report.read_text())
    data["tiers"]["half"].update(psnr_db=45.0, offered=True)
    report.write_text(json.dumps(data))
    ids = blobby_labels(2, 32, 32, 183, seed=24)
    inst = blobby_labels(2, 32, 32, 5, seed=25, cell=10)
    with Synthesizer(path, backend="openvino", tier="half") as half, Synthesizer(path, backend="openvino") as exact:
        assert half.backend.config["INFERENCE_PRECISION_HINT"] == "bf16" and half.backend.measured_psnr == 45.0
        expected = want(ref, ids, inst)
        err_half = rel_l2(half(ids, inst, output="float"), expected)
        err_exact = rel_l2(exact(ids, inst, output="float"), expected)
        assert err_exact < 1e-5 < err_half  # the tier really ran in bf16
    data["tiers"]["half"].update(psnr_db=33.0, offered=False)
    report.write_text(json.dumps(data))
    with pytest.raises(BackendUnavailableError, match="below the bound 40 dB"):
        OpenVinoBackend(path, tier="half")
    del data["tiers"]
    report.write_text(json.dumps(data))
    with pytest.raises(BackendUnavailableError, match="never measured"):
        OpenVinoBackend(path, tier="half")
    report.unlink()
    with pytest.raises(BackendUnavailableError, match="never measured"):
        OpenVinoBackend(path, tier="half")


def test_half_tier_on_the_trained_demo_model_is_within_its_bound(tmp_path, coco_sample):
    """Real pictures (the shipped demo model, std ~0.47) on the real COCO-Stuff maps folded into its ids."""
    import openvino as ov

    if tier_available(ov.Core(), "CPU", "half") is not None:
        pytest.skip("this CPU has no bf16: the half tier is refused here (tested above)")
    from spade_rt.labels import LabelSpec, load_inputs
    from spade_rt.model.native_format import build_generator, load_model
    from spade_rt.model.semantics import semantics_from_numpy

    demo = "spade_rt/assets/landscape_demo.safetensors"
    out = tmp_path / "demo.onnx"
    assert main(["export", demo, "-o", str(out), "-q"]) == 0
    native = load_model(demo)
    net = build_generator(native).eval()
    cfg = native.config
    spec = LabelSpec(182, True, False, *cfg.output_hw)
    maps = [load_inputs(spec, p)[0] for p in sorted((coco_sample / "val_label").glob("*.png"))[:3]]
    ids = np.stack([(m.astype(np.int32) % cfg.num_label_ids).astype(np.uint8) for m in maps])
    with torch.no_grad():
        expected = np.concatenate([net(semantics_from_numpy(i, cfg.num_label_ids, None)).numpy() for i in ids])
    assert expected.std() > 0.3
    with Synthesizer(out, backend="openvino", tier="half") as half:
        got = half(ids, output="float")
    measured = json.loads(report_path(out).read_text())["tiers"]["half"]["psnr_db"]
    pic = lambda x: np.clip((x.astype(np.float64) + 1) / 2 * 255, 0, 255).astype(np.uint8).astype(np.float64)  # noqa: E731
    mse = max(np.mean((pic(g[None]) - pic(e[None])) ** 2) for g, e in zip(got, expected))
    assert measured >= 40 and mse > 0 and 10 * np.log10(255**2 / mse) >= 40


def test_auto_rule_and_override(coco):
    _, static, dedup = coco
    for path in (static, dedup):  # the metadata reader agrees with the onnx package
        want_meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        assert read_onnx_metadata(path) == want_meta and "spade_rt.spec" in want_meta
    # both installed here: each graph kind gets the first backend of the registry's fixed rule
    assert auto_backend("onnx", static).name == AUTO_ONNX_CPU["static"][0]
    assert auto_backend("onnx", dedup).name == AUTO_ONNX_CPU["dedup"][0]
    # options never change the pick: one the pick takes reaches it, one only another backend takes is one line
    pick, other = (get_backend(n) for n in AUTO_ONNX_CPU["static"])
    with Synthesizer(static, threads=1) as s:
        assert s.backend.name == pick.name
    foreign = next(n for n in other.options.names() if n not in pick.options.names())
    with pytest.raises(ConfigError, match=rf"{foreign}: not options of the {pick.name} backend.*{other.name}"):
        Synthesizer(static, **{foreign: None})
    assert auto_backend("native", None).name == "torch"
    with Synthesizer(static) as s:
        assert s.backend.name == AUTO_ONNX_CPU["static"][0]
    with Synthesizer(static, backend="onnxruntime") as s:
        assert s.backend.name == "onnxruntime"
    assert get_backend("openvino").install == "pip install 'spade-rt[openvino]'"


def test_bad_options_are_one_line(coco, tmp_path):
    _, static, _ = coco
    with pytest.raises(ConfigError, match="tier must be one of auto, exact, half, int8"):
        OpenVinoBackend(static, tier="fast")
    with pytest.raises(BackendUnavailableError, match="OpenVINO device NPU is not here"):
        OpenVinoBackend(static, device="NPU")
    assert set(TIERS) == {"exact", "half", "int8"}
    labels = tmp_path / "l.png"
    from PIL import Image

    Image.fromarray(blobby_labels(1, 64, 64, 183, seed=26)[0].astype(np.uint8)).save(labels)
    ok = run_cli("synthesize", static, "--labels", labels, "-o", tmp_path / "o.png", "--backend", "openvino")
    assert (tmp_path / "o.png").is_file() and ok.returncode == 0
    bad = run_cli("synthesize", static, "--labels", labels, "-o", tmp_path / "p.png", "--tier", "half",
                  "--backend", "onnxruntime", check=False)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "--tier" in bad.stderr
    assert not (tmp_path / "p.png").exists()
