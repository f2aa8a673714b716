"""One contract for every command and the Python API (issue 18): checked early, one clear line, nothing ignored.

Each test pins one case of the issue that failed before its fix. Commands run in-process
(``spade_rt.cli.main``, stderr captured) unless the test is about what a fresh interpreter imports.
tests/test_contract_property.py draws the argument vectors and arrays at random.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spade_rt.cli import main
from spade_rt.errors import ConfigError, InputError, LabelError, OutputError
from spade_rt.labels import LabelSpec
from spade_rt.runtime.spec import ModelSpec
from spade_rt.runtime.synthesizer import Synthesizer
from spade_rt.validation import (
    API,
    CLI,
    check_seed,
    check_triton_destination,
    check_triton_options,
)

from conftest import ROOT, cli_in_process, one_line
from serve_support import tiny_model

DEMO = ROOT / "spade_rt" / "assets" / "landscape_demo.safetensors"  # landscape: ids 0..9, no dontcare, 128x128


cli = cli_in_process  # `spade-rt ARGV` in this process: (exit status, stderr)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("contract")
    models = {}
    for preset, vae in (("coco", True), ("facades", False)):
        sub = d / preset
        sub.mkdir()
        models[preset] = tiny_model(sub, preset, use_vae=vae)
    dyn = d / "dyn.onnx"
    assert main(["export", str(models["facades"]), "-o", str(dyn), "--dynamic", "--verify-samples", "1", "-q"]) == 0
    fp16 = d / "fp16.onnx"
    argv = ["export", str(models["facades"]), "-o", str(fp16), "--precision", "fp16", "--verify-samples", "1", "-q"]
    assert main(argv) == 0
    Image.fromarray(np.full((128, 128), 255, np.uint8)).save(d / "unlabeled.png")
    Image.fromarray(np.ones((128, 96), np.uint8)).save(d / "map_128x96.png")
    Image.fromarray(np.ones((64, 64), np.uint8)).save(d / "map.png")
    (d / "README.md").write_text("a file\n")
    return {"dir": d, "vae": models["coco"], "plain": models["facades"], "dyn": dyn, "fp16": fp16}


# ---- crashes and silent answers ---------------------------------------------------------------------------
def test_demo_with_a_negative_seed_is_one_line(tmp_path):
    status, err = cli("demo", "-o", tmp_path / "o" / "d.png", "--seed", "-5")
    one_line(status, err, "--seed -5", "0..")
    assert not (tmp_path / "o").exists()


def test_the_api_refuses_an_rgb_picture_as_labels():
    with Synthesizer(DEMO) as synth:
        rgb = np.zeros((128, 128, 3), np.uint8)
        with pytest.raises(InputError, match=r"RGB picture .*decode_colours"):
            synth(rgb)
        assert synth(rgb[..., 0]).shape == (128, 128, 3)  # the same map as ids is fine


def test_unlabeled_255_on_a_model_without_dontcare_is_named_255(files):
    status, err = cli("synthesize", DEMO, "--labels", files["dir"] / "unlabeled.png", "-o", files["dir"] / "u.png")
    line = one_line(status, err, "255 (16384 px)", "0..9", "no dontcare")
    assert " 10 " not in line
    with Synthesizer(DEMO) as synth, pytest.raises(LabelError, match=r"255 \(16384 px\).*no dontcare"):
        synth(np.full((128, 128), 255, np.uint8))


def test_format_npy_with_a_png_name_is_refused_not_ignored(files, tmp_path):
    status, err = cli(
        "synthesize", files["plain"], "--labels", files["dir"] / "map.png", "--format", "npy", "-o", tmp_path / "a.png"
    )
    one_line(status, err, "--format npy", "a.npy")
    assert not (tmp_path / "a.png").exists()
    status, err = cli("synthesize", files["plain"], "--labels", files["dir"] / "map.png", "-o", tmp_path / "a.png")
    assert status == 0, err
    assert (tmp_path / "a.png").is_file()


def test_seed_and_batch_size_that_do_not_apply_are_refused(files, tmp_path):
    base = ["synthesize", files["plain"], "--labels", files["dir"] / "map.png", "-o", tmp_path / "a.png"]
    one_line(*cli(*base, "--seed", "3"), "not a VAE model", "--seed")
    one_line(*cli(*base, "--batch-size", "2"), "--batch-size 2", "folder")
    one_line(*cli(*base, "--rebuild"), "--rebuild", "engines")
    assert not (tmp_path / "a.png").exists()
    with Synthesizer(files["plain"]) as synth, pytest.raises(InputError, match=r"not a VAE model.*seed="):
        synth(np.zeros((64, 64), np.uint8), seed=3)
    assert cli("synthesize", files["vae"], "--labels", files["dir"] / "map.png", "--seed", "3", "-o",
               tmp_path / "v.png")[0] == 0  # fmt: skip


@pytest.mark.parametrize(("command", "suffix"), [("export", ".onnx"), ("build", ".engine")])
def test_graphs_and_engines_are_not_named_like_pictures(files, tmp_path, command, suffix):
    source = files["plain"] if command == "export" else files["fp16"]
    status, err = cli(command, source, "-o", tmp_path / "x.png")
    one_line(status, err, "x.png", suffix)
    assert list(tmp_path.iterdir()) == []


def test_convert_refuses_a_name_of_another_kind_and_keeps_any_other(tmp_path):
    status, err = cli("convert", tmp_path / "G.pth", "--preset", "coco", "-o", tmp_path / "m.png")
    one_line(status, err, "m.png", "a picture", "m.safetensors")


# ---- cheap checks come first: nothing heavy is imported for them ----------------------------------------
FRESH = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from spade_rt.cli import main
    results = []
    for argv in json.loads(sys.argv[1]):
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                status = main(argv)
            except SystemExit as exc:
                status = exc.code
        heavy = sorted(m for m in ("torch", "onnx") if m in sys.modules)
        results.append([status, err.getvalue(), out.getvalue(), heavy])
    print(json.dumps(results))
    """
)


def run_fresh(argvs: list[list[str]], cwd: Path) -> list:
    """Each argv in turn in one fresh interpreter: (status, stderr, stdout, heavy modules loaded so far)."""
    proc = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps([[str(a) for a in argv] for argv in argvs])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "SPADE_RT_CACHE": str(cwd / "cache")},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_export_options_and_recipes_are_checked_before_torch_is_imported(files, tmp_path):
    m = files["plain"]
    cases = [
        (["export", m, "-o", "x.onnx", "--opset", "99"], "--opset 99"),
        (["export", m, "-o", "x.onnx", "--batch", "4:2:1"], "--batch 4:2:1"),
        (["export", m, "-o", "x.onnx", "--size", "100x100"], "--size 100x100"),
        (["export", m, "-o", "x.onnx", "--graph", "dedup", "--precision", "fp16"], "--graph dedup"),
        (["export", files["vae"], "-o", "x.onnx", "--dynamic"], "VAE"),
        (["build", DEMO, "--recipe", "coco-256-fp16", "-o", "x.engine"], "coco"),
        (["synthesize", m, "--labels", files["dir"] / "unlabeled.png", "-o", "o.png"], "255"),
    ]
    for (status, err, _, heavy), (argv, word) in zip(run_fresh([c[0] for c in cases], tmp_path), cases):
        one_line(status, err, word)
        assert heavy == [], (argv, heavy)
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["cache"])


def test_info_and_inspect_of_a_model_read_its_header_without_torch(files, tmp_path):
    results = run_fresh([["info", DEMO, "--json"], ["inspect", files["vae"], "--json"]], tmp_path)
    for status, err, _, heavy in results:
        assert status == 0, err
        assert heavy == []
    demo, vae = (json.loads(r[2]) for r in results)
    assert demo["preset"] == "landscape" and demo["parameters"] > 0 and vae["use_vae"] is True


@pytest.mark.parametrize("preset_kw", [("coco", {}), ("cityscapes", {}), ("ade20k", {"use_vae": True}),
                                       ("facades", {"num_upsampling_layers": "most", "ngf": 8})])  # fmt: skip
def test_header_gmacs_and_parameters_match_a_pytorch_forward(preset_kw, tmp_path):
    """info is torch-free now: its analytic MAC count must agree with hooks on a real forward, its parameter
    count with the loaded tensors."""
    from spade_rt.model.config import GeneratorConfig
    from spade_rt.model.costs import count_parameters, generator_macs
    from spade_rt.model.describe import describe_model, original_macs
    from spade_rt.model.native_format import NativeModel, load_model, save_model
    from spade_rt.model.networks import SPADEGenerator

    preset, kw = preset_kw
    cfg = GeneratorConfig.from_preset(preset, ngf=kw.pop("ngf", 4), crop_size=128, **kw)
    assert original_macs(cfg) == generator_macs(cfg)
    path = save_model(tmp_path / "m.safetensors", NativeModel(cfg, SPADEGenerator(cfg).state_dict()))
    assert describe_model(path)["parameters"] == count_parameters(load_model(path).generator)


NORMS = [("spectralspadesyncbatch3x3", "spectralinstance"), ("spadeinstance5x5", "batch"),
         ("spectralspadebatch3x3", "spectralnone"), ("spadesyncbatch3x3", "none")]  # fmt: skip


@pytest.mark.parametrize("norms", NORMS)
@pytest.mark.parametrize("upsampling", ["normal", "more", "most"])
@pytest.mark.parametrize("vae", [False, True])
def test_header_tensor_shapes_match_the_pytorch_state_dicts(norms, upsampling, vae):
    """info checks a header's tensors without torch: against the networks' own state dicts (meta device)."""
    from spade_rt.model.config import GeneratorConfig
    from spade_rt.model.header import expected_tensor_shapes
    from spade_rt.model.native_format import expected_tensors

    for preset, crop in (("coco", 256), ("cityscapes", 512)):
        options = dict(norm_G=norms[0], norm_E=norms[1], num_upsampling_layers=upsampling)
        cfg = GeneratorConfig.from_preset(preset, ngf=4, crop_size=crop, use_vae=vae, has_encoder=vae, **options)
        assert expected_tensor_shapes(cfg) == expected_tensors(cfg)


# ---- the caller's words, and the same words from CLI and API ---------------------------------------------
def test_resize_is_explained_in_flags_on_the_cli_and_keywords_in_python(files):
    status, err = cli("synthesize", DEMO, "--labels", files["dir"] / "map_128x96.png", "--no-resize", "-o", "x.png")
    line = one_line(status, err, "128x96", "--no-resize")
    assert "resize=" not in line
    with Synthesizer(DEMO) as synth, pytest.raises(InputError, match="resize=False") as exc:
        synth(np.zeros((128, 96), np.uint8), resize=False)
    assert "--" not in str(exc.value)


def test_the_same_mistake_gets_the_same_message_from_cli_and_api(files, tmp_path):
    from spade_rt.errors import ExportError
    from spade_rt.export.folding import fold_generator
    from spade_rt.export.onnx_graph import GraphOptions
    from spade_rt.model.native_format import build_generator, load_model

    line = one_line(*cli("demo", "--seed", "-5", "-o", tmp_path / "d.png", "--count", "1"))
    with Synthesizer(files["vae"]) as synth, pytest.raises(ConfigError) as exc:
        synth.make_z(1, -5)
    assert line.split("--seed -5")[1] == str(exc.value).split("seed=-5")[1]

    base = ["synthesize", files["plain"], "--labels", files["dir"] / "map.png", "-o", tmp_path / "a.png"]
    line = one_line(*cli(*base, "--seed", "3"))
    with Synthesizer(files["plain"]) as synth, pytest.raises(InputError) as exc:
        synth(np.zeros((64, 64), np.uint8), seed=3)
    assert line.split("error: ")[1].replace("--seed", "seed=") == str(exc.value)

    line = one_line(*cli("export", files["plain"], "-o", tmp_path / "x.onnx", "--opset", "99"))
    folded = fold_generator(build_generator(load_model(files["plain"])))
    with pytest.raises(ExportError) as exc:
        GraphOptions(opset=99).validate(folded)
    assert line.split("--opset 99")[1] == str(exc.value).split("opset=99")[1]
    assert line.endswith("17..20")


def test_an_existing_folder_given_as_an_output_file_is_called_a_folder(files, tmp_path):
    (tmp_path / "o").mkdir()
    for argv in (
        ["demo", "-o", tmp_path / "o"],
        ["synthesize", files["plain"], "--labels", files["dir"] / "map.png", "-o", tmp_path / "o"],
        ["export", files["plain"], "-o", tmp_path / "o"],
        ["convert", tmp_path / "G.pth", "--preset", "coco", "-o", tmp_path / "o"],
    ):
        one_line(*cli(*argv), "is a folder")


# ---- a dynamic graph: the CLI keeps the map's size, as the API does --------------------------------------
def test_a_dynamic_graph_keeps_the_map_size_on_the_cli_as_in_the_api(files, tmp_path):
    status, err = cli("synthesize", files["dyn"], "--labels", files["dir"] / "map_128x96.png", "-o", tmp_path / "x.npy")
    assert status == 0, err
    got = np.load(tmp_path / "x.npy")
    with Synthesizer(files["dyn"]) as synth:
        want = synth(np.ones((1, 128, 96), np.uint8), output="float")
    assert got.shape == want.shape == (1, 3, 128, 96)
    np.testing.assert_array_equal(got, want)
    # a folder of maps of two sizes, in batches: each map keeps its size
    (tmp_path / "maps").mkdir()
    for name, shape in (("a", (128, 96)), ("b", (64, 64)), ("c", (128, 96))):
        Image.fromarray(np.ones(shape, np.uint8)).save(tmp_path / "maps" / f"{name}.png")
    status, err = cli("synthesize", files["dyn"], "--labels", tmp_path / "maps", "-o", tmp_path / "out",
                      "--batch-size", "3", "-q")  # fmt: skip
    assert status == 0, err
    assert [Image.open(tmp_path / "out" / f"{n}.png").size for n in "abc"] == [(96, 128), (64, 64), (96, 128)]


# ---- the recipe that names the demo is for the demo model ------------------------------------------------
def test_the_demo_recipe_is_for_the_demo_model_and_recipes_say_where_builds_go():
    from spade_rt.engines.recipes import RECIPES_FILE, get_recipe
    from spade_rt.model.header import model_config

    assert get_recipe("demo-128-fp16").preset == model_config(DEMO).preset == "landscape"
    assert get_recipe("demo-128-fp16").size == model_config(DEMO).output_hw
    text = RECIPES_FILE.read_text()
    assert "engines/built" not in text and ".cache/spade-rt/built" in text


@pytest.mark.slow
def test_build_demo_with_the_demo_recipe(tmp_path):
    pytest.importorskip("tensorrt_rtx")
    status, err = cli("build", DEMO, "--recipe", "demo-128-fp16", "--cache-dir", tmp_path, "-q")
    assert status == 0, err
    assert (tmp_path / "built" / "demo-128-fp16.engine").is_file()


# ---- the API: arrays and keyword arguments ---------------------------------------------------------------
def test_the_api_checks_dtypes_ranges_and_keywords(files):
    with Synthesizer(files["vae"]) as synth:
        ids = np.zeros((64, 64), np.uint8)
        for bad, match in (
            (dict(labels=ids.astype(np.float32)), "integer array"),
            (dict(labels=ids.astype(bool)), "integer array"),
            (dict(labels=np.zeros((0, 64, 64), np.uint8)), "empty"),
            (dict(labels=ids, z=np.full(256, np.nan, np.float32)), "NaN"),
            (dict(labels=ids, z=np.zeros(5, np.float32)), r"\(256,\)"),
            (dict(labels=ids, seed=2**40), "seed="),
            (dict(labels=ids, output="png"), "output='png'"),
            (dict(labels=ids, resize="no"), "resize='no'"),
        ):
            with pytest.raises(InputError if "seed" not in bad else ConfigError, match=match):
                synth(**bad)
        assert synth(ids, seed=7).shape == (64, 64, 3)


# ---- triton (wired in spade_rt/commands/triton.py by the lead) ---------------------------------------------
def _spec(precision: str) -> ModelSpec:
    return ModelSpec("coco", LabelSpec(182, True, True, 64, 64), output="uint8", precision=precision, max_batch=8)


def test_triton_flags_that_do_not_apply_are_refused():
    with pytest.raises(ConfigError, match=r"--gpus 0 1 .*--device cpu"):
        check_triton_options("onnx", _spec("fp32"), device="cpu", gpus=[0, 1])
    with pytest.raises(ConfigError, match=r"--precision fp32: this graph is fp16"):
        check_triton_options("onnx", _spec("fp16"), precision="fp32")
    with pytest.raises(ConfigError, match=r"--max-batch 4: this engine was made for batches up to 8"):
        check_triton_options("engine", _spec("fp16"), max_batch=4)
    with pytest.raises(ConfigError, match=r"gpus=\(0, 0\): each GPU once"):
        check_triton_options("native", None, gpus=(0, 0), voice=API)
    check_triton_options("onnx", _spec("fp16"), precision="fp16", device="gpu", gpus=[0, 1])  # agrees: fine
    check_triton_options("native", None, precision="fp16", max_batch=4)


def test_triton_destination_is_checked_before_any_export(files, tmp_path):
    with pytest.raises(OutputError, match=r"-o .*README.md is a file: expected a folder"):
        check_triton_destination(files["dir"] / "README.md", "coco")
    (tmp_path / "models" / "coco").mkdir(parents=True)
    with pytest.raises(OutputError, match=r"coco exists: choose another --name, or --force"):
        check_triton_destination(tmp_path / "models", "coco")
    assert check_triton_destination(tmp_path / "models", "coco", force=True) == tmp_path / "models" / "coco"
    with pytest.raises(ConfigError, match="--name"):
        check_triton_destination(tmp_path / "models", ".hidden")


def test_seed_bounds_are_one_rule():
    assert check_seed(None) is None and check_seed(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32, 1.5, True, "3"):
        with pytest.raises(ConfigError):
            check_seed(bad, CLI)
    with pytest.raises(ConfigError, match=r"--seed 4294967295: expected a whole number 0\.\.4294967292"):
        check_seed(2**32 - 1, CLI, count=4)


def test_training_a_batch_norm_model_on_one_value_per_channel_is_refused_before_any_step(tmp_path):
    """--batch-size 1 at --crop-size 32 left a traceback from torch's batch norm and a run folder behind."""
    status, err = cli("train", "--preset", "landscape", "--ngf", "4", "--crop-size", "32", "--batch-size", "1",
                      "--steps", "1", "--out", tmp_path / "run")  # fmt: skip
    one_line(status, err, "--batch-size 1", "1x1", "--norm-G")
    assert not (tmp_path / "run").exists()


def test_graph_metadata_is_read_without_onnx_as_onnx_reads_it(files, tmp_path):
    """peek_spec reads a graph's spec from its metadata with a small protobuf walk: the onnx package agrees."""
    import onnx

    from spade_rt.runtime.onnx_meta import read_onnx_metadata
    from spade_rt.runtime.peek import peek_spec

    for graph in (files["dyn"], files["fp16"]):
        want = {p.key: p.value for p in onnx.load(str(graph)).metadata_props}
        assert read_onnx_metadata(graph) == want
        kind, spec = peek_spec(graph)
        with Synthesizer(graph) as synth:
            assert kind == "onnx" and spec == synth.spec
    junk = tmp_path / "junk.onnx"
    for data in (b"", b"\x08", np.random.default_rng(1).bytes(256), graph.read_bytes()[:100]):
        junk.write_bytes(data)
        assert read_onnx_metadata(junk) in (None, {})
