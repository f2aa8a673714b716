"""What a newcomer hit on a fresh clone (issue 24): each case gets one clear line, or does the right thing.

Each test runs the real CLI (in this process, stderr captured, or in a fresh interpreter where what is imported
matters) on real files, and checks the one line a person reads: no traceback, the bad value named, the rule
or the fix said.
"""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spade_rt.cli import main

from conftest import ROOT

DEMO = ROOT / "spade_rt" / "assets" / "landscape_demo.safetensors"  # landscape: ids 0..9, 128x128


def cli(*argv) -> tuple[int, str]:
    """`spade-rt ARGV` in this process: (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            status = exc.code
    return status, err.getvalue()


def one_line(status: int, err: str, *words: str, expected: int = 1) -> str:
    lines = err.strip().splitlines()
    assert status == expected, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


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
