"""The fuzz targets of tests/fuzz/ (docs/fuzzing.md): the seed corpus and every regression file replayed through
the property, the property itself shown to catch what it should, each target fuzzed for a short budget, and,
marked slow, a campaign of 15 s per target (``$SPADE_RT_FUZZ_SECONDS`` for longer ones).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spade_rt.errors import InputError, ModelFormatError

from conftest import ROOT, run_cli

FUZZ = ROOT / "tests" / "fuzz"
sys.path.insert(0, str(FUZZ))
from campaign import TARGETS, campaign, run_target  # noqa: E402
from harness import CORPUS, REGRESSIONS, MiB, PropertyError, Target, check_one  # noqa: E402


def _inputs(root: Path) -> list[tuple[str, Path]]:
    return [(t, p) for t in TARGETS for p in sorted((root / t).glob("*")) if p.is_file()]


def _target(name: str) -> Target:
    return importlib.import_module(f"fuzz_{name}").TARGET


def test_every_target_has_seeds_and_a_module():
    assert set(TARGETS) == {
        "safetensors_header", "onnx_graph", "engine_manifest", "label_png", "painter_frame", "http_params",
        "original_checkpoint",
    }  # fmt: skip
    for t in TARGETS:
        assert list((CORPUS / t).glob("*")), f"no seed corpus for {t}"


@pytest.mark.parametrize(("target", "path"), _inputs(REGRESSIONS), ids=lambda v: getattr(v, "name", v))
def test_regression_inputs_keep_the_property(target, path):
    """Every crash a campaign found, replayed: it now gives a result or the project's one-line error."""
    check_one(_target(target), path.read_bytes())


@pytest.mark.parametrize(("target", "path"), _inputs(CORPUS), ids=lambda v: getattr(v, "name", v))
def test_seed_inputs_keep_the_property(target, path):
    check_one(_target(target), path.read_bytes())


def test_inspect_of_a_graph_whose_strings_are_not_utf8_is_one_line(tmp_path):
    """The mutation run of 2026-12-03: `spade-rt inspect` gave a UnicodeDecodeError traceback for such graphs
    (metadata, producer); a graph ONNX Runtime itself refuses (an input name) printed four lines of its own on
    stdout before the error."""
    labels = tmp_path / "labels.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(labels)
    for name, needle, command in (
        ("metadata_not_utf8", "not UTF-8 text", ("inspect",)),
        ("producer_not_utf8", "not UTF-8 text", ("inspect",)),
        # `inspect` reads a graph's own fields (no session); ONNX Runtime meets the bad node when it opens it
        ("input_name_not_utf8", "ONNX Runtime cannot load", ("synthesize", "--backend", "onnxruntime")),
    ):
        graph = tmp_path / f"{name}.onnx"
        shutil.copy(REGRESSIONS / "onnx_graph" / name, graph)
        extra = ("--labels", labels, "-o", tmp_path / "out.png") if command[0] == "synthesize" else ()
        proc = run_cli(command[0], graph, *command[1:], *extra, check=False)
        assert proc.returncode == 1, proc.stderr
        assert proc.stdout == "" and "Traceback" not in proc.stderr, (proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"spade-rt {command[0]}: error: "), proc.stderr
        assert needle in lines[0] and name in lines[0], lines[0]


# ---- the property catches what it should (else every fuzz run would pass) ---------------------------------
def _probe(run, allowed=(ModelFormatError,), max_alloc=lambda n: 4 * MiB) -> Target:
    return Target(name="probe", run=run, allowed=allowed, max_alloc=max_alloc, max_len=64)


def test_the_property_refuses_other_exceptions_and_multi_line_messages():
    check_one(_probe(lambda data: None), b"x")
    check_one(_probe(lambda data: (_ for _ in ()).throw(ModelFormatError("one line"))), b"x")
    with pytest.raises(TypeError):
        check_one(_probe(lambda data: data["key"]), b"x")
    with pytest.raises(InputError):  # the project's, but not one this target allows
        check_one(_probe(lambda data: (_ for _ in ()).throw(InputError("x"))), b"x")
    with pytest.raises(PropertyError, match="not one line"):
        check_one(_probe(lambda data: (_ for _ in ()).throw(ModelFormatError("two\nlines"))), b"x")


def test_the_property_bounds_allocation_and_cpu_time():
    with pytest.raises(PropertyError, match="allocated"):
        check_one(_probe(lambda data: bytearray(16 * MiB)), b"x")

    def spin(data: bytes) -> None:
        end = time.process_time() + 1.2
        while time.process_time() < end:
            pass

    with pytest.raises(PropertyError, match="CPU"):
        check_one(_probe(spin), b"x")


# ---- fuzzing --------------------------------------------------------------------------------------------
def _fuzz_all(tmp_path: Path, seconds: int) -> None:
    results = campaign(TARGETS, seconds, jobs=2, out=tmp_path)
    for r in results:
        log = Path(r["log"]).read_text(errors="replace")[-3000:]
        assert r["returncode"] == 0 and not r["crashes"], f"{r['target']}: {r}\n{log}"
        assert r["executions"] > 0 and r["cov"], f"{r['target']} did not run: {r}\n{log}"


def test_every_target_fuzzes_cleanly_for_a_few_seconds(tmp_path):
    """CI's budget: 4 s of fuzzing per target, two targets at once, each in its own process."""
    _fuzz_all(tmp_path, 4)


def test_a_target_started_from_a_large_process_is_not_charged_for_its_size(tmp_path):
    """Linux hands a process's peak resident size across fork and exec; libFuzzer reads it against its 3 GB
    limit. The full suite's pytest process grows past that: a target started from it must still start at its
    own size (the campaign starts it from a fresh interpreter)."""
    ballast = bytearray(3300 * MiB)
    ballast[:: 4096] = b"\1" * len(range(0, len(ballast), 4096))  # resident, not just reserved
    r = run_target("painter_frame", 2, tmp_path)
    del ballast
    log = Path(r["log"]).read_text(errors="replace")[-2000:]
    assert r["returncode"] == 0 and not r["crashes"], f"{r}\n{log}"


@pytest.mark.slow
def test_fuzz_campaign(tmp_path):
    """15 s per target by default (the suite stays under 15 minutes); docs/fuzzing.md records a 10-minute
    campaign (SPADE_RT_FUZZ_SECONDS=600)."""
    _fuzz_all(tmp_path, int(os.environ.get("SPADE_RT_FUZZ_SECONDS", "15")))
