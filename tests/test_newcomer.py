"""What a newcomer hit on a fresh clone (issue 24): each case gets one clear line, or does the right thing.

Each test runs the real CLI (in this process, stderr captured, or in a fresh interpreter where what is imported
matters) on real files, and checks the one line a person reads: no traceback, the bad value named, the rule
or the fix said.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, cli_in_process, one_line

DEMO = ROOT / "spade_rt" / "assets" / "landscape_demo.safetensors"  # landscape: ids 0..9, 128x128


cli = cli_in_process  # `spade-rt ARGV` in this process: (exit status, stderr)


def fresh(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Python ``code`` in a fresh interpreter (what it imports is its own)."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


# ---- train: every value checked before torch is imported ---------------------------------------------------
def test_train_refuses_a_negative_step_count_before_torch_loads(tmp_path):
    code = (
        "import sys\nfrom spade_rt.cli import main\n"
        "status = main(['train', '--steps', '-1', '--out', 'run'])\n"
        "print(status, 'torch' in sys.modules)"
    )
    proc = fresh(code, tmp_path)
    assert proc.stdout.split() == ["1", "False"], proc
    one_line(1, proc.stderr, "--steps -1", "1 or more")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("batch", ["1", "2", "4"])
def test_train_refuses_a_crop_size_that_is_not_a_multiple_of_32(batch, tmp_path):
    """--crop-size 50 trained a 32x32 model without a word (batch 2), or spoke of batch norm (batch 1)."""
    status, err = cli("train", "--crop-size", "50", "--batch-size", batch, "--steps", "1", "--out", tmp_path / "run")
    one_line(status, err, "--crop-size 50", "multiple of 32")
    status, err = cli("train", "--preset", "cityscapes", "--crop-size", "96", "--out", tmp_path / "run")
    one_line(status, err, "--crop-size 96", "multiple of 64", "'more'")
    assert not (tmp_path / "run").exists()


# ---- synthesize: a folder with other files, maps of another size, -v ---------------------------------------
def test_folder_mode_says_which_files_it_skipped_and_counts_in_words(tmp_path):
    """A PNG, a JPEG and a text file: "1 images" and not a word about the JPEG, before."""
    maps = tmp_path / "maps"
    maps.mkdir()
    ids = (np.arange(64 * 64).reshape(64, 64) % 10).astype(np.uint8)
    Image.fromarray(ids).save(maps / "a.png")  # 64x64: resized to the model's 128x128
    Image.fromarray(ids).convert("RGB").save(maps / "b.jpg")
    (maps / "notes.txt").write_text("where the maps came from\n")
    status, err = cli("synthesize", DEMO, "--labels", maps, "-o", tmp_path / "out")
    assert status == 0 and "Traceback" not in err, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]
    lines = err.strip().splitlines()
    skipped = [line for line in lines if "skipped" in line]
    assert len(skipped) == 1, err
    assert "2 files" in skipped[0] and "b.jpg (JPEG, lossy" in skipped[0] and "notes.txt (not a picture)" in skipped[0]
    assert any("wrote 1 image to" in line for line in lines) and "1 images" not in err, err
    assert sum("resiz" in line for line in lines) == 1 and "1 map of 1" in err and "128x128" in err, err


def test_one_map_of_another_size_is_resized_with_one_notice(tmp_path):
    Image.fromarray(np.full((64, 96), 3, np.uint8)).save(tmp_path / "small.png")
    status, err = cli("synthesize", DEMO, "--labels", tmp_path / "small.png", "-o", tmp_path / "out.png")
    assert status == 0, err
    notices = [line for line in err.splitlines() if "resized" in line]
    assert len(notices) == 1 and "64x96" in notices[0] and "128x128" in notices[0], err
    assert Image.open(tmp_path / "out.png").size == (128, 128)


def test_verbose_is_spade_rt_debug_without_pillow_chunk_lines(tmp_path):
    Image.fromarray(np.full((128, 128), 3, np.uint8)).save(tmp_path / "map.png")
    status, err = cli("-v", "synthesize", DEMO, "--labels", tmp_path / "map.png", "-o", tmp_path / "out.png")
    assert status == 0, err
    assert "STREAM" not in err and "IHDR" not in err, err  # PIL.PngImagePlugin logs a debug line per chunk
    assert logging.getLogger("PIL").getEffectiveLevel() == logging.WARNING


# ---- models: a folder, a cut-off file, converting what is converted -----------------------------------------
def test_a_folder_given_as_a_model_is_called_a_folder_and_what_is_expected_is_said(tmp_path):
    (tmp_path / "runs").mkdir()
    for argv in (["export", tmp_path / "runs", "-o", tmp_path / "x.onnx"], ["info", tmp_path / "runs"]):
        one_line(*cli(*argv), "runs is a directory without latest.safetensors", "expected a spade-rt model")
    assert not (tmp_path / "x.onnx").exists()


def test_a_cut_off_model_file_is_said_to_be_cut_off(tmp_path):
    data = DEMO.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    Image.fromarray(np.full((128, 128), 3, np.uint8)).save(tmp_path / "map.png")
    for argv in (
        ["info", cut],
        ["export", cut, "-o", tmp_path / "x.onnx"],
        ["synthesize", cut, "--labels", tmp_path / "map.png", "-o", tmp_path / "out.png"],
    ):
        one_line(*cli(*argv), "cut.safetensors is cut off", f"expected {len(data)} bytes, got {len(data) // 2}")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "out.png").exists()


def test_converting_a_spade_rt_model_says_it_is_one_already(tmp_path):
    one_line(
        *cli("convert", DEMO, "--preset", "landscape", "-o", tmp_path / "c.safetensors"), "already a spade-rt model"
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "latest.safetensors").write_bytes(DEMO.read_bytes())
    one_line(
        *cli("convert", run, "--preset", "landscape", "-o", tmp_path / "c.safetensors"), "already a spade-rt model"
    )
    assert not (tmp_path / "c.safetensors").exists()


# ---- help: every option says what it does; build names its recipes ------------------------------------------
def test_every_option_of_every_command_has_help():
    """train --instance, --dontcare, --num-upsampling-layers, --no-gan-feat-loss, --no-tensorboard and bench
    --device had none."""
    import argparse

    from spade_rt.cli import build_parser

    parser = build_parser()
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, sub in next(a for a in parser._actions if a.dest == "command").choices.items()
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]
    assert missing == []


def test_build_lists_its_recipes_in_its_help_and_its_error(tmp_path):
    from spade_rt.engines.recipes import load_recipes

    names = list(load_recipes())
    assert len(names) >= 2
    proc = subprocess.run([sys.executable, "-m", "spade_rt.cli", "build", "--help"], capture_output=True, text=True)
    help_text = " ".join(proc.stdout.split())  # argparse wraps lines
    assert proc.returncode == 0 and all(name in help_text for name in names), proc.stdout
    one_line(*cli("build", DEMO, "--recipe", "nope"), "unknown recipe 'nope'", *names)
