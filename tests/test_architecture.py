"""docs/architecture.md, enforced: which way imports go, one table per list, model kinds from content.

The import rules are read from the source with ``ast`` (every ``import`` and ``from ... import``, at module
level or inside functions), so a lazy import breaks a rule as surely as a top-level one. A second test
imports the runtime in a fresh interpreter and checks that torch never loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spade_rt.cli import main
from spade_rt.errors import ModelFormatError

from conftest import ROOT, run_cli
from reference_spade import ref_generator_for

# checkout folder -> installed package (pyproject.toml's package-dir)
PACKAGES = {
    "spade_rt": "spade_rt",
    "model": "spade_rt.model",
    "training": "spade_rt.training",
    "export": "spade_rt.export",
    "engines": "spade_rt.engines",
    "bench": "spade_rt.bench",
}
TOOLCHAIN = ("spade_rt.model", "spade_rt.training", "spade_rt.export", "spade_rt.bench")
# what each part may never import (docs/architecture.md, "Import directions")
FORBIDDEN = {
    "model": ("spade_rt.training", "spade_rt.export", "spade_rt.bench", "spade_rt.engines", "spade_rt.commands"),
    "engines": ("torch", *TOOLCHAIN, "spade_rt.commands"),
    "export": ("spade_rt.training", "spade_rt.bench", "spade_rt.commands"),
    "training": ("spade_rt.export", "spade_rt.bench", "spade_rt.engines", "spade_rt.commands"),
    "bench": ("spade_rt.training", "spade_rt.commands"),
}
# the runtime core (spade_rt/ minus its commands): no torch and no toolchain, except through the registry's
# "module:attr" strings, which are imported only when a backend is chosen
RUNTIME_FORBIDDEN = ("torch", "torchvision", "safetensors", *TOOLCHAIN)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import statement of a file, resolved to absolute module names."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import (the project imports spade_rt.* names)")
    return found


def breaks(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(folder: str, forbidden: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if any(part in skip for part in path.relative_to(ROOT / folder).parts):
            continue
        for line, module in imports_of(path):
            if breaks(module, forbidden):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_import_directions(folder):
    assert violations(folder, FORBIDDEN[folder]) == []


def test_the_runtime_core_imports_no_torch_and_no_toolchain():
    assert violations("spade_rt", RUNTIME_FORBIDDEN, skip=("commands",)) == []


# the server stack (`spade-rt serve`, `spade-rt triton`) lives in spade_rt/serve and the commands that start it
SERVE_STACK = ("starlette", "uvicorn", "websockets", "tritonclient", "prometheus_client")


def test_the_server_stack_stays_in_its_subpackage():
    assert violations("spade_rt", SERVE_STACK, skip=("serve", "commands")) == []
    assert violations("spade_rt/serve", ("spade_rt.commands", "spade_rt.engines")) == []  # engines: via the registry


def test_the_import_rule_checker_catches_a_violation(tmp_path):
    """The checker itself can fail: a model file that imports training, a runtime file that imports torch."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from spade_rt.training.loss import SPADELoss\n    import torch.nn\n")
    found = [m for _, m in imports_of(bad)]
    assert breaks(found[0], FORBIDDEN["model"]) and breaks(found[1], RUNTIME_FORBIDDEN)


def test_runtime_loads_no_torch_in_a_fresh_interpreter():
    code = (
        "import sys, spade_rt.cli, spade_rt.runtime.synthesizer, spade_rt.runtime.registry, "
        "spade_rt.runtime.model_kind, spade_rt.engines.backend, spade_rt.engines.inspect, spade_rt.engines.manifest\n"
        "import spade_rt.serve.app, spade_rt.serve.server, spade_rt.serve.triton, spade_rt.demo_model, "
        "spade_rt.runtime.peek\n"
        "spade_rt.cli.build_parser()\n"
        "bad = [m for m in ('torch', 'onnx', 'safetensors') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_choice_derives_from_one_table():
    """--backend, --palette, --preset and bench contestants come from the registry and the preset table."""
    from spade_rt.cli import build_parser
    from spade_rt.palettes import PALETTES
    from spade_rt.presets import PRESETS
    from spade_rt.runtime.registry import BACKENDS, all_contestants

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices

    def choices(command, dest):
        return tuple(next(a for a in sub[command]._actions if a.dest == dest).choices)

    assert choices("synthesize", "backend") == ("auto", *BACKENDS)
    assert choices("synthesize", "palette") == (*PALETTES, "none")
    for command in ("convert", "bench"):
        assert choices(command, "preset") == tuple(PRESETS)
    assert all(p.palette is None or p.palette in PALETTES for p in PRESETS.values())
    from spade_rt.bench.run import ALL_BACKENDS

    assert all_contestants() == ALL_BACKENDS and "torch-compile" in ALL_BACKENDS


def test_any_file_name_works_and_unknown_content_is_one_line(tmp_path):
    """convert -o anything.ext, then synthesize/info/export anything.ext: the kind is read from the content."""
    torch.save(ref_generator_for("ade20k", 4, crop_size=64).state_dict(), tmp_path / "G.pth")
    model = tmp_path / "my.model"
    assert main(["convert", str(tmp_path / "G.pth"), "--preset", "ade20k", "--crop-size", "64", "-o", str(model)]) == 0
    labels = tmp_path / "l.png"
    from PIL import Image

    Image.fromarray(np.full((64, 64), 3, np.uint8)).save(labels)
    run_cli("synthesize", model, "--labels", labels, "-o", tmp_path / "a.png")
    graph = tmp_path / "graph.bin"
    run_cli("export", model, "-o", graph, "--verify-samples", "1")
    run_cli("synthesize", graph, "--labels", labels, "-o", tmp_path / "b.png")
    assert "ONNX graph" in run_cli("inspect", graph).stdout
    assert "spade-rt native model" in run_cli("info", model).stdout
    a = np.asarray(Image.open(tmp_path / "a.png"), np.int16)
    b = np.asarray(Image.open(tmp_path / "b.png"), np.int16)
    assert np.abs(a - b).max() <= 1  # the torch network and its exported graph: the same picture
    # the original checkpoint itself is recognised and the fix named; random bytes name the accepted kinds
    proc = run_cli("synthesize", tmp_path / "G.pth", "--labels", labels, "-o", tmp_path / "c.png", check=False)
    assert proc.returncode == 1 and "convert it first" in proc.stderr.strip().splitlines()[-1]
    junk = tmp_path / "junk.dat"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    for command in (("synthesize", junk, "--labels", labels, "-o", tmp_path / "d.png"), ("inspect", junk)):
        proc = run_cli(*command, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "cannot tell the model kind" in lines[0] and "ONNX graph" in lines[0] and "TensorRT engine" in lines[0]
    assert not (tmp_path / "d.png").exists()


def test_kind_sniffing_reads_content_not_names(tmp_path):
    from spade_rt.runtime.model_kind import model_kind

    engine_like = tmp_path / "x.onnx"
    engine_like.write_bytes(b"vtrt" + bytes(60))  # a TensorRT-RTX engine header, misnamed .onnx
    assert model_kind(engine_like) == "engine"
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert model_kind(empty) == "onnx"  # nothing to read: the name decides, the ONNX loader explains
    with pytest.raises(ModelFormatError, match="cannot tell the model kind"):
        model_kind(tmp_path / "missing.xyz")


def test_the_document_says_what_bench_may_not_import_as_the_rule_does():
    """docs/architecture.md's table row and diagram for bench agree with FORBIDDEN["bench"]."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    may_import = next(line for line in doc.splitlines() if line.startswith("| `bench/`")).split("|")[4]
    _, excluded = may_import.split("everything but")
    assert all(module.rsplit(".", 1)[-1] in excluded for module in FORBIDDEN["bench"]), may_import
    diagram = doc.split("## Import directions")[1].split("```")[1]
    assert "► training" not in diagram, "the diagram draws an import of training"


def test_no_function_of_the_package_is_over_100_lines():
    """Issue 24: a function over 100 lines does more than one job; split it where its parts are named."""
    long = []
    for folder in PACKAGES.values():
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > 100:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == [], long
