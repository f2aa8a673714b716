"""`spade-rt triton`: model repositories for an ONNX graph, a spade-rt model and a TensorRT-RTX engine built
here; every config.pbtxt is parsed with Triton's own ModelConfig protobuf (tritonclient's model_config_pb2),
and the repository's graph is run the way Triton's onnxruntime backend runs it (declared names and types)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import model_config_pb2

from spade_rt.cli import main
from spade_rt.io_utils import sha256_file
from spade_rt.labels import instance_edges
from spade_rt.palettes import LANDSCAPE_COLOURS
from spade_rt.runtime.synthesizer import Synthesizer

from conftest import ROOT, run_cli
from reference_spade import blobby_labels
from serve_support import decode, demo_graph_path, png, tiny_graph, tiny_model

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
    # Triton's onnxruntime backend runs the graph on ONNX Runtime: so does the reference (`auto` would pick
    # OpenVINO for a static graph, whose float rounding may move a pixel across a uint8 step on another CPU)
    with Synthesizer(coco_u8, backend="onnxruntime") as synth:
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
    # --backend python: the engine and its manifest beside model.py (the engine runner checks one against the
    # other), no caveat, and the PNG model
    proc = run_cli("triton", engine, "-o", repo, "--name", "coco_rtx", "--backend", "python")
    assert "TensorRT-RTX" not in proc.stderr
    config = parse(repo / "coco_rtx")
    assert config.backend == "python" and config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["spade_rt_model"] == "model.engine" and params["spade_rt_kind"] == "engine"
    version = repo / "coco_rtx" / "1"
    assert (version / "model.engine").read_bytes() == engine.read_bytes()
    assert (version / "model.engine.json").read_bytes() == (tmp_path / "coco.engine.json").read_bytes()
    assert (version / "model.py").is_file() and parse(repo / "coco_rtx_png").backend == "python"


def test_float_output_graphs_are_refused_with_the_fix(tmp_path):
    graph = demo_graph_path()  # the demo graph gives float output
    proc = run_cli("triton", graph, "-o", tmp_path / "models", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "--output uint8" in lines[0], proc.stderr
    assert not (tmp_path / "models" / graph.stem).exists()


# ---- --backend python: the repository written here, served by a real Triton server -------------------------
def test_python_backend_repository(coco_u8, tmp_path):
    """Config of the python-backend model and of NAME_png: Triton's protobuf, the native tensors, the runtime's
    file and model.py beside it; float-output graphs are served too (Synthesizer converts them)."""
    repo = tmp_path / "models"
    argv = ["triton", str(coco_u8), "-o", str(repo), "--backend", "python", "--device", "cpu", "--instances", "2"]
    assert main([*argv, "--execution-env", "$$TRITON_MODEL_DIRECTORY/env.tar.gz", "-q"]) == 0
    config = parse(repo / "coco")
    assert config.backend == "python" and config.platform == "" and config.max_batch_size == 4
    assert io(config) == {
        "labels": ("TYPE_UINT8", [64, 64]),
        "edges": ("TYPE_UINT8", [64, 64]),
        "image": ("TYPE_UINT8", [64, 64, 3]),
    }
    assert [t.optional for t in config.input] == [False, True]  # no edges: the label map's boundaries
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["spade_rt_model"] == "model.onnx" and params["spade_rt_role"] == "synthesize"
    assert params["EXECUTION_ENV_PATH"] == "$$TRITON_MODEL_DIRECTORY/env.tar.gz"
    assert (
        config.instance_group[0].count == 2
        and config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    )
    assert sha256_file(repo / "coco" / "1" / "model.onnx") == sha256_file(coco_u8)
    assert (
        "from spade_rt.serve.triton_python import TritonPythonModel" in (repo / "coco" / "1" / "model.py").read_text()
    )
    png = parse(repo / "coco_png")
    assert png.backend == "python" and png.max_batch_size == 4
    assert io(png) == {
        "label_png": ("TYPE_STRING", [1]),
        "instance_png": ("TYPE_STRING", [1]),
        "image": ("TYPE_UINT8", [64, 64, 3]),
        "image_png": ("TYPE_STRING", [1]),
    }
    assert {k: v.string_value for k, v in png.parameters.items()}["spade_rt_target"] == "coco"
    # --no-png: one model; the demo graph (float output) is accepted by the python backend
    demo = demo_graph_path()  # the fastest exact demo graph for this machine (dedup on CPUs)
    assert main(["triton", str(demo), "-o", str(repo), "--backend", "python", "--no-png", "-q"]) == 0
    assert sorted(p.name for p in repo.iterdir()) == ["coco", "coco_png", demo.stem]
    assert parse(repo / demo.stem).instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    # the native backends keep refusing what they cannot serve, and the python-only option says so
    proc = run_cli("triton", coco_u8, "-o", repo, "--name", "x", "--execution-env", "env.tar.gz", check=False)
    assert proc.returncode == 1 and "--backend python" in proc.stderr


TRITON_ENV = Path(os.environ.get("SPADE_RT_TRITON_ENV", ROOT / ".venv-triton"))


@pytest.fixture(scope="module")
def triton_env() -> Path:
    """The Triton side's environment (spade_rt/serve/triton_env.sh, which .ci/run runs): it must exist in CI."""
    if not (TRITON_ENV / "bin" / "tritonserver").is_file():
        why = f"no Triton environment at {TRITON_ENV}: make it with `bash spade_rt/serve/triton_env.sh`"
        if os.environ.get("CI"):
            pytest.fail(why + " (.ci/run does)")
        pytest.skip(why)
    return TRITON_ENV


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Triton:
    """A tritonserver on loopback, started by the test: HTTP, gRPC and metrics ports, its log."""

    def __init__(self, env: Path, repo: Path, log: Path) -> None:
        self.http_port, self.grpc_port, self.metrics_port = _free_ports(3)
        self.log = log
        argv = [
            str(env / "bin" / "tritonserver"),
            f"--model-repository={repo}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=20",
        ]
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
        self.http_url = f"127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tritonserver exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"http://{self.http_url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"tritonserver not ready in {timeout} s:\n{self.tail()}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as a container runtime stops it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                raise AssertionError(f"tritonserver did not stop in {timeout} s:\n{self.tail()}") from None
        self._log_file.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def served(triton_env, coco_u8, tmp_path_factory):
    """One Triton server for the module: the demo model (float-output graph, 10 ids), a tiny COCO-Stuff graph
    (uint8 output, instance edges, 183 ids) and a tiny ADE20K VAE graph, each with its PNG model, and a dedup
    graph (float output), all written by `spade-rt triton --backend python`."""
    tmp = tmp_path_factory.mktemp("triton_served")
    ade = tiny_graph(tmp_path_factory.mktemp("ade_vae"), "ade20k", use_vae=True)
    dedup = tiny_graph(tmp_path_factory.mktemp("coco_dedup"), "coco", extra=("--graph", "dedup"))
    repo = tmp / "models"
    common = ["-o", str(repo), "--backend", "python", "--device", "cpu", "-q"]
    assert main(["triton", str(demo_graph_path()), *common, "--name", "demo", "--max-queue-delay-us", "20000"]) == 0
    assert main(["triton", str(coco_u8), *common, "--name", "coco"]) == 0
    assert main(["triton", str(ade), *common, "--name", "ade"]) == 0
    assert main(["triton", str(dedup), *common, "--name", "coco_dedup", "--no-png"]) == 0
    server = Triton(triton_env, repo, tmp / "tritonserver.log")
    try:
        server.wait_ready()
        yield SimpleNamespace(server=server, demo=demo_graph_path(), coco=coco_u8, ade=ade, dedup=dedup, tmp=tmp)
    finally:
        server.stop()


def grpc_infer(url: str, model: str, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    with grpcclient.InferenceServerClient(url) as client:
        inputs = []
        for name, arr in arrays.items():
            inp = grpcclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            inp.set_data_from_numpy(arr)
            inputs.append(inp)
        result = client.infer(model, inputs, client_timeout=120)
        return {out.name: result.as_numpy(out.name) for out in result.get_response().outputs}


def http_infer(url: str, model: str, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    client = httpclient.InferenceServerClient(url, network_timeout=120, connection_timeout=30)
    try:
        inputs = []
        for name, arr in arrays.items():
            inp = httpclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            inp.set_data_from_numpy(arr, binary_data=True)
            inputs.append(inp)
        result = client.infer(model, inputs)
        return {out["name"]: result.as_numpy(out["name"]) for out in result.get_response()["outputs"]}
    finally:
        client.close()


def stats(url: str, model: str) -> tuple[int, int, dict[int, int]]:
    """Triton's own statistics of a model (its HTTP API): inference count, execution count, {batch: executions}."""
    (s,) = httpx.get(f"http://{url}/v2/models/{model}/stats", timeout=30).json()["model_stats"]
    batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in s.get("batch_stats", [])}
    return int(s["inference_count"]), int(s["execution_count"]), batches


def test_pictures_over_http_and_grpc(served):
    ids = blobby_labels(3, 128, 128, 10, seed=3).astype(np.uint8)
    with Synthesizer(served.demo) as synth:
        expected = synth(ids)
    grpc_image = grpc_infer(served.server.grpc_url, "demo", labels=ids)["image"]
    http_image = http_infer(served.server.http_url, "demo", labels=ids[:1])["image"]
    assert grpc_image.dtype == np.uint8 and grpc_image.shape == (3, 128, 128, 3)
    np.testing.assert_array_equal(grpc_image, expected)
    np.testing.assert_array_equal(http_image, expected[:1])
    # COCO-Stuff: stored 255 -> the dontcare id 182 and the edges are spade-rt's; given edges are used as given.
    # Reference: the graph in ONNX Runtime, fed by hand (255 mapped, edges of the label map's boundaries)
    coco = blobby_labels(2, 64, 64, 183, seed=4).astype(np.uint8)
    coco[:, :8] = 255
    mapped = np.where(coco == 255, 182, coco).astype(np.uint8)
    session = ort.InferenceSession(str(served.coco), providers=["CPUExecutionProvider"])
    (by_boundaries,) = session.run(["image"], {"labels": mapped, "edges": instance_edges(mapped)})
    np.testing.assert_array_equal(grpc_infer(served.server.grpc_url, "coco", labels=coco)["image"], by_boundaries)
    edges = np.zeros_like(coco)
    (no_edges,) = session.run(["image"], {"labels": mapped, "edges": edges})
    got = http_infer(served.server.http_url, "coco", labels=coco, edges=edges)["image"]
    np.testing.assert_array_equal(got, no_edges)
    assert not np.array_equal(no_edges, by_boundaries)  # the edges reached the network
    # a dedup graph (float output): ONNX Runtime fed by hand, to uint8 as the original SPADE's tensor2im does
    dedup = ort.InferenceSession(str(served.dedup), providers=["CPUExecutionProvider"])
    (floats,) = dedup.run(["image"], {"labels": mapped, "edges": instance_edges(mapped)})
    expected = np.clip((floats.transpose(0, 2, 3, 1) + np.float32(1)) / 2 * 255, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(grpc_infer(served.server.grpc_url, "coco_dedup", labels=coco)["image"], expected)
    # a VAE model: z as sent
    ade_ids = blobby_labels(2, 64, 64, 151, seed=5).astype(np.uint8)
    z = np.random.default_rng(6).standard_normal((2, 256), dtype=np.float32)
    with Synthesizer(served.ade, backend="onnxruntime") as synth:  # what Triton's environment runs it on
        np.testing.assert_array_equal(
            grpc_infer(served.server.grpc_url, "ade", labels=ade_ids, z=z)["image"], synth(ade_ids, z=z)
        )


def test_concurrent_clients_are_batched(served):
    ids = blobby_labels(16, 128, 128, 10, seed=7).astype(np.uint8)
    url = served.server.grpc_url
    single = [grpc_infer(url, "demo", labels=ids[i : i + 1])["image"] for i in range(16)]
    before = stats(served.server.http_url, "demo")
    barrier = threading.Barrier(16)

    def call(i: int) -> np.ndarray:
        barrier.wait(timeout=60)
        return grpc_infer(url, "demo", labels=ids[i : i + 1])["image"]

    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(call, range(16)))
    for i in range(16):
        np.testing.assert_array_equal(concurrent[i], single[i])
    for _ in range(100):  # bounded: Triton updates its statistics just after the responses go out
        inferences, executions, batches = stats(served.server.http_url, "demo")
        if inferences - before[0] >= 16:
            break
        time.sleep(0.1)
    assert inferences - before[0] == 16
    assert executions - before[1] < 16, (before, inferences, executions, batches)  # some executions took >1
    assert any(size > 1 and n > before[2].get(size, 0) for size, n in batches.items()), batches


def test_a_bad_request_among_concurrent_ones_fails_alone(served):
    """Each request of a Triton batch goes through the label pipeline on its own: one unknown id fails its own
    request only."""
    from tritonclient.utils import InferenceServerException

    url = served.server.grpc_url
    ids = blobby_labels(8, 128, 128, 10, seed=11).astype(np.uint8)
    ids[3, 0, 0] = 99
    barrier = threading.Barrier(8)

    def call(i: int):
        barrier.wait(timeout=60)
        try:
            return grpc_infer(url, "demo", labels=ids[i : i + 1])["image"]
        except InferenceServerException as exc:
            return exc

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    assert isinstance(results[3], InferenceServerException) and "99 (1 px)" in str(results[3])
    good = [i for i in range(8) if i != 3]
    with Synthesizer(served.demo) as synth:
        expected = synth(ids[good])
    for k, i in enumerate(good):
        np.testing.assert_array_equal(results[i], expected[k : k + 1])


def test_bad_requests_get_errors_and_the_model_stays(served):
    from tritonclient.utils import InferenceServerException

    url = served.server.http_url
    ids = blobby_labels(1, 128, 128, 10, seed=8).astype(np.uint8)
    bad = ids.copy()
    bad[0, 5, 5] = 77
    with pytest.raises(
        InferenceServerException, match=r"label id\(s\) the model does not know: 77 \(1 px\); accepted ids are 0\.\.9"
    ):
        http_infer(url, "demo", labels=bad)
    with pytest.raises(InferenceServerException, match="INT32.*UINT8"):
        grpc_infer(served.server.grpc_url, "demo", labels=ids.astype(np.int32))
    with pytest.raises(InferenceServerException, match=r"\[1,64,64\]|\[1, 64, 64\]"):
        http_infer(url, "demo", labels=ids[:, :64, :64])
    with pytest.raises(InferenceServerException, match=r"expected 1 inputs but got 2.*'edges'"):  # Triton's check
        http_infer(url, "demo", labels=ids, edges=ids)
    # the model is still loaded and the next request is served
    assert httpx.get(f"http://{url}/v2/models/demo/ready", timeout=10).status_code == 200
    with Synthesizer(served.demo) as synth:
        np.testing.assert_array_equal(http_infer(url, "demo", labels=ids)["image"], synth(ids))


def test_metrics(served):
    text = httpx.get(f"http://127.0.0.1:{served.server.metrics_port}/metrics", timeout=10).text
    successes = [  # Triton's Prometheus text, read with prometheus_client's parser
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family.name == "nv_inference_request_success" and sample.labels.get("model") == "demo"
    ]
    assert successes and max(s.value for s in successes) >= 1, text[:2000]


def _png_request(data: bytes, **extra: np.ndarray) -> dict:
    return {"label_png": np.array([[data]], dtype=np.object_), **extra}


def test_png_model_gives_the_cli_picture(served, coco_sample, tmp_path):
    """A label PNG in (ids, or the preset's palette colours), the picture `spade-rt synthesize` writes out."""
    ids = blobby_labels(1, 200, 150, 10, seed=9)[0].astype(np.uint8)  # another size: resized like the CLI
    (tmp_path / "ids.png").write_bytes(png(ids))
    colours = np.array(LANDSCAPE_COLOURS, dtype=np.uint8)[ids]
    (tmp_path / "colours.png").write_bytes(png(colours))
    run_cli("synthesize", served.demo, "--labels", tmp_path / "ids.png", "-o", tmp_path / "cli.png")
    expected = decode((tmp_path / "cli.png").read_bytes())
    for name in ("ids.png", "colours.png"):
        out = http_infer(served.server.http_url, "demo_png", **_png_request((tmp_path / name).read_bytes()))
        # within 1 level: Triton runs the graph in its own environment (another ONNX Runtime build) than the CLI
        assert np.abs(out["image"][0].astype(int) - expected).max() <= 1
        np.testing.assert_array_equal(decode(bytes(out["image_png"][0, 0])), out["image"][0])
    # the real COCO-Stuff sample: label and instance PNGs as stored (255 unlabeled, 640x480 and so on)
    label = sorted((coco_sample / "val_label").glob("*.png"))[0]
    inst = coco_sample / "val_inst" / label.name
    run_cli("synthesize", served.coco, "--labels", label, "--instance", inst, "-o", tmp_path / "coco.png")
    out = http_infer(
        served.server.http_url,
        "coco_png",
        label_png=np.array([[label.read_bytes()]], dtype=np.object_),
        instance_png=np.array([[inst.read_bytes()]], dtype=np.object_),
    )
    np.testing.assert_array_equal(out["image"][0], decode((tmp_path / "coco.png").read_bytes()))
    # a VAE model without z: `spade-rt synthesize`'s default (--seed 0)
    ade_label = blobby_labels(1, 64, 64, 151, seed=10)[0].astype(np.uint8)
    (tmp_path / "ade.png").write_bytes(png(ade_label))
    run_cli("synthesize", served.ade, "--labels", tmp_path / "ade.png", "-o", tmp_path / "ade_cli.png")
    out = http_infer(served.server.http_url, "ade_png", **_png_request((tmp_path / "ade.png").read_bytes()))
    # within 1 level: the CLI's `auto` runs a static graph on OpenVINO where installed, Triton's env on ONNX Runtime
    assert np.abs(out["image"][0].astype(int) - decode((tmp_path / "ade_cli.png").read_bytes())).max() <= 1
    # a bad PNG: its error, and the PNG model keeps serving
    from tritonclient.utils import InferenceServerException

    with pytest.raises(
        InferenceServerException,
        match=r"^\S+ cannot read label map request label_png\[0\] as an image: cannot identify image file request "
        r"label_png\[0\]$",
    ):
        http_infer(served.server.http_url, "demo_png", **_png_request(b"not a png"))
    bad = ids.copy()
    bad[0, 0] = 42
    with pytest.raises(InferenceServerException, match=r"42 \(1 px\); accepted ids are 0\.\.9"):
        http_infer(served.server.http_url, "demo_png", **_png_request(png(bad)))
    again = http_infer(served.server.http_url, "demo_png", **_png_request(png(ids)))["image"][0]
    assert np.abs(again.astype(int) - expected).max() <= 1


def test_the_server_stops_cleanly(served):
    """Last in the module: SIGTERM stops Triton and its python-backend stubs, exit status 0."""
    assert served.server.stop() == 0, served.server.tail()
    log = served.server.tail()
    assert "successfully unloaded 'demo' version 1" in log and "successfully unloaded 'coco_png' version 1" in log
    leftover = subprocess.run(["pgrep", "-f", str(served.tmp / "models")], capture_output=True, text=True).stdout
    assert leftover.strip() == "", f"stub processes left: {leftover}"
