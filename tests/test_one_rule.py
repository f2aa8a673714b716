"""One copy of each rule (issue 24): a rule that two places enforced differently now lives in one place, and
each test here holds both callers to the same, hand-written expectations."""

from __future__ import annotations

import pytest

from spade_rt.errors import ConfigError

# ---- Triton model names: `spade-rt triton --name` and TritonOptions.validate --------------------------------
GOOD_NAMES = ("coco", "_x", "a.b-c_1", "Model.2", "a" * 128)
BAD_NAMES = ("", ".hidden", "-x", "a b", "a/b", "ü", "a" * 129, 5)


@pytest.mark.parametrize("name", GOOD_NAMES + BAD_NAMES)
def test_triton_model_names_follow_one_rule(name, tmp_path):
    from spade_rt.serve.triton import TritonOptions
    from spade_rt.validation import CLI, check_triton_destination

    refused = []
    for check in (
        lambda: TritonOptions(name=name, device="cpu").validate("onnx"),
        lambda: check_triton_destination(tmp_path / "models", name, voice=CLI),
    ):
        try:
            check()
            refused.append(False)
        except ConfigError as exc:
            assert "letters, digits" in str(exc) and "128" in str(exc)
            refused.append(True)
    assert refused == [name in BAD_NAMES] * 2, (name, refused)


def test_a_default_triton_name_from_a_long_file_name_keeps_the_rule(tmp_path):
    from spade_rt.serve.triton import PNG_SUFFIX, TritonOptions, default_name

    name = default_name(tmp_path / ("x" * 200 + ".onnx"))
    TritonOptions(name=name, device="cpu").validate("onnx")
    TritonOptions(name=name + PNG_SUFFIX, device="cpu").validate("onnx")


# ---- value noise: spade_rt.procedural.value_noise, used by the label maps and the training pictures ---------
def test_the_shipped_demo_pictures_are_what_the_runtime_maps_and_the_training_data_draw_today():
    """docs/images/demo_landscapes.png (made by training/demo.py when the demo model was trained) holds, for
    held-out scenes 1_000_000..1_000_005 at 128x128, the label map (row 1, colour-coded) and the procedural
    rendering the model learned from (row 3); docs/images/landscape_labels.png is scene 1_000_000's ids. The
    runtime's maps (spade_rt.procedural) and the training data (training/procedural_data.py, one value noise
    with the runtime) must still draw them exactly."""
    import numpy as np
    from PIL import Image

    from spade_rt.procedural import landscape_labels
    from spade_rt.training.demo import EXAMPLE_LABELS, GRID, HELD_OUT_SEED
    from spade_rt.training.procedural_data import colorize_landscape, render_scene

    assert np.array_equal(np.asarray(Image.open(EXAMPLE_LABELS)), landscape_labels(128, 128, HELD_OUT_SEED))
    grid = np.asarray(Image.open(GRID).convert("RGB"))
    size, pad = 128, 2  # training/samples.py make_grid: rows of pictures on white, 2 pixels apart
    assert grid.shape == (3 * (size + pad) + pad, 6 * (size + pad) + pad, 3)
    for i in range(6):
        ids, picture = render_scene(size, size, HELD_OUT_SEED + i)
        assert np.array_equal(ids, landscape_labels(size, size, HELD_OUT_SEED + i))
        x = pad + i * (size + pad)
        assert np.array_equal(grid[pad : pad + size, x : x + size], colorize_landscape(ids)), i
        y = pad + 2 * (size + pad)
        assert np.array_equal(grid[y : y + size, x : x + size], picture), i


def test_value_noise_has_one_home():
    import spade_rt.procedural as runtime
    import spade_rt.training.procedural_data as training

    assert training.value_noise is runtime.value_noise


# ---- resident memory: spade_rt.bench.harness (psutil; the peak from VmHWM) --------------------------------
def test_the_bench_memory_readers_see_a_known_allocation_here_and_in_a_child():
    import subprocess
    import sys

    import numpy as np

    from spade_rt.bench.harness import PeakSampler, peak_rss_bytes, rss_bytes

    mib = 1 << 20
    with PeakSampler(interval=0.001) as sampled:
        before = rss_bytes()
        block = np.ones(96 * mib, np.uint8)  # 96 MiB, every page written
        held = rss_bytes()
        del block
    assert held - before >= 90 * mib and sampled.added_mb >= 90
    code = (  # a bytearray is zero-filled (every page touched), freed at once (mmap)
        "import sys; b = bytearray(80 << 20); del b; print('freed', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "freed"  # it touched 80 MiB, then gave them back
        assert peak_rss_bytes(child.pid) - rss_bytes(child.pid) >= 75 * mib
    finally:
        child.communicate("")


# ---- graph options and upsampling: every flag's choices from the one table --------------------------------
def _flags_of_every_command():
    """(command, action) for every option of every subcommand of the real parser."""
    from spade_rt.cli import build_parser

    parser = build_parser()
    for name, sub in next(a for a in parser._actions if a.dest == "command").choices.items():
        for action in sub._actions:
            yield name, action


def test_graph_option_choices_come_from_graph_choices():
    from spade_rt.presets import UPSAMPLING_LAYERS
    from spade_rt.validation import GRAPH_CHOICES

    tables = {"--" + key.replace("_", "-"): tuple(v) for key, v in GRAPH_CHOICES.items()}
    tables["--num-upsampling-layers"] = tuple(UPSAMPLING_LAYERS)
    seen = set()
    for command, action in _flags_of_every_command():
        for flag in set(action.option_strings) & set(tables):
            if flag == "--output" and action.choices is None:
                continue  # -o/--output: a file name (convert), not the graph's output format
            assert tuple(action.choices) == tables[flag], (command, flag, action.choices)
            seen.add((command, flag))
    assert {("export", "--graph"), ("triton", "--graph"), ("export", "--lookup"), ("triton", "--precision"),
            ("train", "--num-upsampling-layers"), ("convert", "--num-upsampling-layers")} <= seen  # fmt: skip
