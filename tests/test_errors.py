"""Every bad input gets one clear line (issue 12): each subcommand, run as a user runs it, in a subprocess.

The table runs each case in a fresh working directory with its own TMPDIR and cache, and asserts: exit
status 1 (2 for usage errors), exactly one line on stderr, no traceback, the line names what was wrong,
and no file left behind anywhere (working directory, inputs, TMPDIR, cache). The tests after it pin the
other items of the issue, each one a case that failed before its fix.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spade_rt.cli import main
from spade_rt.errors import InputError
from spade_rt.runtime.synthesizer import Synthesizer

from conftest import NVIDIA_DEVICE_NODES, ROOT, run_cli
from reference_spade import blobby_labels, ref_generator_for


class _Unsafe:
    """Pickles as a call of os.system: what a weights-only loader must refuse without running it."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _cannot_create_files_in(folder: Path) -> bool:
    try:
        (folder / ".probe").write_bytes(b"")
    except OSError:
        return True
    (folder / ".probe").unlink()
    return False


def unwritable_folder(tmp: Path) -> Path | None:
    """A real folder where no file can be created: a read-only one (root ignores modes: then /sys)."""
    ro = tmp / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    for folder in (ro, Path("/sys")):
        if folder.is_dir() and _cannot_create_files_in(folder):
            return folder
    return None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A tiny real coco model (checkpoint, spade-rt model, static and dedup graphs) and bad inputs of each kind."""
    d = tmp_path_factory.mktemp("inputs")
    torch.save(ref_generator_for("coco", 4, crop_size=64).state_dict(), d / "G.pth")
    convert = ["convert", str(d / "G.pth"), "--preset", "coco", "--crop-size", "64", "-o", str(d / "m.safetensors")]
    assert main([*convert, "-q"]) == 0
    for name, extra in (("m.onnx", []), ("dedup.onnx", ["--graph", "dedup"])):
        cmd = ["export", str(d / "m.safetensors"), "-o", str(d / name), "--batch", "1:1:2", "--verify-samples", "1"]
        assert main([*cmd, *extra, "-q"]) == 0
    (d / "text.pth").write_text("a text file renamed .pth\n")
    (d / "empty.pth").write_bytes(b"")
    noise = np.random.default_rng(0).bytes(4096)
    assert noise[:1] != b"\x80" and noise[:2] != b"PK"  # random bytes, neither pickle nor zip
    (d / "random.pth").write_bytes(noise)
    torch.save({"w": torch.zeros(2), "x": _Unsafe()}, d / "unsafe.pth")
    torch.save({"w": torch.zeros(2)}, d / "protocol4.pth", pickle_protocol=4)
    Image.fromarray(np.zeros((426, 640), np.uint8)).save(d / "label_426x640.png")
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(d / "inst_100x80.png")
    ids = blobby_labels(3, 64, 64, 183, seed=1).astype(np.uint8)
    Image.fromarray(ids[0]).save(d / "label.png")
    bad = ids[1].copy()
    bad[:5, :20] = 200  # coco knows ids 0..182 (255 is dontcare)
    Image.fromarray(bad).save(d / "bad_id.png")
    for folder, maps in (("maps", ids), ("maps_one_bad", [ids[0], bad, ids[2]])):
        (d / folder).mkdir()
        for i, m in enumerate(maps):
            Image.fromarray(m).save(d / folder / f"{i}.png")
    (d / "inst_partial").mkdir()
    Image.fromarray(ids[0]).save(d / "inst_partial" / "0.png")  # no instance maps for 1.png, 2.png
    (d / "a_folder").mkdir()
    (d / "empty_folder").mkdir()
    (d / "a_file").write_text("not a folder\n")
    ro = unwritable_folder(d)
    return {"dir": d, "ro": ro}


# what third-party imports leave in TMPDIR by themselves: onnxruntime's session id file, torch's compile cache
LIBRARY_TEMP_FILES = {".ses", f"torchinductor_{getpass.getuser()}"}


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``roots`` with its size and modification time."""
    found = {}
    for root in roots:
        for p in [root, *root.rglob("*")]:
            st = p.lstat()
            found[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns if p.is_file() else 0)
    return found


# (id, argv with {placeholders}, exit status, words the line must hold). {in}: the inputs folder, {g}: its graph,
# {ro}: a folder where no file can be created. Every case runs in a fresh, empty working directory.
S, C = "synthesize {g}", "convert {in}/%s --preset coco -o m.safetensors"
CASES = [
    # demo
    ("demo-txt-output", "demo -o x.txt", 1, ["x.txt", ".png"]),
    ("demo-output-folder", "demo -o {in}/a_folder", 1, ["a_folder", "is a folder"]),
    ("demo-read-only", "demo -o {ro}/demo.png", 1, ["cannot create files", "demo.png"]),
    ("demo-count", "demo --count 0", 1, ["--count 0", "1..16"]),
    ("demo-graph-torch", "demo --backend torch --graph static", 1, ["--graph static", "--backend torch"]),
    ("demo-usage", "demo --seed many", 2, ["--seed", "many"]),
    # convert
    ("convert-text-file", C % "text.pth", 1, ["text.pth", "pickle stream"]),
    ("convert-empty-file", C % "empty.pth", 1, ["empty.pth", "empty"]),
    ("convert-random-bytes", C % "random.pth", 1, ["random.pth", "zip"]),
    ("convert-unsafe", C % "unsafe.pth", 1, ["refused", "unsafe.pth", "system"]),
    ("convert-protocol-4", C % "protocol4.pth", 1, ["protocol4.pth", "protocol 4"]),
    ("convert-missing", C % "none.pth", 1, ["not found", "none.pth"]),
    ("convert-output-folder", "convert {in}/G.pth --preset coco -o {in}/a_folder", 1, ["a_folder", "is a folder"]),
    ("convert-read-only", "convert {in}/G.pth --preset coco -o {ro}/m.safetensors", 1, ["cannot create files"]),
    ("convert-usage", "convert {in}/G.pth -o m.safetensors", 2, ["--preset"]),
    # synthesize
    (
        "synthesize-instance-size",
        S + " --labels {in}/label_426x640.png --instance {in}/inst_100x80.png -o o.png",
        1,
        ["100x80", "426x640"],
    ),
    ("synthesize-batch-size-0", S + " --labels {in}/maps --batch-size 0 -o out", 2, ["--batch-size", "1 or more"]),
    ("synthesize-folder-to-file", S + " --labels {in}/maps -o single.png", 1, ["single.png", "folder"]),
    ("synthesize-folder-to-a-file", S + " --labels {in}/maps -o {in}/a_file", 1, ["a_file", "is a file"]),
    ("synthesize-txt-output", S + " --labels {in}/label.png -o x.txt", 1, ["x.txt", ".png"]),
    ("synthesize-output-folder", S + " --labels {in}/label.png -o {in}/a_folder", 1, ["is a folder"]),
    ("synthesize-read-only", S + " --labels {in}/label.png -o {ro}/o.png", 1, ["cannot create files"]),
    ("synthesize-read-only-folder", S + " --labels {in}/maps -o {ro}/out", 1, ["cannot create files"]),
    ("synthesize-unknown-id", S + " --labels {in}/bad_id.png -o o.png", 1, ["bad_id.png", "200 (100 px)", "0..182"]),
    ("synthesize-one-bad-map", S + " --labels {in}/maps_one_bad -o out", 1, ["1.png", "200"]),
    (
        "synthesize-missing-instance",
        S + " --labels {in}/maps --instance {in}/inst_partial -o out",
        1,
        ["no instance map", "1.png"],
    ),
    ("synthesize-checkpoint", "synthesize {in}/G.pth --labels {in}/label.png -o o.png", 1, ["convert it first"]),
    ("synthesize-usage", S + " -o o.png", 2, ["--labels"]),
    # export
    ("export-output-folder", "export {in}/m.safetensors -o {in}/a_folder", 1, ["a_folder", "is a folder"]),
    ("export-read-only", "export {in}/m.safetensors -o {ro}/m.onnx", 1, ["cannot create files", "m.onnx"]),
    ("export-batch", "export {in}/m.safetensors -o m.onnx --batch 0", 1, ["0:0:0", "1 <= MIN"]),
    ("export-text-file", "export {in}/text.pth -o m.onnx", 1, ["text.pth", "safetensors"]),
    ("export-usage", "export {in}/m.safetensors -o m.onnx --precision fp8", 2, ["--precision", "fp8"]),
    # build
    ("build-dedup-graph", "build {in}/dedup.onnx -o x.engine", 1, ["dedup", "CPU graphs", "--precision fp16"]),
    ("build-output-folder", "build {g} -o {in}/a_folder", 1, ["a_folder", "is a folder"]),
    ("build-read-only", "build {g} -o {ro}/x.engine", 1, ["cannot create files", "x.engine"]),
    ("build-needs-recipe", "build {in}/m.safetensors -o x.engine", 1, ["--recipe"]),
    # train
    ("train-read-only", "train --preset landscape --out {ro}/run", 1, ["--out", "cannot create files"]),
    ("train-out-is-a-file", "train --preset landscape --out {in}/a_file", 1, ["a_file", "is a file"]),
    ("train-steps", "train --preset landscape --out run --steps 0", 1, ["steps", "0"]),
    ("train-usage", "train --preset landscape", 2, ["--out"]),
    # bench
    ("bench-batch", "bench --batch 0", 1, ["--batch", "1 or more"]),
    ("bench-data", "bench --data {in}/empty_folder", 1, ["--data", "val_label"]),
    ("bench-json-suffix", "bench --json out.txt", 1, ["out.txt", ".json"]),
    ("bench-read-only", "bench --json {ro}/b.json", 1, ["cannot create files"]),
    ("bench-bad-model", "bench --quick --backends torch --model {in}/text.pth --json b.json", 1, ["text.pth"]),
    ("bench-usage", "bench --repeats 0", 2, ["--repeats", "1 or more"]),
    # web
    ("web-output-is-a-file", "web {g} -o {in}/a_file", 1, ["a_file", "is a file"]),
    ("web-read-only", "web {g} -o {ro}/site", 1, ["cannot create files"]),
    ("web-text-model", "web {in}/text.pth -o site", 1, ["text.pth", "model kind"]),
    ("web-missing-model", "web {in}/none.onnx -o site", 1, ["none.onnx", "no such file"]),
    ("web-ort-web", "web {g} -o site --ort-web {in}/empty_folder", 1, ["--ort-web", "ort.wasm.min.mjs"]),
    ("web-usage", "web {g}", 2, ["-o"]),
    # info / inspect / the command itself
    ("info-text-file", "info {in}/text.pth", 1, ["text.pth", "model kind"]),
    ("inspect-missing", "inspect {in}/none.engine", 1, ["none.engine", "not found"]),
    ("no-such-command", "paint", 2, ["paint", "choose from"]),
]


@pytest.mark.parametrize(("argv", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_bad_input_gets_one_clear_line_and_leaves_nothing(inputs, tmp_path, argv, status, words):
    if "{ro}" in argv and inputs["ro"] is None:
        pytest.skip("no folder here refuses new files (root, and /sys accepts them)")
    work, tmpdir, cache = tmp_path / "work", tmp_path / "tmp", tmp_path / "cache"
    for d in (work, tmpdir, cache):
        d.mkdir()
    args = argv.format(**{"in": inputs["dir"], "g": inputs["dir"] / "m.onnx", "ro": inputs["ro"]}).split()
    before = snapshot(work, tmpdir, cache, inputs["dir"])
    env = {**os.environ, "TMPDIR": str(tmpdir), "SPADE_RT_CACHE": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "spade_rt.cli", *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    prefix = "spade-rt: error: " if args[0] == "paint" else f"spade-rt {args[0]}: error: "
    assert lines[0].startswith(prefix), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    # nothing written, nothing left behind (in TMPDIR, what libraries make on import is theirs, not ours)
    after = snapshot(work, tmpdir, cache, inputs["dir"])
    assert {k: v for k, v in after.items() if not LIBRARY_TEMP_FILES & set(Path(k).parts)} == before


# ---- 1: the real sample ships with the project -------------------------------------------------------------
def test_the_coco_stuff_sample_ships_in_the_package_and_nothing_needs_shared():
    from spade_rt.bench.run import default_data_dir
    from spade_rt.sample_data import coco_stuff_sample

    sample = coco_stuff_sample()
    assert sample == ROOT / "spade_rt" / "assets" / "coco_stuff_sample"
    assert default_data_dir() == sample  # `spade-rt bench` without --data
    for folder, suffix in (("val_label", ".png"), ("val_inst", ".png"), ("val_img", ".jpg"), ("train_label", ".png")):
        files = sorted((sample / folder).iterdir())
        assert len(files) >= 8 and all(f.suffix == suffix for f in files), folder
    first = Image.open(sample / "val_label" / "000000000139.png")
    assert first.mode == "L" and first.size == (640, 426)  # a real COCO-Stuff map, not a stand-in
    readme = (sample / "README.md").read_text()
    assert "COCO" in readme and "licen" in readme and "package data" in readme
    # what the wheel ships: pyproject's package-data covers every file of the sample
    pyproject = (ROOT / "pyproject.toml").read_text()
    for pattern in ("assets/coco_stuff_sample/*/*.png", "assets/coco_stuff_sample/*/*.jpg"):
        assert pattern in pyproject
    # nothing refers to the workplace's shared folder beside the checkout any more (the pattern is split so
    # that a grep of the tree for it finds real uses only)
    pattern = re.compile("SPADE_RT_" + "SHARED|" + re.escape("../" + "shared"))
    for folder in ("spade_rt", "model", "training", "export", "engines", "bench", "tests", ".ci"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".md", ".toml", ".json", "") and path != Path(__file__):
                assert not pattern.search(path.read_text(errors="replace")), path
    assert not pattern.search((ROOT / "README.md").read_text())


# ---- 2: the README's test commands -------------------------------------------------------------------------
def test_readme_gives_the_full_test_command_its_duration_and_the_fast_subset():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    (command,) = re.findall(r"^(python -m pytest -q.*)$", ci, re.M)  # CI runs the README's command, slow tests too
    assert "not slow" not in command
    assert re.search(rf"^{re.escape(command)}( +#.*)?$", readme, re.M)  # everything, slow tests included
    assert re.search(rf'^{re.escape(command)} -m "not slow"( +#.*)?$', readme, re.M)
    assert re.search(r"takes about \d+ min", readme)


# ---- 4: random bytes are not "unsafe", and torch's advice to load unsafely is never quoted -----------------
def test_unreadable_and_unsafe_checkpoints_are_told_apart(inputs):
    from spade_rt.errors import ModelFormatError, UnsafeCheckpointError
    from spade_rt.model.original_checkpoint import load_torch_state_dict

    d = inputs["dir"]
    for name in ("random.pth", "text.pth", "empty.pth", "protocol4.pth"):
        with pytest.raises(ModelFormatError) as err:
            load_torch_state_dict(d / name)
        assert not isinstance(err.value, UnsafeCheckpointError), name
        assert "pickled objects" not in str(err.value) and "weights_only=False" not in str(err.value)
        assert "`weights_only` set to `False`" not in str(err.value)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_torch_state_dict(d / "unsafe.pth")
    assert "system" in str(err.value) and "False" not in str(err.value)


# ---- 5: no GPU at all -------------------------------------------------------------------------------------
def test_a_machine_without_any_nvidia_gpu_is_told_so():
    pytest.importorskip("cuda.bindings", reason="cuda-python (the rtx extra) is part of CI's install")
    if NVIDIA_DEVICE_NODES:
        pytest.skip("this machine has an NVIDIA device: CUDA's own reason is the right message here")
    from spade_rt.engines.cuda import Cuda
    from spade_rt.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError) as err:
        Cuda()
    assert str(err.value).startswith("no NVIDIA GPU found")
    assert "driver version" not in str(err.value)


# ---- 7 and 8: the export report speaks one unit, and GMACs are per image ----------------------------------
def test_uint8_verification_is_reported_in_levels_and_gmacs_do_not_grow_with_the_batch(inputs, tmp_path):
    d = inputs["dir"]
    out = tmp_path / "u8.onnx"
    # a fixed batch of 4 (verified on 3 maps: the graph takes exactly 4 per call)
    proc = run_cli("export", d / "m.safetensors", "-o", out, "--output", "uint8", "--batch", 4, "--verify-samples", 3)
    report = json.loads((tmp_path / "u8.onnx.json").read_text())
    line = next(x for x in proc.stderr.splitlines() if x.startswith("verified against PyTorch"))
    found = re.fullmatch(r"verified against PyTorch: max (\d+) uint8 level\(s\) .*\(fp32 bound (\d+) levels\)", line)
    assert found, line
    verification = report["verification"]
    assert int(found[1]) == verification["max_abs_levels"] and int(found[2]) == verification["bound"]
    single = json.loads((d / "m.onnx.json").read_text())  # the same network, exported for batches 1..2
    assert report["options"]["batch"] == [4, 4, 4] and len(verification["cases"]) == 3
    assert report["gmacs_per_image"] == single["gmacs_per_image"] > 0
    assert report["gmacs_by_op"] == single["gmacs_by_op"]
    assert report["gmacs_per_image"] < report["original_gmacs_per_image"]  # per image, like the original's


# ---- 9: bench's temporary folder goes, on success, on failure and on Ctrl-C ---------------------------------
def test_bench_removes_its_temporary_folder_on_ctrl_c(tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    argv = ["bench", "--preset", "coco", "--ngf", "4", "--size", "64x64", "--backends", "torch", "--batch", "1"]
    argv += ["--warmup", "1", "--repeats", "100000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "spade_rt.cli", *argv, "--json", str(tmp_path / "b.json")],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C in a terminal signals the whole group
    )
    try:
        for line in proc.stderr:
            if "ready in" in line:  # model written, contestant loaded: the timing loop runs
                break
        work = [p for p in tmpdir.iterdir() if p.name.startswith("spade-rt-bench-")]
        assert len(work) == 1 and (work[0] / "model.safetensors").is_file()
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rest.strip().splitlines() == ["interrupted"], rest
    assert not work[0].exists()
    assert not (tmp_path / "b.json").exists()


# ---- 10: instance maps of another picture -----------------------------------------------------------------
def test_the_api_refuses_an_instance_map_of_another_size(inputs):
    with Synthesizer(inputs["dir"] / "m.onnx") as synth:
        ids = blobby_labels(1, 64, 64, 183, seed=3)[0].astype(np.uint8)
        with pytest.raises(InputError, match=r"32x40 but labels is 64x64"):
            synth(ids, np.zeros((32, 40), np.int32))
        big = np.kron(ids, np.ones((2, 2), np.uint8))  # the same picture at 128x128: resized alike, accepted
        assert synth(big, np.kron(ids, np.ones((2, 2), np.uint8))).shape == (64, 64, 3)


# ---- 11: noise -----------------------------------------------------------------------------------------------
def test_folder_mode_says_no_instance_map_once(inputs, tmp_path):
    proc = run_cli("synthesize", inputs["dir"] / "m.onnx", "--labels", inputs["dir"] / "maps", "-o", tmp_path / "out")
    assert proc.stderr.count("no instance map given") == 1, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]


def test_inspect_flags_an_engine_whose_graph_changed_and_rtx_keeps_no_timing_cache(inputs, tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="the rtx extra (tensorrt-rtx-cu13) is part of CI's install")
    graph, engine = tmp_path / "coco.onnx", tmp_path / "coco.engine"
    graph.write_bytes((inputs["dir"] / "m.onnx").read_bytes())
    proc = run_cli("build", graph, "-o", engine, "--backend", "tensorrt-rtx", "--timing-cache", tmp_path / "t.cache")
    assert "tensorrt_rtx has no timing cache" in proc.stderr and "--timing-cache" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco.engine", "coco.engine.json", "coco.onnx"]
    assert "TensorRT-RTX has none" in " ".join(run_cli("build", "--help").stdout.split())
    info = json.loads(run_cli("inspect", engine, "--json").stdout)
    assert "unchanged" in info["onnx"] and "CHANGED" not in info["onnx"]
    # the graph is exported again after the build (other options): the engine is no longer that graph
    assert main(["export", str(inputs["dir"] / "m.safetensors"), "-o", str(graph), "--batch", "1:2:2", "-q"]) == 0
    info = json.loads(run_cli("inspect", engine, "--json").stdout)
    assert "CHANGED since the build" in info["onnx"] and f"spade-rt build {graph} -o {engine}" in info["onnx"]
    manifest = json.loads((tmp_path / "coco.engine.json").read_text())
    assert manifest["onnx_sha256"][:16] in info["onnx"]
