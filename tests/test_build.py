"""`spade-rt build` with TensorRT-RTX on this CPU-only machine: real engines, real manifests, fp16 layers."""

from __future__ import annotations

import json

import pytest
import torch

from spade_rt.cli import main

from conftest import run_cli
from reference_spade import ref_generator_for

trt = pytest.importorskip("tensorrt_rtx", reason="the rtx extra (tensorrt-rtx-cu13) is part of CI's install")


@pytest.fixture(scope="module")
def ade20k_fp16(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ade")
    torch.save(ref_generator_for("ade20k", 8, crop_size=128).state_dict(), tmp / "G.pth")
    assert (
        main(
            [
                "convert",
                str(tmp / "G.pth"),
                "--preset",
                "ade20k",
                "--crop-size",
                "128",
                "-o",
                str(tmp / "m.safetensors"),
            ]
        )
        == 0
    )
    onnx_path = tmp / "ade20k_fp16.onnx"
    assert (
        main(
            [
                "export",
                str(tmp / "m.safetensors"),
                "-o",
                str(onnx_path),
                "--precision",
                "fp16",
                "--batch",
                "1:2:4",
                "-q",
            ]
        )
        == 0
    )
    return onnx_path


def parsed_layer_types(onnx_path):
    """Parse with TensorRT-RTX directly (not through spade-rt) and list (layer type, in dtype, out dtype)."""
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes())
    return [
        (network.get_layer(i).type, network.get_layer(i).get_input(0).dtype, network.get_layer(i).get_output(0).dtype)
        for i in range(network.num_layers)
        if network.get_layer(i).num_inputs
    ]


def test_every_convolution_of_the_fp16_graph_is_fp16(ade20k_fp16):
    convs = [(i, o) for t, i, o in parsed_layer_types(ade20k_fp16) if t == trt.LayerType.CONVOLUTION]
    assert len(convs) >= 30
    assert all(i == trt.DataType.HALF and o == trt.DataType.HALF for i, o in convs), set(convs)
    # the lookup tables (float gathers; the parser adds int64 shape gathers of its own) are fp16 too
    lookups = [(i, o) for t, i, o in parsed_layer_types(ade20k_fp16) if t == trt.LayerType.GATHER and i.name != "INT64"]
    assert len(lookups) >= 9 * 5 and all(i == o == trt.DataType.HALF for i, o in lookups), set(lookups)


def test_build_writes_engine_and_manifest_without_a_gpu(ade20k_fp16, tmp_path):
    engine = tmp_path / "ade20k.engine"
    assert main(["build", str(ade20k_fp16), "-o", str(engine), "--backend", "tensorrt-rtx", "-q"]) == 0
    manifest = json.loads((tmp_path / "ade20k.engine.json").read_text())
    assert engine.stat().st_size == manifest["engine_bytes"] > 1_000_000
    assert manifest["builder"]["module"] == "tensorrt_rtx" and manifest["builder"]["version"] == trt.__version__
    assert manifest["precision"] == "fp16" and manifest["preset"] == "ade20k" and manifest["num_label_ids"] == 151
    assert manifest["inputs"]["labels"] == {
        "dtype": "uint8",
        "min": [1, 128, 128],
        "opt": [2, 128, 128],
        "max": [4, 128, 128],
    }
    assert manifest["outputs"]["image"]["dtype"] == "float32"
    assert len(manifest["onnx_sha256"]) == 64 and len(manifest["engine_sha256"]) == 64
    assert "8.6" in manifest["target_compute_capabilities"]
    # the engine header is one TensorRT-RTX recognises (validity needs a GPU to say more)
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    assert engine.read_bytes()[: runtime.engine_header_size]
    # Turing as an explicit target
    assert main(["build", str(ade20k_fp16), "-o", str(tmp_path / "t.engine"), "--compute-capability", "7.5", "-q"]) == 0
    assert json.loads((tmp_path / "t.engine.json").read_text())["target_compute_capabilities"] == ["7.5"]


def test_build_errors_are_one_line_and_leave_nothing(ade20k_fp16, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(ade20k_fp16.read_bytes()[:5000])
    proc = run_cli("build", corrupt, "-o", tmp_path / "x.engine", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "not a valid ONNX graph" in proc.stderr.strip().splitlines()[-1]
    proc = run_cli("build", ade20k_fp16, "-o", tmp_path / "x.engine", "--compute-capability", "9.0", check=False)
    assert proc.returncode == 1 and "compute capability 9.0 is not one of" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.onnx"]


def test_recipe_builds_a_uint8_engine_from_a_model(tmp_path, monkeypatch):
    """`spade-rt build MODEL --recipe NAME`: export with the recipe's options, then build into the cache's built/."""
    torch.save(ref_generator_for("ade20k", 4).state_dict(), tmp_path / "G.pth")
    assert main(["convert", str(tmp_path / "G.pth"), "--preset", "ade20k", "-o", str(tmp_path / "m.safetensors")]) == 0
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("SPADE_RT_CACHE", str(tmp_path / "cache"))
    assert main(["build", str(tmp_path / "m.safetensors"), "--recipe", "ade20k-256-fp16", "-q"]) == 0
    assert list(work.iterdir()) == []  # nothing lands in the working directory
    built = tmp_path / "cache" / "built"
    manifest = json.loads((built / "ade20k-256-fp16.engine.json").read_text())
    assert manifest["outputs"]["image"]["dtype"] == "uint8" and manifest["precision"] == "fp16"
    assert manifest["inputs"]["labels"]["max"] == [4, 256, 256]
    report = json.loads((built / "ade20k-256-fp16.onnx.json").read_text())
    assert report["verification"]["max_abs_levels"] <= 4  # fp16 uint8 vs the reference's tensor2im
    proc = run_cli("build", tmp_path / "m.safetensors", "--recipe", "coco-256-fp16", check=False)
    assert proc.returncode == 1 and "--recipe coco-256-fp16 is for coco models" in proc.stderr
