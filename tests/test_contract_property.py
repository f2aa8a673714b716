"""The contract of issue 18, as a property: whatever the arguments, a command ends in one of two ways.

- exit 0 with the outputs it promises (a picture, a graph and its report, an engine and its manifest ...), or
- exit 1 (our error) / 2 (a usage error) with exactly one line on stderr, no traceback, and nothing written
  or changed anywhere (the working directory, the inputs, the cache).

The Python API the same way: ``Synthesizer(...)(labels, ...)`` returns the promised array, or raises one of
spade-rt's typed errors (``SpadeRtError``) with a one-line message; never a numpy or ONNX Runtime exception.

Hypothesis draws the argument vectors (valid and invalid values, suffixes, missing and existing paths, flag
combinations) and arrays (shapes, dtypes, id ranges). Commands run in-process (``spade_rt.cli.main``, stderr
captured, SystemExit caught), on tiny models. Two profiles: FAST runs in the default suite (a few examples per
command, derandomised so CI is repeatable); SLOW (marked ``slow``) draws many more.

A command is covered when its name is in ``COVERED`` (each has its strategy in ``ARGV``); serve is drawn with one
refused value always (a valid argument vector would start a server).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from spade_rt.cli import main
from spade_rt.errors import SpadeRtError
from spade_rt.runtime.synthesizer import Synthesizer

from conftest import ROOT
from reference_spade import ref_generator_for
from serve_support import demo_graph_path, tiny_model

DEMO = ROOT / "spade_rt" / "assets" / "landscape_demo.safetensors"
FAST = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# the longer profile runs in CI too (the suite runs `slow` tests): sized to about two minutes there; set
# SPADE_RT_CONTRACT_EXAMPLES for a longer hunt (examples per command; the API gets five times as many)
LONG = int(os.environ.get("SPADE_RT_CONTRACT_EXAMPLES", "40"))
SLOW = settings(max_examples=LONG, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
API_FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None)
API_SLOW = settings(max_examples=5 * LONG, deadline=None, database=None)


# ---- the inputs every example may use (read only; a snapshot proves it) ----------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("property-inputs")
    m = tiny_model(d, "facades")  # 13 ids, no dontcare, no instance, 64x64, ngf 4
    (d / "vae").mkdir()
    tiny_model(d / "vae", "coco", use_vae=True)  # 183 ids (255 = dontcare), instance edges, z 256
    shutil.move(d / "vae" / "coco.safetensors", d / "vae.safetensors")
    for name, extra in (("g.onnx", []), ("dyn.onnx", ["--dynamic"]), ("fp16.onnx", ["--precision", "fp16"])):
        assert main(["export", str(m), "-o", str(d / name), "--verify-samples", "1", "-q", *extra]) == 0
    torch.save(ref_generator_for("facades", 4, crop_size=64).state_dict(), d / "G.pth")
    ids = np.random.default_rng(0).integers(0, 13, (64, 64)).astype(np.uint8)
    Image.fromarray(ids).save(d / "label.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(d / "rgb.png")
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(d / "big_id.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(d / "u255.png")
    Image.fromarray(ids[:, :32]).save(d / "label_64x32.png")
    (d / "maps").mkdir()
    for i in range(2):
        Image.fromarray(ids[::-1] if i else ids).save(d / "maps" / f"{i}.png")
    np.save(d / "z.npy", np.zeros(256, np.float32))
    (d / "text.txt").write_text("not a model\n")
    (d / "a_folder").mkdir()
    demo_graph_path()  # the demo graph in the session cache: `spade-rt demo` examples do not export it again
    return d


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for root in roots:
        for p in [root, *root.rglob("*")]:
            st_ = p.lstat()
            found[str(p)] = (st_.st_size if p.is_file() else -1, st_.st_mtime_ns if p.is_file() else 0)
    return found


# ---- argument vectors -------------------------------------------------------------------------------------
# names: I/x is the inputs folder's x, W/x is x in the example's working directory (made fresh each time,
# holding an existing picture W/exists.png and an existing folder W/exists_dir), C the session's cache
MODELS = ["I/m.safetensors", "I/vae.safetensors", "I/g.onnx", "I/dyn.onnx", "I/fp16.onnx", "I/missing.onnx",
          "I/text.txt", "I/a_folder"]
OUTS = ["W/out.png", "W/out.npy", "W/out.onnx", "W/out.engine", "W/out.safetensors", "W/out.txt", "W/out",
        "W/exists.png", "W/exists_dir", "W/sub/out.png"]
SEEDS = ["-5", "0", "3", str(2**32), "x"]
LABELS = ["I/label.png", "I/rgb.png", "I/big_id.png", "I/u255.png", "I/label_64x32.png", "I/maps", "I/missing.png"]


def options(table: dict[str, list]) -> st.SearchStrategy[list[str]]:
    """Some of the options of ``table`` (flag -> values; [] for a flag without a value), each with a value."""

    def one(flag: str) -> st.SearchStrategy[list[str]]:
        values = table[flag]
        return st.just([flag]) if not values else st.sampled_from(values).map(lambda v: [flag, v])

    keys = st.lists(st.sampled_from(sorted(table)), unique=True, max_size=4)
    return keys.flatmap(lambda ks: st.tuples(*(one(k) for k in ks)) if ks else st.just(())).map(
        lambda parts: [a for part in parts for a in part]
    )


def with_positional(name: str, *positional: list[str], opts: dict[str, list], forced: list | None = None):
    """argv = name, one value of each positional list, some options; ``forced``: one of these (argument lists)
    is always added (commands whose success would take long here: their refusals only)."""
    parts = [st.just([name]), *(st.sampled_from(p).map(lambda v: [v]) for p in positional), options(opts)]
    if forced:
        parts.append(st.sampled_from(forced))
    return st.tuples(*parts).map(lambda ps: [a for p in ps for a in p])


ARGV = {
    "demo": with_positional(
        "demo",
        opts={"-o": OUTS, "--seed": SEEDS, "--count": ["0", "1", "2", "17"], "--backend": ["onnxruntime", "torch"],
              "--cache-dir": ["C"]},
    ),
    "synthesize": with_positional(
        "synthesize",
        MODELS,
        ["--labels"],
        LABELS,
        ["-o"],
        OUTS,
        opts={"--instance": ["I/label.png", "I/maps"], "--seed": SEEDS, "--z": ["I/z.npy", "I/missing.npy"],
              "--format": ["png", "npy"], "--batch-size": ["0", "1", "2"], "--no-resize": [], "--rebuild": [],
              "--backend": ["onnxruntime", "torch"], "--palette": ["none", "landscape"],
              "--max-pixels": ["1", "100000"]},
    ),
    "export": with_positional(
        "export",
        MODELS,
        ["-o"],
        OUTS,
        opts={"--precision": ["fp32", "fp16"], "--output": ["float", "uint8"], "--dynamic": [],
              "--batch": ["1", "1:1:2", "4:2:1", "0", "x"], "--size": ["64x64", "100x100", "32x32", "0x0"],
              "--opset": ["17", "99"], "--graph": ["static", "dedup"], "--lookup": ["gather", "onehot"],
              "--verify-samples": ["0", "1", "-1"], "--no-verify": []},
    ),
    "build": with_positional(
        "build",
        MODELS,
        opts={"-o": OUTS, "--recipe": ["demo-128-fp16", "coco-256-fp16", "nope"], "--backend": ["auto", "tensorrt"],
              "--workspace": ["1G", "x"]},
    ),
    "convert": with_positional(
        "convert",
        ["I/G.pth", "I/text.txt", "I/missing.pth", "I/m.safetensors"],
        ["-o"],
        OUTS,
        ["--preset"],
        ["facades", "coco", "nope"],
        opts={"--crop-size": ["64", "7"], "--ngf": ["4", "5"], "--label-nc": ["13", "0"]},
    ),
    "info": with_positional("info", [*MODELS, str(DEMO)], opts={"--json": []}),
    "inspect": with_positional("inspect", [*MODELS, str(DEMO)], opts={"--json": []}),
    # train and bench: their runs take minutes; what is drawn here always holds one refused value
    "train": with_positional(
        "train",
        ["--out"],
        ["W/run", "W/exists.png", "W/exists_dir"],
        opts={"--preset": ["landscape", "nope"], "--batch-size": ["0", "1"], "--ngf": ["4", "0"],
              "--crop-size": ["32", "x"]},
        forced=[["--steps", "0"], ["--steps", "-3"], ["--lr", "-1"], ["--batch-size", "0"]],
    ),
    "bench": with_positional(
        "bench",
        opts={"--batch": ["1", "0", "1,x"], "--repeats": ["0", "2"], "--json": ["W/b.json", "W/b.txt", "W/exists_dir"],
              "--preset": ["facades", "nope"], "--size": ["64x64", "x"], "--data": ["I/a_folder"]},
        forced=[["--model", "I/text.txt", "--quick", "--backends", "torch"], ["--repeats", "0"], ["--batch", "0"]],
    ),
    # serve: refusals only (a valid argument vector would start a server); every limit's flag is drawn
    "serve": with_positional(
        "serve",
        [*MODELS],
        opts={"--port": ["0", "70000"], "--max-batch": ["0", "2"], "--max-delay-ms": ["-1", "2"],
              "--backend": ["onnxruntime", "torch"], "--max-painters": ["-1", "4"], "--idle-timeout": ["0", "5"],
              "--read-timeout": ["-2", "10"], "--max-head": ["10", "16K"], "--max-decodes": ["0", "2"],
              "--allow-origin": ["tools.example", "http://tools.example:3000"], "--allow-host": ["a b", "lan"]},
        forced=[["--port", "-1"], ["--max-queue", "0"], ["--max-body", "x"], ["--max-painters", "-3"],
                ["--idle-timeout", "0"], ["--max-head", "100"], ["--allow-origin", "null"]],
    ),
    "triton": with_positional(
        "triton",
        MODELS,
        ["-o"],
        ["W/models", "W/exists.png", "W/exists_dir"],
        opts={"--device": ["gpu", "cpu"], "--gpus": ["0", "-1"], "--precision": ["fp32", "fp16"],
              "--instances": ["0", "2"], "--max-batch": ["0", "4"], "--name": ["m", ".bad"]},
    ),
    # web: a site from a graph, a model or the demo (MODEL is optional: drawn among the options)
    "web": with_positional(
        "web",
        ["-o"],
        OUTS,
        opts={"I/g.onnx": [], "I/m.safetensors": [], "I/text.txt": [], "I/missing.onnx": [], "--wasm-only": [],
              "--ort-web": ["I/a_folder"], "--cache-dir": ["C"]},
    ),
}
COVERED = ("demo", "synthesize", "export", "build", "convert", "info", "inspect", "train", "bench", "serve", "triton",
           "web")  # fmt: skip


def resolve(argv: list[str], inputs: Path, work: Path) -> list[str]:
    """I/x, W/x -> paths; C -> the session's cache, where the demo graph already is."""
    cache = os.environ["SPADE_RT_CACHE"]
    return [str(inputs / a[2:]) if a.startswith("I/") else str(work / a[2:]) if a.startswith("W/") else
            cache if a == "C" else a for a in argv]  # fmt: skip


def promised(argv: list[str], stdout: str) -> list[Path]:
    """What a successful run must have written (or printed): the files a user was promised."""
    command, rest = argv[0], argv[1:]
    out = rest[rest.index("-o") + 1] if "-o" in rest else None
    if command == "demo":
        return [Path(out or "demo.png")]
    if command in ("info", "inspect"):
        assert stdout.strip(), "no description printed"
        return []
    if command == "export":
        return [Path(out), Path(out + ".json")]
    if command == "build":
        return [Path(out), Path(out + ".json")] if out else []
    if command == "synthesize":
        labels = Path(rest[rest.index("--labels") + 1])
        if not labels.is_dir():
            return [Path(out)]
        fmt = dict(itertools.pairwise(rest)).get("--format", "png")
        return [Path(out) / f"{p.stem}.{fmt}" for p in labels.iterdir()]
    if command == "web":  # a site: its page and its model description
        return [Path(out) / "index.html", Path(out) / "model.json"]
    if command == "triton":  # REPO/NAME/config.pbtxt (NAME: --name, else the model file's stem)
        name = dict(itertools.pairwise(rest)).get("--name", Path(rest[0]).stem)
        return [Path(out) / name / "config.pbtxt"]
    return [Path(out)] if out else []


def run_in_process(argv: list[str]) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse: 2 for usage errors
            status = exc.code
    return status, err.getvalue(), out.getvalue()


def check_contract(argv: list[str], inputs: Path) -> None:
    cache = Path(os.environ["SPADE_RT_CACHE"])
    work = Path(tempfile.mkdtemp(prefix="contract-"))
    try:
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(work / "exists.png")
        (work / "exists_dir").mkdir()
        args = resolve(argv, inputs, work)
        before = snapshot(work, inputs, cache)
        cwd = os.getcwd()
        os.chdir(work)
        try:
            status, err, out = run_in_process(args)
        finally:
            os.chdir(cwd)
        event(f"exit {status}")  # --hypothesis-show-statistics: how many examples got how far
        assert "Traceback" not in err, (args, err)
        assert status in (0, 1, 2), (args, status, err)
        if status == 0:
            for path in promised(args, out):
                target = path if path.is_absolute() else work / path
                assert target.is_file() and target.stat().st_size > 0, (args, f"{target} was promised", err)
            return
        lines = err.strip().splitlines()
        assert len(lines) == 1, (args, err)
        assert lines[0].startswith(("spade-rt: error: ", f"spade-rt {argv[0]}: error: ")), (args, lines)
        assert snapshot(work, inputs, cache) == before, (args, "a refused run wrote or changed files", err)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_every_command_is_covered():
    """COVERED (and ARGV) name every subcommand the CLI has: a new command cannot skip the contract."""
    from spade_rt.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert sorted(COVERED) == sorted(commands) == sorted(ARGV)


@pytest.mark.parametrize("command", COVERED)
@FAST
@given(data=st.data())
def test_every_command_keeps_the_contract(inputs, command, data):
    check_contract(data.draw(ARGV[command], label="argv"), inputs)


@pytest.mark.slow
@pytest.mark.parametrize("command", COVERED)
@SLOW
@given(data=st.data())
def test_every_command_keeps_the_contract_longer(inputs, command, data):
    check_contract(data.draw(ARGV[command], label="argv"), inputs)


# ---- the API ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synths(inputs):
    with Synthesizer(inputs / "g.onnx") as g, Synthesizer(inputs / "dyn.onnx") as dyn, \
            Synthesizer(inputs / "vae.safetensors") as vae:
        yield {"static": g, "dynamic": dyn, "vae": vae}


DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.int64, np.uint64, np.float32, np.bool_]
SIDES = [0, 1, 3, 4, 32, 64, 96]


@st.composite
def api_call(draw):
    ndim = draw(st.sampled_from([1, 2, 3, 4]))
    shape = [draw(st.sampled_from(SIDES)) for _ in range(ndim)]
    if ndim >= 3 and draw(st.booleans()):
        shape[0] = draw(st.sampled_from([1, 2, 5]))  # a small batch
    dtype = draw(st.sampled_from(DTYPES))
    ids = draw(st.sampled_from([(0, 13), (0, 183), (250, 256), (-3, 2), (0, 1)]))
    kw = {}
    for key, values in (
        ("z", [None, np.zeros(256, np.float32), np.full((1, 256), np.nan, np.float32), np.zeros(3)]),
        ("seed", [None, 0, -1, 2**32, 1.5]),
        ("output", ["uint8", "float", "png"]),
        ("resize", [True, False, "no"]),
        ("instance", [None, "same", "other"]),
    ):
        value = draw(st.sampled_from(values))
        if value is not None:
            kw[key] = value
    return tuple(shape), dtype, ids, kw


def check_api(synth: Synthesizer, shape, dtype, ids, kw, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(*ids, size=shape).astype(dtype) if 0 not in shape else np.zeros(shape, dtype)
    if "instance" in kw:
        inst = kw.pop("instance")
        kw["instance"] = labels.astype(np.int32, copy=True) if inst == "same" else np.zeros((7, 5), np.int32)
    try:
        out = synth(labels, **kw)
    except SpadeRtError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
        return
    spec = synth.spec
    h, w = (labels.shape[-2:] if spec.dynamic_size else (spec.labels.height, spec.labels.width))
    batch = () if labels.ndim == 2 else (labels.shape[0],)
    if kw.get("output", "uint8") == "uint8":
        assert out.dtype == np.uint8 and out.shape == (*batch, h, w, 3), (shape, out.shape)
    else:
        assert out.dtype == np.float32 and out.shape == (labels.shape[0] if batch else 1, 3, h, w), out.shape
        assert np.isfinite(out).all()


@pytest.mark.parametrize("model", ["static", "dynamic", "vae"])
@API_FAST
@given(call=api_call(), seed=st.integers(0, 2**16))
def test_the_api_keeps_the_contract(synths, model, call, seed):
    check_api(synths[model], *call, seed)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["static", "dynamic", "vae"])
@API_SLOW
@given(call=api_call(), seed=st.integers(0, 2**16))
def test_the_api_keeps_the_contract_longer(synths, model, call, seed):
    check_api(synths[model], *call, seed)
