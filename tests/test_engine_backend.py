"""The engine backend's decisions that need no GPU: which GPUs an engine can run on, what a refusal says, what
``--rebuild`` does about it, and how the TensorRT-RTX runtime cache and runtime config are set up.

Engines here are real TensorRT-RTX builds (they build on a CPU); the GPU is the host stand-in of
tests/cuda_standin.py, reporting the compute capability under test (an H100 is 9.0).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from spade_rt.cli import main
from spade_rt.engines.adapter import TensorRT
from spade_rt.errors import EngineCompatibilityError

from cuda_standin import HostCuda
from reference_spade import ref_generator_for

trt_rtx = pytest.importorskip("tensorrt_rtx", reason="the rtx extra (tensorrt-rtx-cu13) is part of CI's install")


@pytest.fixture(scope="module")
def rtx_engine(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("rtx")
    torch.save(ref_generator_for("ade20k", 4, crop_size=64).state_dict(), tmp / "G.pth")
    args = ["--preset", "ade20k", "--crop-size", "64", "-o", str(tmp / "m.safetensors"), "-q"]
    assert main(["convert", str(tmp / "G.pth"), *args]) == 0
    onnx_path = tmp / "ade.onnx"
    export = ["export", str(tmp / "m.safetensors"), "-o", str(onnx_path), "--precision", "fp16", "--batch", "1:1:2"]
    assert main([*export, "--verify-samples", "1", "-q"]) == 0
    engine = tmp / "ade.engine"
    assert main(["build", str(onnx_path), "-o", str(engine), "--backend", "tensorrt-rtx", "-q"]) == 0
    return engine


def h100(device: int) -> HostCuda:
    return HostCuda(device, compute_capability="9.0", name="NVIDIA H100 80GB HBM3")


def test_rtx_supports_only_the_gpus_its_enum_lists():
    rtx = TensorRT.load("tensorrt-rtx")
    assert [rtx.supports_gpu(cc) for cc in ("7.5", "8.0", "8.6", "8.9", "12.0")] == [True] * 5
    assert [rtx.supports_gpu(cc) for cc in ("9.0", "10.0", "8.7", "7.0")] == [False] * 4


def test_rtx_engine_on_an_h100_says_what_runs_there_instead(rtx_engine):
    from spade_rt.engines.backend import TensorRTBackend

    with pytest.raises(EngineCompatibilityError) as err:
        TensorRTBackend(rtx_engine, cuda=h100)
    message = str(err.value)
    assert "TensorRT-RTX does not support this GPU (compute capability 9.0" in message
    assert "CUDA provider" in message and "--backend tensorrt" in message
    assert "rebuild it with" not in message  # a TensorRT-RTX rebuild cannot help there


def test_rebuild_never_rebuilds_with_rtx_for_a_gpu_rtx_cannot_run(rtx_engine, monkeypatch):
    """--rebuild on an H100: the manifest says another TensorRT-RTX version built it (stale before the GPU is
    looked at), but the GPU is one no TensorRT-RTX build runs on: no rebuild, and the message says why."""
    from spade_rt.engines import build as build_module
    from spade_rt.engines.backend import TensorRTBackend

    manifest_file = Path(f"{rtx_engine}.json")
    original = manifest_file.read_text()
    stale = json.loads(original)
    stale["builder"]["version"] = "1.0.0.0"
    manifest_file.write_text(json.dumps(stale))
    builds = []
    monkeypatch.setattr(build_module, "build_engine", lambda *a, **k: builds.append(a) or stale)
    real_load = TensorRT.load

    def no_full_tensorrt(backend="auto"):  # this machine has TensorRT-RTX only (true here; made explicit)
        if backend == "tensorrt":
            from spade_rt.errors import BackendUnavailableError

            raise BackendUnavailableError("tensorrt is not installed")
        return real_load(backend)

    monkeypatch.setattr(TensorRT, "load", staticmethod(no_full_tensorrt))
    try:
        with pytest.raises(EngineCompatibilityError, match="does not rebuild with TensorRT-RTX again"):
            TensorRTBackend(rtx_engine, cuda=h100, rebuild=True)
        assert builds == []
    finally:
        manifest_file.write_text(original)


def test_rebuild_on_an_unsupported_gpu_uses_full_tensorrt_when_installed(rtx_engine, monkeypatch):
    from spade_rt.engines import build as build_module
    from spade_rt.engines.backend import TensorRTBackend

    builds = []

    def fake_build(onnx_path, output, backend="auto", **kw):
        builds.append(backend)
        raise EngineCompatibilityError("stop here: building with full TensorRT needs its GPU")

    monkeypatch.setattr(build_module, "build_engine", fake_build)
    real_load = TensorRT.load
    full = TensorRT(SimpleNamespace(__name__="tensorrt", __version__="10.13.0"), "tensorrt")
    monkeypatch.setattr(TensorRT, "load", staticmethod(lambda b="auto": full if b == "tensorrt" else real_load(b)))
    with pytest.raises(EngineCompatibilityError, match="stop here"):
        TensorRTBackend(rtx_engine, cuda=h100, rebuild=True)
    assert builds == ["tensorrt"]


class _Cache:
    def __init__(self, accept):
        self.accept, self.blobs = accept, []

    def deserialize(self, blob):
        self.blobs.append(blob)
        if isinstance(self.accept, Exception):
            raise self.accept
        return self.accept


class _Config:
    cuda_graph_strategy = dynamic_shapes_kernel_specialization_strategy = None  # as IRuntimeConfig has them

    def __init__(self, accept):
        self.accept, self.caches, self.set_to = accept, [], None

    def create_runtime_cache(self):
        self.caches.append(_Cache(self.accept))
        return self.caches[-1]

    def set_runtime_cache(self, cache):
        self.set_to = cache
        return True


@pytest.mark.parametrize("accept", [True, False, RuntimeError("bad blob")], ids=["loads", "rejected", "raises"])
def test_runtime_cache_that_does_not_load_is_logged_and_replaced(accept, caplog):
    rtx = TensorRT.load("tensorrt-rtx")
    config = _Config(accept)
    engine = SimpleNamespace(create_runtime_config=lambda: config)
    with caplog.at_level(logging.INFO, logger="spade_rt.engines.adapter"):
        cfg, cache = rtx.runtime_config(engine, b"old cache", True, "x.engine.rtxcache")
    assert cfg is config and config.set_to is cache
    assert config.caches[0].blobs == [b"old cache"]
    assert cfg.cuda_graph_strategy == trt_rtx.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
    assert cfg.dynamic_shapes_kernel_specialization_strategy == trt_rtx.DynamicShapesKernelSpecializationStrategy.EAGER
    if accept is True:
        assert cache is config.caches[0] and "loaded" in caplog.text
    else:  # a fresh cache, not the one the rejected blob went into; the warning names the file
        assert cache is config.caches[1] and cache.blobs == []
        assert "ignoring x.engine.rtxcache" in caplog.text
        assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_tensorrt_extras_pair_each_wheel_with_the_cuda_python_of_its_cuda_major():
    """cu12 and cu13 variants of both TensorRTs, each with cuda-python of the same major; trt and rtx stay."""
    import re
    import tomllib

    from conftest import ROOT

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name in ("trt-cu12", "trt-cu13", "rtx-cu12", "rtx-cu13", "trt", "rtx"):
        deps = extras[name]
        wheel = next(d for d in deps if d.startswith("tensorrt"))
        major = int(re.search(r"-cu(\d+)", wheel).group(1))
        cuda_python = next(d for d in deps if d.startswith("cuda-python"))
        assert f">={major}." in cuda_python and f"<{major + 1}" in cuda_python, (name, deps)
        if name.endswith(("-cu12", "-cu13")):
            assert name[-2:] == str(major)[-2:], (name, wheel)
    assert extras["trt"] == extras["trt-cu13"] and extras["rtx"] == extras["rtx-cu13"]
