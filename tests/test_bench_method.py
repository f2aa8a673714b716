"""The bench's method in pieces (no wall-clock time is asserted: the clocks here are fakes).

- warm-up runs until the timings settle (or a cap), not a fixed count;
- device-event times are recorded beside host-to-host times;
- the GPU-only contestants say why they do not run on a CPU;
- throughput engines are built with a profile whose optimum is the batch being timed.
"""

from __future__ import annotations

import json

import pytest
import torch

from spade_rt.bench.contestants import UnavailableError, factory, load_contestant, prepare_artifact
from spade_rt.bench.harness import interleaved, warm_up
from spade_rt.cli import main
from spade_rt.runtime.registry import all_contestants, contestant_backend

from reference_spade import ref_generator_for


class FakeClock:
    """time.perf_counter stand-in: each call of the timed function advances it by the next duration."""

    def __init__(self, durations_ms):
        self.now, self.durations = 0.0, list(durations_ms)
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.now += self.durations[min(self.calls, len(self.durations) - 1)] / 1e3
        self.calls += 1


def test_warm_up_continues_until_the_last_calls_settle():
    # compilation, then graph recording, then steady: the first five calls would have been counted as timed
    clock = FakeClock([900, 120, 60, 30, 11, 10.2, 10.0, 10.1, 10.3, 10.0, 10.1])
    result = warm_up(clock.work, clock=clock, min_calls=2, window=5, tolerance=0.05)
    assert result.settled and result.calls == 10 and clock.calls == 10  # 11 ms is 9.8% off: one more
    assert max(result.last_ms) <= 10.3 + 1e-9


def test_warm_up_stops_at_its_cap_and_says_it_did_not_settle():
    clock = FakeClock([10, 20] * 50)  # never settles
    result = warm_up(clock.work, clock=clock, min_calls=2, max_calls=12, window=5, tolerance=0.05)
    assert not result.settled and result.calls == 12
    clock = FakeClock([5.0] * 50)
    assert warm_up(clock.work, clock=clock, min_calls=7, window=3).calls == 7  # at least min_calls


def test_device_times_are_recorded_beside_host_times():
    clock_calls = []
    timings = interleaved(
        {"a": lambda: clock_calls.append("a"), "b": lambda: clock_calls.append("b")},
        4,
        device_timers={"a": lambda: 1.5, "b": lambda: None},  # b has no device time (e.g. ONNX Runtime)
    )
    assert timings["a"].device_ms == [1.5] * 4 and timings["a"].device_summary()["p50"] == 1.5
    assert timings["b"].device_ms is None and timings["b"].device_summary() is None
    assert len(timings["a"].samples_ms) == len(timings["b"].samples_ms) == 4 and len(clock_calls) == 8


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench_method")
    torch.save(ref_generator_for("ade20k", 4, crop_size=64).state_dict(), tmp / "G.pth")
    model = tmp / "m.safetensors"
    assert main(["convert", str(tmp / "G.pth"), "--preset", "ade20k", "--crop-size", "64", "-o", str(model)]) == 0
    return tmp, model


def test_gpu_only_contestants_are_registered_and_skip_on_a_cpu_with_a_reason(tiny_model):
    tmp, model = tiny_model
    assert "torch-compile-fp16" in all_contestants() and contestant_backend("torch-compile-fp16").name == "torch"
    assert "onnxruntime-onehot" in all_contestants()
    with pytest.raises(UnavailableError, match="GPU baseline"):
        load_contestant("torch-compile-fp16", model, None, "cpu")
    with pytest.raises(UnavailableError, match="for GPUs"):
        prepare_artifact("onnxruntime-onehot", model, tmp, "cpu", 2)
    assert factory("tensorrt").per_batch and not factory("onnxruntime").per_batch


def test_throughput_engines_are_tuned_for_the_batch_they_are_timed_at(tiny_model, monkeypatch):
    """The tensorrt contestant's artifact for batch 4: a graph and a (real TensorRT-RTX) engine whose profile
    optimum is 4 (on a CPU the contestant refuses before building, so the builder is called directly)."""
    pytest.importorskip("tensorrt_rtx")
    from spade_rt.bench import contestants
    from spade_rt.engines.build import build_engine

    tmp, model = tiny_model
    graph = contestants._graph(model, tmp, "fp16", 4, opt=4)
    engine = tmp / "opt4.engine"
    manifest = build_engine(graph, engine, backend="tensorrt-rtx", progress=False)
    assert manifest["inputs"]["labels"]["min"][0] == 1 and manifest["inputs"]["labels"]["opt"][0] == 4
    assert manifest["inputs"]["labels"]["max"][0] == 4 and manifest["spec"]["opt_batch"] == 4
    assert json.loads((tmp / f"{graph.name}.json").read_text())["options"]["batch"] == [1, 4, 4]
    with pytest.raises(UnavailableError, match="needs an NVIDIA GPU"):
        prepare_artifact("tensorrt", model, tmp, "cpu", 4, opt=4)


def _entry(p50, img_s, err=1e-3):
    return {
        "status": "ok",
        "latency_ms": {"p50": p50},
        "speedup_vs_baseline": 11.3 / p50,
        "throughput": {"8": {"images_per_s": img_s}},
        "accuracy": {"max_rel_l2": err},
        "peak_memory_mb": 100.0,
    }


def _record(**backends):
    return {
        "config": {"preset": "coco", "ngf": 64, "size": [256, 256]},
        "machine": {"device_name": "a GPU"},
        "backends": {"torch": _entry(11.3, 232), **backends},
    }


def test_acceptance_criteria_pass_and_fail_on_the_records(tmp_path, capsys):
    from spade_rt.bench import acceptance

    good = _record(**{"torch-compile-fp16": _entry(4.0, 400), "onnxruntime": _entry(2.5, 500)})
    assert all(ok for ok, _ in acceptance.criteria(good))
    slow = _record(**{"torch-compile-fp16": _entry(2.0, 400), "onnxruntime": _entry(2.5, 500)})
    failed = [what for ok, what in acceptance.criteria(slow) if not ok]
    assert len(failed) == 1 and "torch-compile-fp16 2.00 ms" in failed[0]
    inexact = _record(**{"onnxruntime": _entry(2.5, 500, err=0.05)})
    assert [ok for ok, _ in acceptance.criteria(inexact)][-1] is False
    skipped = _record(onnxruntime={"status": "skipped", "reason": "onnxruntime-gpu is not installed"})
    assert acceptance.criteria(skipped) == [(False, acceptance.criteria(skipped)[0][1])]
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(good))
    assert acceptance.main([str(path)]) == 0
    assert "PASS" in capsys.readouterr().out
    path.write_text(json.dumps(slow))
    assert acceptance.main([str(path)]) == 1


def test_warm_up_time_cap_starts_after_the_minimum_calls():
    """A 900 s first call (a compilation) does not end the warm-up: the cap counts from the min_calls-th call."""
    clock = FakeClock([900_000, 1.0, 2.0] + [1.0, 2.0] * 50)
    result = warm_up(clock.work, clock=clock, min_calls=2, max_calls=100, window=5, max_seconds=0.01)
    assert not result.settled and 2 < result.calls < 20
