"""The painter's JavaScript unit tests and fuzz loop, on Node's own runner (`node --test web/test/*.test.mjs`):
the PNG codec against Pillow-made and hand-made PNGs and pngjs, the frame header against frames the server
packed, painting and undo, the reconnect policy, and the seeded mutation fuzz of the PNG decoder and the frame
encoder/decoder (2000 inputs each here; docs/fuzzing.md, "JavaScript", has the longer campaigns).

Needs node (20+) and `npm ci --prefix web` (pngjs, the reference decoder); it fails, not skips, without them
unless SPADE_RT_SKIP_NODE=1 says to skip knowingly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require_tools

ROOT = Path(__file__).resolve().parents[1]
TESTS = sorted((ROOT / "web" / "test").glob("*.test.mjs"))


def require_node() -> str:
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("node 20+ on PATH")
    if not (ROOT / "web" / "node_modules" / "pngjs").is_dir():
        missing.append("web/node_modules/pngjs (npm ci --prefix web --no-audit --no-fund --ignore-scripts)")
    require_tools(missing, "the painter's JavaScript tests need", "SPADE_RT_SKIP_NODE")
    return node


@pytest.mark.parametrize("test_file", TESTS, ids=lambda p: p.name)
def test_painter_javascript(test_file: Path) -> None:
    node = require_node()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUZZ_")}  # the normal budget, the fixed seed
    done = subprocess.run(
        [node, "--test", "--test-reporter=spec", str(test_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"node --test {test_file.name} failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"


def test_every_javascript_test_file_runs_here() -> None:
    """The glob above found the files (an empty parametrization would pass silently)."""
    assert {p.name for p in TESTS} >= {"png.test.mjs", "protocol.test.mjs", "labelmap.test.mjs", "fuzz.test.mjs"}
