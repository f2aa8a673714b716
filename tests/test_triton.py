"""`spade-rt triton`: model repositories for an ONNX graph, a spade-rt model and a TensorRT-RTX engine built
here; every config.pbtxt is parsed with Triton's own ModelConfig protobuf (tritonclient's model_config_pb2),
and the repository's graph is run the way Triton's onnxruntime backend runs it (declared names and types)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from spade_rt.cli import main
from spade_rt.io_utils import sha256_file
from spade_rt.labels import instance_edges
from spade_rt.runtime.synthesizer import Synthesizer

from conftest import run_cli
from reference_spade import blobby_labels
from serve_support import demo_graph_path, tiny_graph, tiny_model

DT = model_config_pb2.DataType


def parse(folder: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def io(config) -> dict:
    return {t.name: (DT.Name(t.data_type), list(t.dims)) for t in (*config.input, *config.output)}


@pytest.fixture(scope="module")
def coco_u8(tmp_path_factory) -> Path:
    """A tiny COCO-Stuff graph with uint8 output (instance edges, 183 ids), batches 1..4."""
    return tiny_graph(tmp_path_factory.mktemp("coco_u8"), "coco", extra=("--output", "uint8"))


def test_onnx_repository_parses_and_runs_as_triton_would(coco_u8, tmp_path):
    repo = tmp_path / "models"
    argv = ["triton", str(coco_u8), "-o", str(repo), "--instances", "2", "--gpus", "0", "1", "-q"]
    assert main(argv) == 0
    folder = repo / "coco"
    config = parse(folder)
    assert config.name == "coco" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 4
    assert io(config) == {
        "labels": ("TYPE_UINT8", [64, 64]),
        "edges": ("TYPE_UINT8", [64, 64]),
        "image": ("TYPE_UINT8", [64, 64, 3]),
    }
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000
    group = config.instance_group[0]
    assert (
        group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU and list(group.gpus) == [0, 1]
    )
    model_file = folder / "1" / "model.onnx"
    assert sha256_file(model_file) == sha256_file(coco_u8)
    sidecar = json.loads((folder / "spade_rt.json").read_text())
    assert sidecar["spec"]["output"] == "uint8" and sidecar["source_sha256"] == sha256_file(coco_u8)
    # a batch of 3 fed by the config's names and types gives Synthesizer's pictures
    ids = blobby_labels(3, 64, 64, 183, seed=1).astype(np.uint8)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    feeds = {"labels": ids, "edges": instance_edges(ids)}
    (image,) = session.run(["image"], feeds)
    with Synthesizer(coco_u8) as synth:
        np.testing.assert_array_equal(image, synth(ids))
    assert image.dtype == np.uint8 and image.shape == (3, 64, 64, 3)
    # an existing model folder is kept unless --force
    proc = run_cli("triton", coco_u8, "-o", repo, check=False)
    assert proc.returncode == 1 and "exists" in proc.stderr and "--force" in proc.stderr
    assert main(["triton", str(coco_u8), "-o", str(repo), "--force", "--device", "cpu", "-q"]) == 0
    assert parse(folder).instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_a_spade_rt_model_is_exported_with_uint8_output(tmp_path):
    model = tiny_model(tmp_path, "ade20k", use_vae=True)
    repo = tmp_path / "models"
    argv = ["triton", str(model), "-o", str(repo), "--name", "ade", "--max-batch", "2", "--device", "cpu", "-q"]
    assert main(argv) == 0
    config = parse(repo / "ade")
    assert config.max_batch_size == 2 and config.platform == "onnxruntime_onnx"
    assert io(config) == {
        "labels": ("TYPE_UINT8", [64, 64]),
        "z": ("TYPE_FP32", [256]),
        "image": ("TYPE_UINT8", [64, 64, 3]),
    }
    sidecar = json.loads((repo / "ade" / "spade_rt.json").read_text())
    assert sidecar["exported_from"] == "ade20k.safetensors" and sidecar["verification"]["max_abs_levels"] <= 1
    assert [p.name for p in repo.iterdir()] == ["ade"]  # no export leftovers in the repository


def test_a_tensorrt_rtx_engine_built_here(coco_u8, tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="the rtx extra (tensorrt-rtx-cu13) is part of CI's install")
    engine = tmp_path / "coco.engine"
    assert main(["build", str(coco_u8), "-o", str(engine), "--backend", "tensorrt-rtx", "-q"]) == 0
    repo = tmp_path / "models"
    proc = run_cli("triton", engine, "-o", repo, "--name", "coco_trt")
    assert "TensorRT-RTX" in proc.stderr and "--backend tensorrt" in proc.stderr  # the deployment caveat, said
    config = parse(repo / "coco_trt")
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert (
        config.max_batch_size == json.loads((tmp_path / "coco.engine.json").read_text())["inputs"]["labels"]["max"][0]
    )
    assert io(config)["image"] == ("TYPE_UINT8", [64, 64, 3]) and io(config)["labels"] == ("TYPE_UINT8", [64, 64])
    assert (repo / "coco_trt" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert json.loads((repo / "coco_trt" / "spade_rt.json").read_text())["builder"]["module"] == "tensorrt_rtx"
    proc = run_cli("triton", engine, "-o", repo, "--name", "cpu_engine", "--device", "cpu", check=False)
    assert proc.returncode == 1 and "GPUs only" in proc.stderr


def test_float_output_graphs_are_refused_with_the_fix(tmp_path):
    graph = demo_graph_path()  # the demo graph gives float output
    proc = run_cli("triton", graph, "-o", tmp_path / "models", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "--output uint8" in lines[0], proc.stderr
    assert not (tmp_path / "models" / graph.stem).exists()
