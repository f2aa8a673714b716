"""The command line as a user meets it: help, bad input as one clear line, exit codes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from reference_spade import ref_generator_for


@pytest.fixture(scope="module")
def coco_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coco")
    pth = tmp / "latest_net_G.pth"
    torch.save(ref_generator_for("coco", 4, crop_size=64).state_dict(), pth)
    model = tmp / "coco.safetensors"
    run_cli("convert", pth, "--preset", "coco", "--crop-size", "64", "-o", model)
    return model


def assert_one_clear_line(proc, *needles):
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert "error:" in last
    for needle in needles:
        assert needle in last, (needle, last)


def test_help_teaches_every_command():
    top = run_cli("--help").stdout
    for cmd in ("convert", "synthesize", "info"):
        assert cmd in top
    syn = run_cli("synthesize", "--help").stdout
    assert "--instance" in syn and ".npy" in syn and "NEAREST" in syn


def test_bad_synthesize_inputs_exit_with_one_line(coco_model, tmp_path):
    labels = tmp_path / "l.png"
    ids = np.zeros((64, 64), np.uint8)
    ids[10:20, 10:20] = 200  # coco knows ids 0..182 (255 is dontcare)
    Image.fromarray(ids).save(labels)
    proc = run_cli("synthesize", coco_model, "--labels", labels, "-o", tmp_path / "o.png", check=False)
    assert_one_clear_line(proc, "200", "100 px", "0..182")
    assert not (tmp_path / "o.png").exists()

    proc = run_cli(
        "synthesize", coco_model, "--labels", tmp_path / "missing.png", "-o", tmp_path / "o.png", check=False
    )
    assert_one_clear_line(proc, "not found", "missing.png")

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(labels)
    rgb = tmp_path / "inst.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(rgb)
    proc = run_cli(
        "synthesize", coco_model, "--labels", labels, "--instance", rgb, "-o", tmp_path / "o.png", check=False
    )
    assert_one_clear_line(proc, "instance map", "3 channel")

    proc = run_cli(
        "synthesize", tmp_path / "nope.safetensors", "--labels", labels, "-o", tmp_path / "o.png", check=False
    )
    assert_one_clear_line(proc, "not found")

    proc = run_cli(
        "synthesize", coco_model, "--labels", labels, "--z", tmp_path / "z.npy", "-o", tmp_path / "o.png", check=False
    )
    assert_one_clear_line(proc, "not a VAE model")


def test_convert_errors_are_one_line(tmp_path, coco_model):
    pth = tmp_path / "G.pth"
    torch.save(ref_generator_for("coco", 4).state_dict(), pth)
    proc = run_cli("convert", pth, "--preset", "ade20k", "-o", tmp_path / "m.safetensors", check=False)
    assert_one_clear_line(proc, "184", "151")
    proc = run_cli("convert", tmp_path / "none.pth", "--preset", "coco", "-o", tmp_path / "m.safetensors", check=False)
    assert_one_clear_line(proc, "not found")


def test_info_reports_shapes_params_and_gmacs(coco_model):
    import json

    info = json.loads(run_cli("info", coco_model, "--json").stdout)
    assert info["preset"] == "coco" and info["semantic_nc"] == 184 and info["ngf"] == 4
    assert info["parameters"] > 0 and info["gmacs_per_image"] > 0
    assert "64 x 64" in info["inputs"]["labels"]


def test_demo_makes_landscapes_with_the_embedded_model(tmp_path):
    """The README's main command: no files needed. On CPUs the shipped dedup graph runs (nothing exported, the
    cache untouched); `--graph static` exports the static graph into the per-user cache once, later runs reuse it."""
    import subprocess
    import sys

    from PIL import Image

    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    env = {**os.environ, "SPADE_RT_CACHE": str(cache)}
    for run, graph in enumerate(("dedup", "static", "static")):
        argv = ["demo", "-o", "demo.png", "--count", "2", "--seed", str(run), "--graph", graph]
        proc = subprocess.run(
            [sys.executable, "-m", "spade_rt.cli", *argv],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        assert ("exporting landscape_demo.safetensors" in proc.stderr) == (run == 1), proc.stderr
        if run == 0:
            assert not cache.exists()  # the shipped graph: no export, no cache
    grid = np.array(Image.open(work / "demo.png"))
    assert grid.shape == (256, 256, 3)  # labels above pictures, two 128x128 scenes
    pictures = grid[128:].astype(float)
    assert pictures.std() > 20  # a picture, not a flat field
    built = sorted(p.name for p in (cache / "built").glob("landscape_demo-*-static-b1-1-8.onnx*"))
    assert [n for n in built if not n.endswith(".lock")] == [  # the per-user cache ($SPADE_RT_CACHE) ...
        built[0],
        built[0] + ".json",
    ], built
    assert sorted(p.name for p in work.iterdir()) == ["demo.png"]  # ... never the working directory
