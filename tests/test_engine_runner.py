"""The engine runner (engines/runner.py) against a host stand-in for CUDA and TensorRT (tests/cuda_standin.py).

What these pin down, each a defect of issue 10 that could return a wrong picture silently:
- dynamic H x W engines run at the input's real size (output buffer, shapes and graph keys per call);
- CUDA graphs: never a graph replayed after set_input_shape changed the context (a change of shapes
  destroys the graph and captures again); the captured enqueue's result is checked; a failed capture falls
  back to plain execution;
- GPU inputs: our stream waits for the producer's stream (CUDA Array Interface v3 ``stream``), DLPack gets our
  stream to order for;
- calls from another thread make the device current there first.
The stand-in runs stream work lazily (only when waited for), so a missing wait reads stale memory here.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from spade_rt.engines.adapter import TensorRT
from spade_rt.engines.runner import EngineRunner
from spade_rt.errors import InputError

from conftest import run_in_threads
from cuda_standin import LEGACY, CaiArray, DlpackArray, HostCuda, HostEngine, expected

FAKE_TRT = TensorRT(SimpleNamespace(), "tensorrt")  # the adapter creates contexts; nothing of a module is read
DYNAMIC = {"labels": ((1, 32, 32), (2, 128, 128)), "edges": ((1, 32, 32), (2, 128, 128))}


def make_runner(cuda, profile=DYNAMIC, own_graphs=False, layout="nchw", **engine_kw):
    engine = HostEngine(cuda, profile, layout=layout, **engine_kw)
    runner = EngineRunner(
        engine,
        FAKE_TRT,
        cuda,
        engine.manifest_inputs(),
        engine.output_dtype,
        layout,
        own_graphs=own_graphs,
        errors=engine.errors,
    )
    return engine, runner


def maps(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 150, (n, h, w), dtype=np.uint8), rng.integers(0, 2, (n, h, w), dtype=np.uint8)


@pytest.mark.parametrize("own_graphs", [False, True], ids=["one-context", "graphs"])
def test_dynamic_size_engine_runs_at_the_inputs_real_size(own_graphs):
    cuda = HostCuda()
    _, runner = make_runner(cuda, own_graphs=own_graphs)
    for n, h, w in ((1, 128, 128), (2, 64, 96), (1, 32, 32), (1, 128, 128), (2, 64, 96)):
        ids, edges = maps(n, h, w, seed=h + w)
        out = runner.run({"labels": ids, "edges": edges})
        assert out.shape == (n, 3, h, w)
        np.testing.assert_array_equal(out, expected(ids, edges))
    with pytest.raises(InputError, match=r"labels of shape \(1, 256, 256\) is outside the engine's profile"):
        runner.run({"labels": np.zeros((1, 256, 256), np.uint8), "edges": np.zeros((1, 256, 256), np.uint8)})
    runner.close()


def test_uint8_nhwc_output_and_vae_input():
    cuda = HostCuda()
    profile = {"labels": ((1, 64, 64), (4, 64, 64)), "z": ((1, 8), (4, 8))}
    _, runner = make_runner(cuda, profile, layout="nhwc", own_graphs=True)
    ids = maps(3, 64, 64)[0] % 50
    z = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    out = runner.run({"labels": ids, "z": z})
    assert out.dtype == np.uint8 and out.shape == (3, 64, 64, 3)
    np.testing.assert_array_equal(out, expected(ids, None, z, "nhwc"))


def test_cuda_graphs_are_never_replayed_after_a_shape_change():
    """Same shapes: replay. New shapes: the old graph is destroyed, one plain run, a new capture. (The
    stand-in raises when a graph runs after set_input_shape changed its context.)"""
    cuda = HostCuda()
    engine, runner = make_runner(cuda, own_graphs=True)
    shapes = [(1, 64, 64)] * 3 + [(2, 64, 64)] * 3 + [(1, 64, 64)] * 2 + [(2, 128, 96)] + [(2, 64, 64)] * 2
    for i, (n, h, w) in enumerate(shapes):
        ids, edges = maps(n, h, w, seed=i)
        np.testing.assert_array_equal(runner.run({"labels": ids, "edges": edges}), expected(ids, edges))
    assert len(engine.contexts) == 1 and runner.replaying
    assert runner.captures == 5  # one per change of shapes
    assert cuda.graphs_launched == 2 + 2 + 1 + 0 + 1  # every call at unchanged shapes replays
    assert len(engine.runs) == len(shapes)  # the engine ran once per call: nothing twice, nothing skipped


@pytest.mark.parametrize(
    "failure",
    [
        {"cuda": {"fail_capture": "begin"}},
        {"cuda": {"fail_capture": "end"}},
        {"engine": {"fail_enqueue_under_capture": True}},
        {"engine": {"capturable": False}},
    ],
    ids=["begin-capture-fails", "end-capture-fails", "enqueue-refused-under-capture", "not-capturable"],
)
def test_a_failed_capture_falls_back_to_plain_execution(failure, caplog):
    cuda = HostCuda(**failure.get("cuda", {}))
    engine, runner = make_runner(cuda, own_graphs=True, **failure.get("engine", {}))
    with caplog.at_level(logging.INFO, logger="spade_rt.engines.runner"):
        for i in range(4):
            ids, edges = maps(1 + i % 2, 64, 64, seed=i)
            np.testing.assert_array_equal(runner.run({"labels": ids, "edges": edges}), expected(ids, edges))
    assert cuda.graphs_launched == 0 and not runner.replaying and runner.captures == 0
    assert len(engine.runs) == 4  # every call ran the engine exactly once: no graph, no double run
    assert "without a" in caplog.text


def test_run_device_waits_for_the_producers_stream():
    """CUDA Array Interface v3: the labels are still being written on the producer's stream when we are
    called; our copies must be ordered after that work (the stand-in runs it only if we wait for it)."""
    cuda = HostCuda()
    _, runner = make_runner(cuda, own_graphs=True)
    for i in range(3):  # first call plain, then capture, then replay: the wait precedes each
        ids, edges = maps(2, 64, 64, seed=10 + i)
        producer = cuda.stream()
        labels, edge_arr = CaiArray(cuda, ids, producer), CaiArray(cuda, edges, producer)
        cuda.enqueue(producer, lambda a=labels, v=ids: a.view.__setitem__(Ellipsis, v))
        cuda.enqueue(producer, lambda a=edge_arr, v=edges: a.view.__setitem__(Ellipsis, v))
        out = CaiArray(cuda, np.zeros((2, 3, 64, 64), np.float32), None)
        assert runner.run_device({"labels": labels, "edges": edge_arr}, out) is out
        np.testing.assert_array_equal(out.view, expected(ids, edges))


def test_run_device_interface_versions_and_streams():
    cuda = HostCuda()
    _, runner = make_runner(cuda)
    ids, edges = maps(1, 32, 32, seed=3)
    # v2 (no stream key): no promise from the producer, so the legacy default stream is waited for
    labels, edge_arr = CaiArray(cuda, ids, None, version=2), CaiArray(cuda, edges, None, version=2)
    cuda.enqueue(LEGACY, lambda: labels.view.__setitem__(Ellipsis, ids))
    cuda.enqueue(LEGACY, lambda: edge_arr.view.__setitem__(Ellipsis, edges))
    out = CaiArray(cuda, np.zeros((1, 3, 32, 32), np.float32), None)
    runner.run_device({"labels": labels, "edges": edge_arr}, out)
    np.testing.assert_array_equal(out.view, expected(ids, edges))
    # stream None: the producer says nothing is pending, and nothing is waited for
    cuda.calls.clear()
    labels.stream = edge_arr.stream = None
    labels.version = edge_arr.version = 3
    runner.run_device({"labels": labels, "edges": edge_arr}, out)
    assert "wait_event" not in cuda.calls
    np.testing.assert_array_equal(out.view, expected(ids, edges))
    # stream 0 is disallowed by the interface; the wrong dtype and a too-small out are refused in one line
    labels.stream = 0
    with pytest.raises(InputError, match="stream 0 is disallowed"):
        runner.run_device({"labels": labels, "edges": edge_arr}, out)
    labels.stream = None
    with pytest.raises(InputError, match=r"out: expected float32 \(1, 3, 32, 32\)"):
        runner.run_device({"labels": labels, "edges": edge_arr}, CaiArray(cuda, np.zeros((1, 3, 8, 8)), None))


def test_run_device_dlpack_hands_our_stream_to_the_producer():
    cuda = HostCuda()
    _, runner = make_runner(cuda)
    ids, edges = maps(1, 64, 32, seed=5)
    producer = cuda.stream()
    labels, edge_arr = DlpackArray(cuda, ids, producer), DlpackArray(cuda, edges, producer)
    cuda.enqueue(producer, lambda: labels.view.__setitem__(Ellipsis, ids))
    cuda.enqueue(producer, lambda: edge_arr.view.__setitem__(Ellipsis, edges))
    ptr = runner.run_device({"labels": labels, "edges": edge_arr})  # no out: our buffer's device pointer
    assert labels.asked == [runner.stream] and edge_arr.asked == [runner.stream]
    from cuda_standin import _host_view

    np.testing.assert_array_equal(_host_view(ptr, np.float32, (1, 3, 64, 32)), expected(ids, edges))


def test_calls_from_another_thread_make_the_device_current_there():
    """GPU 1 of a two-GPU machine: a worker thread starts on GPU 0 (CUDA's per-thread current device)."""
    cuda = HostCuda(device=1)
    _, runner = make_runner(cuda, own_graphs=True)

    def worker(seed):
        ids, edges = maps(1, 64, 64, seed=seed)
        return runner.run({"labels": ids, "edges": edges}), expected(ids, edges)

    for got, want in run_in_threads(worker, 3):
        np.testing.assert_array_equal(got, want)
    runner.close()


@pytest.mark.gpu
def test_real_cuda_orders_copies_after_a_torch_producer_stream():
    """On a GPU (no TensorRT needed): the real cuda-python calls of the stream handover, with PyTorch as the
    producer still writing when we are called. PyTorch exports the CUDA Array Interface as v2 (no stream
    key): its default (legacy) stream is waited for. Through DLPack it orders a side stream's work itself."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA GPU")
    from spade_rt.engines.cuda import Cuda, device_array

    cuda = Cuda(0)
    stream, event = cuda.stream(), cuda.event()
    n = 1 << 24
    dst = cuda.malloc(n)
    host_ptr, host = cuda.pinned(n, np.dtype(np.uint8))
    for protocol, value in (("cai", 7), ("dlpack", 9)):
        src = torch.zeros(n, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        producer = torch.cuda.current_stream() if protocol == "cai" else torch.cuda.Stream()
        with torch.cuda.stream(producer):
            torch.cuda._sleep(200_000_000)  # the producer is still busy when we are called
            src.fill_(value)
            obj = src
            if protocol == "dlpack":  # hide the array interface: DLPack only
                obj = SimpleNamespace(__dlpack__=src.__dlpack__, __dlpack_device__=src.__dlpack_device__)
            view = device_array(obj, "labels", int(stream), 0)
        assert (view.stream is not None) == (protocol == "cai")
        if view.stream is not None:
            cuda.wait_for_stream(stream, view.stream, event)
        cuda.copy_async(dst, view.ptr, n, "d2d", stream)
        cuda.copy_async(host_ptr, dst, n, "d2h", stream)
        cuda.synchronize(stream)
        assert (host == value).all(), protocol
    free, total = cuda.mem_get_info()
    assert 0 < free <= total
    cuda.free(dst)
    cuda.free_pinned(host_ptr)
