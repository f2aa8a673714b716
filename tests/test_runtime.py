"""The torch-free runtime: Synthesizer API, ONNX Runtime backend, engines without a GPU, threads, soak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spade_rt.cli import main
from spade_rt.errors import EngineCompatibilityError, InputError, LabelError, ModelFormatError
from spade_rt.labels import instance_edges
from spade_rt.palettes import colorize
from spade_rt.runtime.synthesizer import Synthesizer

from conftest import NVIDIA_DEVICE_NODES, run_cli, run_in_threads
from reference_spade import blobby_labels, ref_generator_for, ref_semantics, rel_l2


def export_tiny(tmp, preset, size=64, use_vae=False, seed=0, extra=()):
    ref = ref_generator_for(preset, 4, use_vae=use_vae, seed=seed, crop_size=size)
    torch.save(ref.state_dict(), tmp / "G.pth")
    model = tmp / "m.safetensors"
    assert (
        main(["convert", str(tmp / "G.pth"), "--preset", preset, "--crop-size", str(size), "-o", str(model), "-q"]) == 0
    )
    onnx_path = tmp / f"{preset}.onnx"
    assert main(["export", str(model), "-o", str(onnx_path), "--batch", "1:1:2", "-q", *extra]) == 0
    return ref, onnx_path


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("coco"), "coco", seed=1)


@pytest.fixture(scope="module")
def ade_vae(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("vae"), "ade20k", use_vae=True, seed=2)


def want(ref, ids, inst=None, z=None, num_ids=183):
    with torch.no_grad():
        return ref(ref_semantics(ids, num_ids, inst), None if z is None else torch.from_numpy(z)).numpy()


def test_synthesizer_matches_reference_single_and_batched(coco):
    ref, onnx_path = coco
    ids = blobby_labels(3, 64, 64, 183, seed=4)
    inst = blobby_labels(3, 64, 64, 5, seed=5, cell=20)
    expected = want(ref, ids, inst)
    with Synthesizer(onnx_path, backend="onnxruntime") as synth:
        assert synth.backend.name == "onnxruntime" and synth.spec.max_batch == 2
        out = synth(ids, inst, output="float")  # 3 > max batch 2: two calls
        assert out.shape == (3, 3, 64, 64) and rel_l2(out, expected) < 1e-5
        one = synth(ids[0], inst[0])  # (H, W) -> (H, W, 3) uint8, the original tensor2im
        want_u8 = np.clip((expected[0].transpose(1, 2, 0) + 1) / 2 * 255, 0, 255).astype(np.uint8)
        assert one.shape == (64, 64, 3) and one.dtype == np.uint8
        assert np.abs(one.astype(int) - want_u8).max() <= 1
        edges_out = synth(ids, edges=instance_edges(inst), output="float")
        np.testing.assert_array_equal(edges_out, out)
        t = synth.last_times
        assert t.compute_ms > 0 and t.total_ms >= t.compute_ms


def test_dontcare_resize_and_label_boundaries(coco):
    ref, onnx_path = coco
    stored = blobby_labels(1, 64, 64, 183, seed=7)[0]
    stored[stored == 182] = 255
    stored[:8, :8] = 255
    with Synthesizer(onnx_path) as synth:
        out = synth(stored.astype(np.uint8), output="float")  # 255 -> 182; no instance map: label boundaries
        ids = np.where(stored == 255, 182, stored)
        assert rel_l2(out, want(ref, ids[None], ids[None])) < 1e-5
        big = np.kron(ids, np.ones((2, 2), dtype=ids.dtype))  # 128x128 -> NEAREST back to 64x64
        with pytest.raises(InputError, match="128x128.*64x64"):
            synth(big.astype(np.uint8), resize=False)
        # the API resizes by default, like the CLI and the original pipeline (one behaviour, docs/runtime.md)
        np.testing.assert_array_equal(synth(big.astype(np.uint8)), synth(ids.astype(np.uint8)))
        inst = blobby_labels(1, 64, 64, 5, seed=8, cell=20)[0]
        np.testing.assert_array_equal(
            synth(big.astype(np.uint8), np.kron(inst, np.ones((2, 2), dtype=inst.dtype))),
            synth(ids.astype(np.uint8), inst),
        )


def test_api_errors_are_specific(coco, ade_vae):
    _, onnx_path = coco
    with Synthesizer(onnx_path) as synth:
        ok = np.zeros((64, 64), np.uint8)
        with pytest.raises(InputError, match="integer"):
            synth(ok.astype(np.float32))
        with pytest.raises(InputError, match=r"\(H, W\) or \(N, H, W\)"):
            synth(np.zeros((1, 1, 64, 64), np.uint8))
        bad = ok.copy()
        bad[0, :3] = 190
        with pytest.raises(LabelError, match=r"190 \(3 px\)"):
            synth(bad)
        with pytest.raises(InputError, match="not a VAE"):
            synth(ok, z=np.zeros(256, np.float32))
        with pytest.raises(InputError, match="instance map"):
            synth(ok, np.zeros((2, 64, 64), np.int32))
        with pytest.raises(InputError, match="output"):
            synth(ok, output="half")
    ref, vae_path = ade_vae
    with Synthesizer(vae_path) as synth:
        ids = blobby_labels(2, 64, 64, 151, seed=8)
        z = np.random.default_rng(0).standard_normal((2, 256)).astype(np.float32)
        assert rel_l2(synth(ids, z=z, output="float"), want(ref, ids, z=z, num_ids=151)) < 1e-5
        with pytest.raises(InputError, match=r"z= must be \(256,\)"):
            synth(ids, z=np.zeros((3, 256), np.float32))
        a, b = synth(ids[0], seed=3), synth(ids[0], seed=3)
        np.testing.assert_array_equal(a, b)  # seeded z: repeatable


def test_threads_share_one_synthesizer(coco):
    _, onnx_path = coco
    maps = blobby_labels(8, 64, 64, 183, seed=9).astype(np.uint8)
    with Synthesizer(onnx_path) as synth:
        expected = [synth(m) for m in maps]
        results = run_in_threads(lambda k: [synth(maps[(k + i) % 8]) for i in range(12)], 4)
    for k, outs in enumerate(results):
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out, expected[(k + i) % 8])


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_soak_ten_thousand_calls_without_memory_growth(tmp_path):
    """In a fresh interpreter: the suite's own process holds the thread pools and allocations of every test
    before this one, whose memory moves on its own and would be counted as the runtime's."""
    _, onnx_path = export_tiny(tmp_path, "facades", size=32, seed=3)
    maps = blobby_labels(4, 32, 32, 13, seed=1).astype(np.uint8)
    np.save(tmp_path / "maps.npy", maps)
    script = f"""
import os, numpy as np
from spade_rt.runtime.synthesizer import Synthesizer
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
maps = np.load({str(tmp_path / "maps.npy")!r})
with Synthesizer({str(onnx_path)!r}, backend='onnxruntime', threads=1) as synth:
    for i in range(1000):
        synth(maps[i % 4])
    start = rss_mb()
    for i in range(9000):
        synth(maps[i % 4])
    print(rss_mb() - start)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    growth = float(proc.stdout.strip().splitlines()[-1])
    assert growth < 20, f"resident memory grew {growth:.1f} MB over 9,000 calls"


def test_colour_coded_label_maps_use_the_preset_palette(coco, tmp_path):
    _, onnx_path = coco
    ids = blobby_labels(1, 64, 64, 183, seed=12)[0].astype(np.uint8)
    Image.fromarray(ids).save(tmp_path / "ids.png")
    Image.fromarray(colorize(ids, "coco")).save(tmp_path / "colour.png")
    for name in ("ids", "colour"):
        assert (
            main(
                [
                    "synthesize",
                    str(onnx_path),
                    "--labels",
                    str(tmp_path / f"{name}.png"),
                    "-o",
                    str(tmp_path / f"{name}_out.png"),
                    "-q",
                ]
            )
            == 0
        )
    a = np.array(Image.open(tmp_path / "ids_out.png"))
    b = np.array(Image.open(tmp_path / "colour_out.png"))
    np.testing.assert_array_equal(a, b)
    rgb = colorize(ids, "coco")
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "off.png")
    proc = run_cli("synthesize", onnx_path, "--labels", tmp_path / "off.png", "-o", tmp_path / "x.png", check=False)
    assert proc.returncode == 1 and "rgb(1, 2, 3) (1 px)" in proc.stderr.strip().splitlines()[-1]


def test_folder_mode_writes_one_image_per_map(coco, coco_sample, tmp_path):
    _, onnx_path = coco
    out = tmp_path / "out"
    proc = run_cli(
        "synthesize",
        onnx_path,
        "--labels",
        coco_sample / "val_label",
        "--instance",
        coco_sample / "val_inst",
        "-o",
        out,
        "--batch-size",
        "2",
    )
    assert proc.returncode == 0
    labels = sorted(p.stem for p in (coco_sample / "val_label").glob("*.png"))
    assert sorted(p.stem for p in out.glob("*.png")) == labels
    assert np.array(Image.open(out / f"{labels[0]}.png")).shape == (64, 64, 3)


def test_bad_files_exit_with_one_line(coco, tmp_path):
    _, onnx_path = coco
    labels = tmp_path / "l.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(labels)
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(onnx_path.read_bytes()[:20000])
    for model, needle in (
        (truncated, "cannot load"),
        (tmp_path / "none.onnx", "not found"),
        (tmp_path / "model.bin", "cannot tell the model kind"),
    ):
        proc = run_cli("synthesize", model, "--labels", labels, "-o", tmp_path / "o.png", check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert needle in proc.stderr.strip().splitlines()[-1]


def test_engines_on_a_machine_without_gpu_and_stale_engines(coco, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from conftest import gpu_available

    if gpu_available() is None:
        pytest.skip("this machine has a GPU: the no-GPU path cannot be shown here")
    _, onnx_path = coco
    engine = tmp_path / "coco.engine"
    (tmp_path / onnx_path.name).write_bytes(onnx_path.read_bytes())
    assert main(["build", str(tmp_path / onnx_path.name), "-o", str(engine), "-q"]) == 0
    labels = tmp_path / "l.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(labels)
    proc = run_cli("synthesize", engine, "--labels", labels, "-o", tmp_path / "o.png", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    # no GPU at all: said plainly, not CUDA's "driver version is insufficient"; a GPU that fails: CUDA's reason
    no_gpu = "no NVIDIA GPU found" if not NVIDIA_DEVICE_NODES else "no usable NVIDIA GPU"
    assert no_gpu in proc.stderr.strip().splitlines()[-1]
    assert "driver version" not in proc.stderr or NVIDIA_DEVICE_NODES
    # a manifest from another TensorRT version: stale before any GPU is touched, with the fix in the message
    manifest_file = tmp_path / "coco.engine.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["builder"]["version"] = "1.0.0.0"
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(EngineCompatibilityError, match=r"1\.0\.0\.0.*spade-rt build .*coco\.onnx -o"):
        Synthesizer(engine)
    # --rebuild rebuilds it from the ONNX beside it (then stops at the missing GPU)
    proc = run_cli("synthesize", engine, "--labels", labels, "-o", tmp_path / "o.png", "--rebuild", check=False)
    assert no_gpu in proc.stderr and "rebuilding" in proc.stderr
    assert json.loads(manifest_file.read_text())["builder"]["version"] != "1.0.0.0"
    (tmp_path / "coco.engine.json").unlink()
    with pytest.raises(ModelFormatError, match="no manifest"):
        Synthesizer(engine)
    info = run_cli("inspect", tmp_path / onnx_path.name).stdout
    assert "ONNX graph" in info and "relative L2" not in info  # the copied graph has no report beside it


def test_runtime_never_imports_torch():
    code = (
        "import sys, spade_rt, spade_rt.cli, spade_rt.labels, spade_rt.palettes, spade_rt.procedural, "
        "spade_rt.runtime.synthesizer, spade_rt.runtime.onnxruntime_backend, spade_rt.engines.backend, "
        "spade_rt.engines.inspect, spade_rt.runtime.jobs\n"
        "bad = [m for m in ('torch', 'onnx', 'safetensors') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_plain_install_in_a_fresh_venv_is_torch_free(coco, tmp_path):
    """`pip install .` (no extras) + onnxruntime in a new venv: no torch, and synthesize writes the image."""
    from conftest import ROOT, building_from_the_checkout

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    with building_from_the_checkout():
        subprocess.run([*pip, str(ROOT), "onnxruntime"], check=True, timeout=900)
    _, onnx_path = coco
    labels = tmp_path / "l.png"
    Image.fromarray(blobby_labels(1, 64, 64, 183, seed=1)[0].astype(np.uint8)).save(labels)
    out = tmp_path / "out.png"
    check = "import sys, spade_rt.cli, spade_rt.runtime.synthesizer; assert 'torch' not in sys.modules"
    subprocess.run([str(py), "-c", check], check=True, cwd=tmp_path)
    # the real COCO-Stuff sample is in the wheel (package data), not only in the checkout
    where = "from spade_rt.sample_data import coco_stuff_sample; print(coco_stuff_sample())"
    found = subprocess.run([str(py), "-c", where], check=True, cwd=tmp_path, capture_output=True, text=True)
    sample = Path(found.stdout.strip())
    assert sample.is_relative_to(venv) and (sample / "README.md").is_file()
    shipped = sorted(p.relative_to(sample) for p in sample.rglob("*") if p.is_file())
    source = ROOT / "spade_rt" / "assets" / "coco_stuff_sample"
    assert shipped == sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    proc = subprocess.run(
        [str(venv / "bin" / "spade-rt"), "synthesize", str(onnx_path), "--labels", str(labels), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert np.array(Image.open(out)).shape == (64, 64, 3)
    missing = subprocess.run([str(py), "-c", "import torch"], capture_output=True)
    assert missing.returncode != 0  # torch really is absent there
    # a real model (the demo model in the wheel): its header passes the torch-free checks, then the toolchain is missing
    demo = "from importlib import resources; print(resources.files('spade_rt') / 'assets/landscape_demo.safetensors')"
    model = subprocess.run([str(py), "-c", demo], check=True, cwd=tmp_path, capture_output=True, text=True).stdout
    proc = subprocess.run(
        [str(venv / "bin" / "spade-rt"), "export", model.strip(), "-o", "x.onnx"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "pip install 'spade-rt[export]'" in proc.stderr, proc.stderr
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.gpu
def test_engine_matches_onnxruntime_on_the_gpu(coco, tmp_path):
    """Runs where a supported NVIDIA GPU and TensorRT exist; skipped elsewhere."""
    from conftest import tensorrt_for_this_gpu

    if (why := tensorrt_for_this_gpu()) is not None:
        pytest.skip(why)
    ref, onnx_path = coco
    fp16 = tmp_path / "fp16.onnx"
    model = onnx_path.parent / "m.safetensors"
    assert main(["export", str(model), "-o", str(fp16), "--precision", "fp16", "--batch", "1:1:2", "-q"]) == 0
    engine = tmp_path / "coco.engine"
    assert main(["build", str(fp16), "-o", str(engine), "-q"]) == 0
    ids = blobby_labels(2, 64, 64, 183, seed=21)
    inst = blobby_labels(2, 64, 64, 5, seed=22, cell=20)
    expected = want(ref, ids, inst)
    with Synthesizer(engine) as synth:
        for _ in range(3):  # first call captures the CUDA graph, later calls replay it
            out = synth(ids, inst, output="float")
            assert rel_l2(out, expected) < 1e-2
        assert synth.last_times.compute_ms > 0
