"""Hostile files, made here, refused from their headers before anything is allocated for them.

Every case runs the real CLI in a fresh interpreter under a 2 GiB address-space limit (RLIMIT_AS), so an
allocation the checks should have prevented (the issue's 10.6 GB network of an ngf-100000 header) fails
the test instead of passing on a large machine. A plain `spade-rt info` of a small good model needs about
0.75 GiB of address space (torch included), so the limit leaves room for honest work and none for a
10 GB allocation; the first test proves both. Each refusal is exit status 1, exactly one line on stderr
naming what was wrong, and no traceback.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spade_rt.errors import InputError, ModelFormatError
from spade_rt.labels import read_instance_map, read_label_ids
from spade_rt.limits import MAX_PIXELS_ENV, MIN_PIXEL_LIMIT
from spade_rt.model.config import GeneratorConfig
from spade_rt.model.native_format import NativeModel, load_model, save_model
from spade_rt.model.networks import SPADEGenerator

LIMIT = 2 << 30  # bytes of address space per CLI run


def run_limited(*args, env: dict[str, str] | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    """`spade-rt ARGS` (or ``python -c code``) in a fresh interpreter that cannot map more than LIMIT bytes."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "spade_rt.cli", *map(str, args)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
        env={**os.environ, **(env or {})},
    )


def assert_refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 1, exactly one line on stderr, no traceback, and the line names what was wrong."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---- files the tests make ----------------------------------------------------------------------------------
def write_safetensors(path: Path, metadata: dict[str, str], tensors: dict | None = None, data: bytes = b"") -> Path:
    """A safetensors file written byte by byte: any header, true or not."""
    header = json.dumps({"__metadata__": metadata, **(tensors or {})}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def model_header(**config) -> dict[str, str]:
    return {"format": "spade-rt-model", "format_version": "1", "config": json.dumps(config)}


SMALL = GeneratorConfig.from_preset("landscape", ngf=4, crop_size=64, use_instance=True)


def small_state(config: GeneratorConfig = SMALL, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return SPADEGenerator(config).state_dict()


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit grey PNG of width x height zeros, streamed through zlib: megapixels in kilobytes."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    comp, row = zlib.compressobj(9), b"\0" * (width + 1)  # filter byte + pixels
    rows = [comp.compress(row * 64) for _ in range(height // 64)]
    idat = b"".join([*rows, comp.compress(row * (height % 64)), comp.flush()])
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A small good model (landscape ids, instance edges, 64x64) and its ONNX graph (torch-free runs start
    faster), a good label map, and the bombs."""
    from spade_rt.cli import main

    tmp = tmp_path_factory.mktemp("untrusted")
    save_model(tmp / "good.safetensors", NativeModel(SMALL, small_state()))
    export = ["export", str(tmp / "good.safetensors"), "-o", str(tmp / "good.onnx"), "--batch", "1", "--no-verify"]
    assert main([*export, "-q"]) == 0
    Image.fromarray(np.full((64, 64), 3, np.uint8)).save(tmp / "labels.png")
    png_bomb(tmp / "bomb.png", 30000, 30000)  # 900 Mpx in about 0.9 MB: Pillow itself calls it a bomb
    png_bomb(tmp / "big.png", 5000, 5000)  # 25 Mpx: under Pillow's limits, over ours (16.7 Mpx here)
    return tmp


# ---- the limit itself ----------------------------------------------------------------------------------------
def test_the_memory_limit_passes_honest_work_and_stops_a_10_gb_allocation(work):
    ok = run_limited("info", work / "good.safetensors")
    assert ok.returncode == 0 and "gmacs_per_image" in ok.stdout, ok.stderr[-2000:]
    ok = run_limited("synthesize", work / "good.safetensors", "--labels", work / "labels.png", "-o", work / "o.png")
    assert ok.returncode == 0 and (work / "o.png").is_file(), ok.stderr[-2000:]
    ok = run_limited("synthesize", work / "good.onnx", "--labels", work / "labels.png", "-o", work / "p.png")
    assert ok.returncode == 0 and (work / "p.png").is_file(), ok.stderr[-2000:]
    big = run_limited(code="import torch; torch.empty(10 << 30, dtype=torch.uint8)")  # what ngf 100000 asked for
    assert big.returncode != 0 and "allocate" in big.stderr, big.stderr[-2000:]


# ---- model configs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ({"preset": "coco", "ngf": 100000}, ("ngf must be an integer in 2..1024, got 100000",)),
        ({"preset": "coco", "crop_size": 1000000}, ("crop_size must be an integer in 8..4096, got 1000000",)),
        ({"preset": "coco", "crop_size": -256}, ("crop_size must be an integer in 8..4096, got -256",)),
        ({"preset": "coco", "label_nc": -1}, ("label_nc must be an integer in 1..65535, got -1",)),
        ({"preset": "custom", "label_nc": 10**12}, ("label_nc must be an integer in 1..65535, got 1000000000000",)),
        ({"preset": "coco", "use_vae": True, "z_dim": 2**40}, ("z_dim must be an integer in 1..4096",)),
        ({"preset": "coco", "aspect_ratio": float("inf")}, ("aspect_ratio must be a number in 0.0625..16, got inf",)),
        ({"preset": "coco", "num_upsampling_layers": "x"}, ("num_upsampling_layers must be one of normal, more",)),
        ({"preset": "coco", "crop_size": 4096, "aspect_ratio": 0.25}, ("16384x4096 output", "at most 4096")),
        ({"preset": "coco", "use_instance": "yes"}, ("use_instance must be true or false, got 'yes'",)),
    ],
    ids=["ngf", "crop", "negative-crop", "negative-labels", "huge-labels", "z_dim", "aspect", "upsampling",
         "output-side", "bool"],
)  # fmt: skip
def test_config_values_out_of_range_are_refused_from_the_header(tmp_path, config, needles):
    model = write_safetensors(tmp_path / "hostile.safetensors", model_header(**config))  # and no tensors
    line = assert_refused(run_limited("info", model), "hostile.safetensors", "config header is refused", *needles)
    assert "GMACs" not in line


def test_the_issues_ngf_100000_file_is_refused_by_synthesize_too(work, tmp_path):
    model = write_safetensors(tmp_path / "ngf.safetensors", model_header(preset="coco", ngf=100000))
    proc = run_limited("synthesize", model, "--labels", work / "labels.png", "-o", tmp_path / "o.png")
    assert_refused(proc, "ngf must be an integer in 2..1024, got 100000")
    assert not (tmp_path / "o.png").exists()


def test_the_largest_accepted_config_without_its_tensors_prints_no_gmacs(tmp_path):
    """Every value at the top of its range: accepted, but the (missing) tensors are checked before `info` counts."""
    config = {"preset": "custom", "ngf": 1024, "crop_size": 4096, "label_nc": 65535, "use_vae": True, "z_dim": 4096}
    model = write_safetensors(tmp_path / "top.safetensors", model_header(**config, num_upsampling_layers="most"))
    proc = run_limited("info", model)
    assert_refused(proc, "its tensors do not fit its config (ngf 1024", "tensor(s) missing, e.g. generator.fc.weight")
    assert proc.stdout == ""


# ---- the safetensors header and the tensors it describes -----------------------------------------------------
def test_header_lengths_that_do_not_fit_are_refused(tmp_path):
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 1 << 40) + b'{"__metadata__": {}}')
    assert_refused(run_limited("info", huge), "header length 1099511627776 does not fit")
    capped = tmp_path / "capped.safetensors"  # a 20 MiB header in a (sparse) file that really has 20 MiB
    with open(capped, "wb") as f:
        f.write(struct.pack("<Q", 20 << 20) + b"{")
        f.truncate(8 + (20 << 20))
    assert_refused(run_limited("info", capped), f"header is {20 << 20} bytes; at most {16 << 20} are accepted")


def test_tensor_bytes_are_checked_against_shapes_and_the_file_size(tmp_path):
    """The header claims 100000 x 100000 x 3 x 3 floats (360 GB) for 16 bytes, then 16 bytes the file lacks."""
    cfg = SMALL.to_dict()
    lying = {"generator.fc.weight": {"dtype": "F32", "shape": [100000, 100000, 3, 3], "data_offsets": [0, 16]}}
    model = write_safetensors(tmp_path / "lying.safetensors", model_header(**cfg), lying, bytes(16))
    assert_refused(run_limited("info", model), "generator.fc.weight", "360000000000 bytes", "does not match")
    short = {"generator.fc.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    model = write_safetensors(tmp_path / "short.safetensors", model_header(**cfg), short, bytes(8))
    assert_refused(run_limited("info", model), "generator.fc.weight", "8-byte data section")


def _tamper(state: dict[str, torch.Tensor], case: str) -> dict[str, torch.Tensor]:
    state = dict(state)
    if case == "shape":
        state["conv_img.weight"] = torch.zeros(3, 8, 3, 3)  # an ngf-8 layer in an ngf-4 model
    elif case == "missing":
        del state["conv_img.bias"]
    elif case == "dtype":
        state["conv_img.weight"] = state["conv_img.weight"].to(torch.int32)
    elif case in ("nan", "inf"):
        state["head_0.conv_0.weight_orig"] = state["head_0.conv_0.weight_orig"].clone()
        state["head_0.conv_0.weight_orig"][0, 0, 1, 1] = float(case)
    return state


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("shape", ("tensor generator.conv_img.weight has shape [3, 8, 3, 3]", "needs [3, 4, 3, 3]")),
        ("missing", ("1 tensor(s) missing, e.g. generator.conv_img.bias",)),
        ("dtype", ("tensor generator.conv_img.weight is I32, expected F32 or F16",)),
        ("nan", ("generator.head_0.conv_0.weight_orig holds 1 NaN or infinite value(s)",)),
        ("inf", ("generator.head_0.conv_0.weight_orig holds 1 NaN or infinite value(s)",)),
    ],
)
def test_tensors_that_do_not_fit_the_config_are_refused(tmp_path, case, needles):
    model = save_model(tmp_path / f"{case}.safetensors", NativeModel(SMALL, _tamper(small_state(), case)))
    assert_refused(run_limited("info", model), f"{case}.safetensors", *needles)
    with pytest.raises(ModelFormatError):  # the API says the same, before any network is built
        load_model(model)


def test_an_unexpected_tensor_is_refused(tmp_path):
    state = small_state()
    native = NativeModel(SMALL, state, encoder={"evil": torch.zeros(1)})  # an encoder the config does not have
    model = save_model(tmp_path / "extra.safetensors", native)
    assert_refused(run_limited("info", model), "1 unexpected tensor(s), e.g. 'encoder.evil'")


# ---- label and instance maps ---------------------------------------------------------------------------------
def test_a_decompression_bomb_label_map_is_one_line(work, tmp_path):
    bomb = work / "bomb.png"
    assert bomb.stat().st_size < 1_000_000
    model, out = work / "good.onnx", tmp_path / "o.png"
    proc = run_limited("synthesize", model, "--labels", bomb, "-o", out)
    assert_refused(proc, "label map", "bomb.png", "900000000 pixels", f"more than the {MIN_PIXEL_LIMIT} accepted")
    proc = run_limited("synthesize", model, "--labels", work / "labels.png", "--instance", bomb, "-o", out)
    assert_refused(proc, "instance map", "bomb.png", "900000000 pixels")
    folder = tmp_path / "maps"
    folder.mkdir()
    (folder / "a.png").write_bytes(bomb.read_bytes())
    proc = run_limited("synthesize", model, "--labels", folder, "-o", tmp_path / "out", "-q")  # -q: no info line
    assert_refused(proc, "label map", "a.png", "900000000 pixels")
    assert not out.exists() and not (tmp_path / "out").exists()


def test_a_map_over_our_limit_but_under_pillows_is_refused_from_its_header(work, tmp_path):
    model, big = work / "good.onnx", work / "big.png"
    proc = run_limited("synthesize", model, "--labels", big, "-o", tmp_path / "o.png")
    assert_refused(proc, "label map", "big.png is 5000x5000 (25000000 pixels)", "--max-pixels")
    # the limit is the user's to set: --max-pixels (here lower than the default), $SPADE_RT_MAX_PIXELS
    small = work / "labels.png"
    proc = run_limited("synthesize", model, "--labels", small, "-o", tmp_path / "o.png", "--max-pixels", 1000)
    assert_refused(proc, "labels.png is 64x64 (4096 pixels): more than the 1000 accepted")
    proc = run_limited("synthesize", model, "--labels", small, "-o", tmp_path / "o.png", env={MAX_PIXELS_ENV: "999"})
    assert_refused(proc, "labels.png is 64x64 (4096 pixels): more than the 999 accepted")
    assert not (tmp_path / "o.png").exists()


def test_the_reading_functions_take_the_limit_as_a_keyword(work):
    with pytest.raises(InputError, match=r"64x64 \(4096 pixels\): more than the 4095 accepted"):
        read_label_ids(work / "labels.png", max_pixels=4095)
    assert read_label_ids(work / "labels.png", max_pixels=4096).shape == (64, 64)
    assert read_label_ids(work / "big.png", max_pixels=25_000_000).shape == (5000, 5000)  # a raised limit decodes
    with pytest.raises(InputError, match="900000000 pixels"):
        read_label_ids(work / "bomb.png", palette="landscape")  # the colour-coded path checks it too
    with pytest.raises(InputError, match="instance map .*900000000 pixels"):
        read_instance_map(work / "bomb.png")


# ---- ONNX spec metadata and engine manifests -----------------------------------------------------------------
GOOD_SPEC = {
    "preset": "landscape", "label_nc": 10, "contain_dontcare_label": False, "use_instance": False, "height": 64,
    "width": 64, "use_vae": False, "z_dim": 256, "output": "float", "precision": "fp32", "min_batch": 1,
    "opt_batch": 1, "max_batch": 1, "dynamic_size": False, "size_multiple": 32,
}  # fmt: skip


def test_an_onnx_spec_out_of_range_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["labels"], ["image"], to=TensorProto.FLOAT)],
        "g",
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, 64, 64])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 64, 64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"spade_rt.spec": json.dumps({**GOOD_SPEC, "height": 1000000})})
    onnx.save(model, tmp_path / "hostile.onnx")
    proc = run_limited("inspect", tmp_path / "hostile.onnx")
    assert_refused(proc, "hostile.onnx", "spec refused", "height must be an integer in 1..4096, got 1000000")


def _manifest(engine: Path, **changes) -> dict:
    manifest = {
        "format": "spade-rt-engine-manifest",
        "engine": engine.name,
        "onnx": "m.onnx",
        "builder": {"module": "tensorrt_rtx", "version": "1.7.1.116", "backend": "tensorrt-rtx"},
        "target_compute_capabilities": ["8.6"],
        "inputs": {"labels": {"dtype": "uint8", "min": [1, 64, 64], "opt": [1, 64, 64], "max": [1, 64, 64]}},
        "outputs": {"image": {"dtype": "float32"}},
        "spec": GOOD_SPEC,
        "engine_bytes": engine.stat().st_size,
        "engine_sha256": "0" * 64,
        **changes,
    }
    Path(f"{engine}.json").write_text(json.dumps(manifest))
    return manifest


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"spec": {**GOOD_SPEC, "height": 100000}}, ("height must be an integer in 1..4096, got 100000",)),
        ({"spec": {**GOOD_SPEC, "max_batch": 10**9}}, ("max_batch must be an integer in 1..4096",)),
        (
            {"inputs": {"labels": {"dtype": "uint8", "min": [1, 64, 64], "opt": [1, 64, 64], "max": [4096, 64, 64]}}},
            ("input labels profile", "at most [1, 64, 64]"),
        ),
        ({"onnx": "../../elsewhere.onnx"}, ("onnx must be a file name beside the engine",)),
    ],
    ids=["height", "batch", "profile", "onnx-path"],
)
def test_an_engine_manifest_out_of_range_is_refused_before_the_engine_is_read(tmp_path, changes, needles):
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"vtrt" + bytes(60))
    _manifest(engine, **changes)
    for command in (("inspect", engine), ("synthesize", engine, "--labels", engine, "-o", tmp_path / "o.png")):
        assert_refused(run_limited(*command), "x.engine.json", *needles)


@pytest.fixture(scope="module")
def engine(work) -> Path:
    """A real TensorRT-RTX engine of the small model (TensorRT-RTX builds on a CPU) and its manifest."""
    pytest.importorskip("tensorrt_rtx", reason="the rtx extra (tensorrt-rtx-cu13) is part of CI's install")
    from spade_rt.cli import main

    engine = work / "good.engine"
    assert main(["build", str(work / "good.onnx"), "-o", str(engine), "--backend", "tensorrt-rtx", "-q"]) == 0
    return engine


def _copy_engine(engine: Path, to: Path, flip: int | None = None, append: bytes = b"") -> Path:
    data = bytearray(engine.read_bytes())
    if flip is not None:
        data[flip] ^= 0x01
    to.write_bytes(bytes(data) + append)
    Path(f"{to}.json").write_text(Path(f"{engine}.json").read_text())
    return to


def test_an_engine_that_is_not_the_one_its_manifest_describes_is_refused(engine, work, tmp_path):
    labels = work / "labels.png"
    flipped = _copy_engine(engine, tmp_path / "flipped.engine", flip=len(engine.read_bytes()) // 2)
    proc = run_limited("synthesize", flipped, "--labels", labels, "-o", tmp_path / "o.png")
    assert_refused(proc, "flipped.engine is not the engine its manifest describes", "sha256", "--trust-engine")
    longer = _copy_engine(engine, tmp_path / "longer.engine", append=b"\0")
    proc = run_limited("synthesize", longer, "--labels", labels, "-o", tmp_path / "o.png")
    size = engine.stat().st_size
    assert_refused(proc, f"it is {size + 1} bytes, its manifest records {size}")
    # the genuine file passes the check (here it then needs a GPU); --trust-engine lets the flipped one past it
    for path, extra in ((_copy_engine(engine, tmp_path / "same.engine"), ()), (flipped, ("--trust-engine",))):
        proc = run_limited("synthesize", path, "--labels", labels, "-o", tmp_path / "o.png", *extra)
        assert "not the engine its manifest describes" not in proc.stderr and "Traceback" not in proc.stderr
    assert "loading it anyway (trust_engine)" in proc.stderr


def test_the_runtime_refuses_host_code_in_engines():
    pytest.importorskip("tensorrt_rtx", reason="the rtx extra (tensorrt-rtx-cu13) is part of CI's install")
    from spade_rt.engines.adapter import TensorRT

    rtx = TensorRT.load("tensorrt-rtx")
    runtime = rtx.create_runtime(rtx.logger())
    assert runtime.engine_host_code_allowed is False
