"""The path onto ONNX Runtime's CUDA provider, checked without a GPU.

- the graph formulations for it (``--index-pad float``, ``--lookup onehot``) stay exact against the
  independent reference, and are recorded in the spec;
- every node of those graphs has a CUDA kernel, read statically from the provider's kernel table
  (export/cuda_ep.py cites where it comes from); the default int32-pad graph does not (the 12 Memcpy nodes
  of issue 10), which shows the check can fail;
- provider choice: CUDA before CPU, the TensorRT provider only on request and always with its engine cache;
- the IO-binding path (bound, device-resident buffers updated in place) gives the plain path's results;
- fp16 verification: on a GPU provider where one exists; on the CPU, what it exercised is recorded, and the
  fp16 graph is compared with the PyTorch network run in fp16.
What needs the GPU itself (speed, CUDA graphs, NHWC, the exhaustive search) is in the gpu-marked test below.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from spade_rt.cli import main
from spade_rt.errors import BackendUnavailableError
from spade_rt.export.cuda_ep import CUDA_EP_KERNELS, cuda_ep_gaps, op_dtypes
from spade_rt.export.verify import FP16_ON_CPU, verification_providers
from spade_rt.labels import instance_edges
from spade_rt.runtime.onnxruntime_backend import OnnxRuntimeBackend, provider_config

from reference_spade import blobby_labels, ref_generator_for, ref_semantics, rel_l2

CUDA, CPU, TRT = "CUDAExecutionProvider", "CPUExecutionProvider", "TensorrtExecutionProvider"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny coco (instance edges) and ade20k VAE models, as spade-rt files, with their references."""
    tmp = tmp_path_factory.mktemp("cuda_ep")
    out = {}
    for preset, vae in (("coco", False), ("ade20k", True)):
        ref = ref_generator_for(preset, 4, use_vae=vae, seed=7, crop_size=64)
        torch.save(ref.state_dict(), tmp / f"{preset}.pth")
        model = tmp / f"{preset}.safetensors"
        assert (
            main(["convert", str(tmp / f"{preset}.pth"), "--preset", preset, "--crop-size", "64", "-o", str(model)])
            == 0
        )
        out[preset] = (ref, model)
    return tmp, out


def inputs(preset, n=2, seed=3):
    num = {"coco": 183, "ade20k": 151}[preset]
    ids = blobby_labels(n, 64, 64, num, seed=seed)
    inst = blobby_labels(n, 64, 64, 5, seed=seed + 1, cell=20) if preset == "coco" else None
    z = np.random.default_rng(seed).standard_normal((n, 256)).astype(np.float32) if preset == "ade20k" else None
    return num, ids, inst, z


def reference(ref, num, ids, inst, z):
    with torch.no_grad():
        return ref(ref_semantics(ids, num, inst), None if z is None else torch.from_numpy(z)).numpy()


def export(tmp, model, name, *extra):
    path = tmp / f"{name}.onnx"
    args = ["export", str(model), "-o", str(path), "--batch", "1:1:2", "--verify-samples", "1", "-q", *extra]
    assert main(args) == 0
    return path, json.loads((tmp / f"{name}.onnx.json").read_text())


@pytest.mark.parametrize(
    "preset,formulation,precision",
    [
        ("coco", ["--index-pad", "float"], "fp32"),
        ("coco", ["--lookup", "onehot"], "fp16"),
        ("ade20k", ["--index-pad", "float"], "fp16"),
        ("ade20k", ["--lookup", "onehot"], "fp32"),
    ],
    ids=["coco-float-pad-fp32", "coco-onehot-fp16", "ade20k-vae-float-pad-fp16", "ade20k-vae-onehot-fp32"],
)
def test_cuda_formulations_are_exact_and_every_node_has_a_cuda_kernel(models, preset, formulation, precision):
    tmp, found = models
    ref, model = found[preset]
    num, ids, inst, z = inputs(preset)
    want = reference(ref, num, ids, inst, z)
    bound = {"fp32": 1e-5, "fp16": 1e-2}[precision]
    path, report = export(tmp, model, f"{preset}-{formulation[1]}-{precision}", "--precision", precision, *formulation)
    backend = OnnxRuntimeBackend(path, providers=[CPU])
    got = backend.run(ids.astype(np.uint8), None if inst is None else instance_edges(inst), z)
    assert rel_l2(got, want) < bound, (precision, rel_l2(got, want))
    graph = onnx.load(path)
    assert cuda_ep_gaps(graph) == [] and report["cuda_ep_gaps"] == [], cuda_ep_gaps(graph)
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & {"Shape", "ConstantOfShape", "Expand", "NonZero"}  # no shape work left for the CPU
    options = backend.spec.extra["graph_options"]  # in the spec, so build copies it into the manifest
    assert (options["index_pad"], options["lookup"]) == (
        ("float", "gather") if formulation[0] == "--index-pad" else ("int32", "onehot")
    )
    assert report["options"]["index_pad"] == options["index_pad"]
    verification = report["verification"]
    assert verification["provider"] in (CUDA, CPU)
    if precision == "fp16" and verification["provider"] == CPU:
        assert verification["numerics"] == FP16_ON_CPU  # what a CPU-only verification did and did not check


def test_the_default_int32_pad_is_the_one_gap_and_the_check_reads_input_types(models):
    """The TensorRT graph keeps its int32 Pad (TensorRT fuses it): the static check names exactly that."""
    tmp, found = models
    path, report = export(tmp, found["coco"][1], "coco-default-fp16", "--precision", "fp16")
    graph = onnx.load(path)
    assert report["cuda_ep_gaps"] == cuda_ep_gaps(graph) == ["Pad on int32 (input 0)"]
    dtypes = op_dtypes(graph)
    assert dtypes["Pad"] == ["int32"] and dtypes["Conv"] == ["float16"] and dtypes["Gather"] == ["float16"]
    assert set(dtypes) <= set(CUDA_EP_KERNELS)  # every op spade-rt emits is in the transcribed table


def test_provider_choice_cuda_first_tensorrt_only_on_request_with_its_cache(tmp_path):
    everything = [TRT, CUDA, CPU]
    default = provider_config(everything)
    assert [p if isinstance(p, str) else p[0] for p in default] == [CUDA, CPU]  # not the TensorRT provider
    cuda_options = default[0][1]
    assert cuda_options["cudnn_conv_algo_search"] == "EXHAUSTIVE" and cuda_options["prefer_nhwc"] == "1"
    assert "enable_cuda_graph" not in cuda_options
    assert provider_config(everything, cuda_graph=True)[0][1]["enable_cuda_graph"] == "1"
    trt = provider_config(everything, [TRT, CUDA, CPU], cache=tmp_path / "trt")[0]
    assert trt[0] == TRT and trt[1]["trt_engine_cache_enable"] == "True"
    assert trt[1]["trt_engine_cache_path"] == str(tmp_path / "trt") and trt[1]["trt_timing_cache_enable"] == "True"
    from spade_rt.cache import built_dir

    assert provider_config(everything, [TRT])[0][1]["trt_engine_cache_path"].startswith(str(built_dir()))
    assert provider_config([CPU]) == [CPU]
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider not available here"):
        provider_config([CPU], [CUDA])


def test_io_binding_path_matches_the_plain_path_and_keeps_results(models):
    """The GPU path's mechanics (buffers bound once per input shape, updated in place) on the CPU provider."""
    tmp, found = models
    path, _ = export(tmp, found["coco"][1], "coco-binding", "--index-pad", "float", "--output", "uint8")
    bound = OnnxRuntimeBackend(path, providers=[CPU], io_binding=True)
    plain = OnnxRuntimeBackend(path, providers=[CPU])
    results = []
    for i, n in enumerate([1, 2, 1, 2, 2]):
        _, ids, inst, _ = inputs("coco", n, seed=20 + i)
        args = (ids.astype(np.uint8), instance_edges(inst), None)
        got = bound.run(*args)
        assert got.dtype == np.uint8 and got.shape == (n, 64, 64, 3)
        np.testing.assert_array_equal(got, plain.run(*args))
        results.append((got, plain.run(*args)))
    for got, want in results:  # earlier results are not views of buffers later calls overwrite
        np.testing.assert_array_equal(got, want)
    assert len(bound._bound) == 2  # one set of bound buffers per input shape
    bound.close()
    plain.close()


def test_fp16_verification_runs_on_a_gpu_provider_when_present():
    assert verification_providers("fp16", [TRT, CUDA, CPU]) == [CUDA, CPU]  # never ORT's TensorRT provider
    assert verification_providers("fp32", [CUDA, CPU]) == [CPU]
    assert verification_providers("fp16", [CPU]) == [CPU]


def test_fp16_graph_error_is_that_of_the_network_run_in_fp16(tmp_path):
    """On the CPU the fp16 graph stores fp16 between nodes and accumulates in fp32; PyTorch runs the network
    in real fp16 (half kernels) here. Both must sit at fp16's error level against fp32, the graph not far
    above it. (facades at 32x32: CPU half convolutions are slow.)"""
    ref = ref_generator_for("facades", 4, seed=7, crop_size=32)
    torch.save(ref.state_dict(), tmp_path / "G.pth")
    model = tmp_path / "facades.safetensors"
    assert main(["convert", str(tmp_path / "G.pth"), "--preset", "facades", "--crop-size", "32", "-o", str(model)]) == 0
    path, _ = export(tmp_path, model, "facades-fp16", "--precision", "fp16", "--index-pad", "float")
    ids = blobby_labels(1, 32, 32, 13, seed=40)
    with torch.no_grad():
        want = ref(ref_semantics(ids, 13)).numpy()
        real_fp16 = ref.half()(ref_semantics(ids, 13).half()).float().numpy()
    got = OnnxRuntimeBackend(path, providers=[CPU]).run(ids.astype(np.uint8), None, None)
    err_graph, err_half = rel_l2(got, want), rel_l2(real_fp16, want)
    assert 0 < err_half < 1e-2 and err_graph < 1e-2
    assert err_graph < 4 * err_half + 1e-4, (err_graph, err_half)


@pytest.mark.gpu
def test_cuda_provider_runs_the_float_pad_graph_with_cuda_graphs(models):
    """Where onnxruntime-gpu and a GPU exist: every node on CUDA, so the session takes CUDA graphs."""
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed here")
    tmp, found = models
    ref, model = found["coco"]
    path, report = export(tmp, model, "coco-gpu-fp16", "--precision", "fp16", "--index-pad", "float")
    assert report["verification"]["provider"] == CUDA
    backend = OnnxRuntimeBackend(path)
    assert backend.providers[0] == CUDA and backend.cuda_graph and backend.io_binding
    for n in (1, 2, 1, 2):
        num, ids, inst, _ = inputs("coco", n, seed=n)
        got = backend.run(ids.astype(np.uint8), instance_edges(inst), None)
        assert rel_l2(got, reference(ref, num, ids, inst, None)) < 1e-2
    backend.close()
