"""A backend is one registry entry: its options (typed), what `auto` picks, its tiers, its bench contestants and
its flags all derive from ``BACKENDS`` (spade_rt/runtime/registry.py); `inspect` of an ONNX graph needs neither
torch nor onnxruntime. References: the backends' own constructors, ONNX Runtime's session, the CLI's parsers."""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from spade_rt.cli import build_parser
from spade_rt.demo_model import SHIPPED_GRAPH, _asset
from spade_rt.errors import ConfigError
from spade_rt.runtime.onnx_describe import describe_graph
from spade_rt.runtime.registry import AUTO_ONNX_CPU, BACKENDS, backends_for, default_contestants
from spade_rt.runtime.spec import SPEC_KEY
from spade_rt.runtime.synthesizer import Synthesizer
from spade_rt.runtime.tiers import TIERS, resolve_tier

DEMO = _asset(SHIPPED_GRAPH)  # the shipped dedup fp32 graph


def _choices(command: str, dest: str):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return next(a for a in sub._actions if a.dest == dest)


# ---- the table ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BACKENDS))
def test_each_entrys_options_are_its_constructors_keywords(name):
    """The typed options name exactly the keywords the backend's constructor takes (the constructor is the
    reference: a field it does not take would fail at open, a keyword missing here could never be passed)."""
    entry = BACKENDS[name]
    module, _, attr = entry.factory.partition(":")
    try:
        factory = getattr(__import__(module, fromlist=[attr]), attr)
    except ImportError as exc:  # tensorrt without its package: the signature is still the source's
        pytest.skip(f"{name}: {exc}")
    keywords = [p for p in inspect.signature(factory).parameters if p not in ("self", "model")]
    assert sorted(entry.options.names()) == sorted(keywords)


def test_the_table_is_consistent_and_the_rest_derives_from_it():
    for entry in BACKENDS.values():
        assert set(entry.tiers) <= set(TIERS), entry.name
        assert set(entry.default_contestants) <= set(entry.contestants), entry.name
        assert not entry.auto_cpu or entry.kinds == ("onnx",), entry.name
    # the documented rule (docs/bench.md): static graphs OpenVINO first, dedup graphs ONNX Runtime first
    assert AUTO_ONNX_CPU == {"static": ("openvino", "onnxruntime"), "dedup": ("onnxruntime", "openvino")}
    from spade_rt.bench.run import DEFAULT_BACKENDS

    assert default_contestants() == DEFAULT_BACKENDS
    assert set(DEFAULT_BACKENDS) == {  # the list bench/run.py held by hand before the entries carried it
        "torch", "torch-compile", "onnxruntime-plain", "openvino-plain", "openvino-plain-exact", "onnxruntime",
        "onnxruntime-dedup", "openvino", "openvino-dedup", "openvino-half", "openvino-dedup-half",
        "onnxruntime-int8", "openvino-int8", "openvino-dedup-int8", "openvino-plain-int8", "tensorrt",
    }  # fmt: skip
    assert TIERS["half"].backends == ("openvino",) and TIERS["int8"].backends == ("onnxruntime", "openvino")
    demo = _choices("demo", "backend")
    assert tuple(demo.choices) == backends_for(("native", "onnx")) == ("torch", "onnxruntime", "openvino")
    assert demo.default == "onnxruntime"
    for command in ("synthesize", "serve", "triton"):
        tier = _choices(command, "tier")
        assert tier.metavar == "{auto,exact,half,int8}" and tier.default == "auto"
        for t in TIERS.values():  # each tier's help names the backends whose entries run it
            assert f"{t.name} ({t.guarantee}; on {', '.join(t.backends)})" in tier.help


def test_tier_checks_follow_the_entries():
    with pytest.raises(ConfigError, match=r"--tier half runs on openvino, not on --backend onnxruntime"):
        resolve_tier("half", None, "onnx", "onnxruntime")
    assert resolve_tier("half", None, "onnx", "openvino") == "half"
    with pytest.raises(ConfigError, match="needs an exported ONNX graph"):
        resolve_tier("half", None, "engine", "auto")


# ---- typed options and the server intent -------------------------------------------------------------------
def _relabelled(tmp_path, graph: str):
    """The demo graph with its spec saying ``graph``: what ``auto`` reads to pick (the pick is under test)."""
    model = onnx.load(str(DEMO))
    for p in model.metadata_props:
        if p.key == SPEC_KEY:
            spec = json.loads(p.value)
            spec["graph_options"]["graph"] = graph
            p.value = json.dumps(spec)
    path = tmp_path / f"demo-{graph}.onnx"
    onnx.save(model, str(path))
    return path


def test_options_never_change_the_pick_and_the_server_intent_reaches_the_picked_backend(tmp_path):
    dedup, static = DEMO, _relabelled(tmp_path, "static")
    with Synthesizer(dedup, server=True) as s:  # `spade-rt serve` of the demo graph
        assert s.backend.name == AUTO_ONNX_CPU["dedup"][0] == "onnxruntime"
        so = s.backend.session.get_session_options()  # ONNX Runtime's own record of the session's settings
        assert so.enable_cpu_mem_arena is False
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with Synthesizer(dedup) as s:
        assert s.backend.session.get_session_options().enable_cpu_mem_arena is True
    with Synthesizer(dedup, server=True, memory_arena=True) as s:  # an option given explicitly is kept
        assert s.backend.session.get_session_options().enable_cpu_mem_arena is True
    with Synthesizer(static, server=True, threads=1) as s:  # options no longer turn auto into onnxruntime
        assert s.backend.name == AUTO_ONNX_CPU["static"][0] == "openvino"
        assert s.backend.config["INFERENCE_NUM_THREADS"] == "1"
    with pytest.raises(ConfigError) as exc:
        Synthesizer(static, memory_arena=False)
    msg = str(exc.value)
    assert "\n" not in msg and "memory_arena" in msg and "openvino" in msg and "onnxruntime" in msg
    with pytest.raises(ConfigError, match=r"threads='2': expected int"):
        Synthesizer(dedup, threads="2")
    with pytest.raises(ConfigError, match=r"nope: not options of the onnxruntime backend"):
        Synthesizer(dedup, backend="onnxruntime", nope=1)


# ---- describe: torch- and onnxruntime-free -----------------------------------------------------------------
def _io(session):
    return [(i.name, i.type, i.shape) for i in session.get_inputs()], [
        (o.name, o.type, o.shape) for o in session.get_outputs()
    ]


def _odd_graph(path):
    """Initializers listed among the inputs (ONNX Runtime leaves them out), a named, a fixed and an unknown
    dimension, int64 and float16 IO, a producer and metadata."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, None])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 1])
    k = helper.make_tensor_value_info("k", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 3, None])
    init = helper.make_tensor("w", TensorProto.FLOAT, [3, 1], np.ones(3, np.float32))
    nodes = [helper.make_node("Mul", ["x", "w"], ["m"]), helper.make_node("Cast", ["m"], ["y"], to=10)]
    graph = helper.make_graph(nodes, "odd", [x, w, k], [y], initializer=[init])
    model = helper.make_model(graph, producer_name="odd-maker", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"a": "1", "b": "two"})
    onnx.save(model, str(path))


def test_describe_of_a_graph_gives_what_onnxruntime_reports(tmp_path):
    odd = tmp_path / "odd.onnx"
    _odd_graph(odd)
    for path in (DEMO, odd):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs, outputs = _io(session)
        info = describe_graph(path)
        assert info["inputs"] == {name: f"{kind} {shape}" for name, kind, shape in inputs}
        assert info["outputs"] == {name: f"{kind} {shape}" for name, kind, shape in outputs}
        assert info["producer"] == session.get_modelmeta().producer_name
    assert list(describe_graph(odd)["inputs"]) == ["x", "k"]  # w is an initializer
    demo = describe_graph(DEMO)
    assert demo["preset"] == "landscape" and demo["auto_backend_here"] == AUTO_ONNX_CPU["dedup"][0]


def test_inspect_of_a_graph_loads_neither_onnxruntime_nor_torch(tmp_path):
    graph = tmp_path / "g.onnx"
    shutil.copy(DEMO, graph)
    script = (
        "import sys; sys.modules['onnxruntime'] = None; sys.modules['torch'] = None\n"
        "from spade_rt.cli import main\n"
        f"status = main(['inspect', {str(graph)!r}])\n"
        "assert sys.modules['onnxruntime'] is None and sys.modules['torch'] is None\n"
        "sys.exit(status)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    for name, kind, shape in [*_io(session)[0], *_io(session)[1]]:  # the reference, in this process
        assert f"{name}" in proc.stdout and f"{kind} {shape}" in proc.stdout
