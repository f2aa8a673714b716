"""Kills at any moment (issue 23, item 5): a command killed with SIGKILL while it writes leaves either the old file
or a whole new one, never a half-written one, and the next run works and leaves no temporaries behind.

Real processes, killed (with their process group: the export child of `spade-rt demo` too) at a sweep of
points: after delays spread over the run, and the moment the first temporary file of an atomic write appears
(mid-write: the file is being filled). After each kill every output present must equal what a complete run
writes (the commands are deterministic), and after the last, complete run no ``.tmp`` file may remain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ort_web_dist
from serve_support import tiny_graph, tiny_model


def mid_write(folder: Path) -> Callable[[], bool]:
    """Kill point: a new temporary of an atomic write has appeared under ``folder`` (it is being filled); the
    first poll, right after the start, notes the temporaries already there (left by an earlier kill)."""
    before: set[Path] | None = None

    def fired() -> bool:
        nonlocal before
        now = set(folder.rglob("*.tmp")) if folder.exists() else set()
        if before is None:
            before = now
        return bool(now - before)

    return fired


def run_cli(argv: list, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "spade_rt.cli", *map(str, argv)], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def kill_at(argv: list, when: float | Callable[[], bool], env: dict, cwd: Path) -> bool:
    """Start `spade-rt ARGV`, SIGKILL its process group after ``when`` seconds, or as soon as ``when()`` is true
    (polled every millisecond, bounded: 300 s); False when the command ended first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "spade_rt.cli", *map(str, argv)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + (300 if callable(when) else when)
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if callable(when) and when():
                break
            time.sleep(0.001)
        ended = proc.poll() is not None
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        ended = True
    proc.wait()
    return not ended


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` except temporaries and lock files, by relative path."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith((".tmp", ".lock"))
    }


def check_whole(seen: list[dict[str, bytes]], final: dict[str, bytes], ignore: tuple[str, ...] = ()) -> None:
    """Each output seen after a kill is byte-identical to the complete run's (none half-written)."""
    for i, files in enumerate(seen):
        for name, data in files.items():
            if name.endswith(ignore):
                continue
            assert name in final, f"kill {i}: {name} is not an output of a complete run"
            assert data == final[name], f"kill {i}: {name} differs from the complete run's (half-written?)"


def no_temporaries(*folders: Path) -> None:
    left = [p for f in folders if f.exists() for p in f.rglob("*.tmp")]
    assert left == [], left


@pytest.mark.slow
def test_demo_killed_while_exporting_a_graph_into_the_cache(tmp_path):
    """`spade-rt demo --graph static` (not shipped: the export really runs, in a child) killed early, later,
    and mid-write of the cache entry; the next run exports it again and draws."""
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "SPADE_RT_CACHE": str(cache)}
    argv = ["demo", "--graph", "static", "--count", "1", "-o", "demo.png"]
    seen, killed = [], 0
    for point in (0.5, 2.0, mid_write(cache)):  # starting, exporting (a whole run takes 6 s on idle cores), writing
        killed += kill_at(argv, point, env, work)
        seen.append(outputs(cache))
        assert not (work / "demo.png").exists()  # the picture comes after the graph
    assert killed == 3
    assert list(cache.rglob("*.tmp")), "the mid-write kill left no temporary"  # ... which the next run removes:
    run_cli(argv, env, work)
    final = outputs(cache)
    assert any(name.endswith("-static-b1-1-8.onnx") for name in final), sorted(final)
    check_whole(seen, final, ignore=(".onnx.json",))  # the report records the export's seconds
    no_temporaries(cache / "built", work)
    assert (work / "demo.png").stat().st_size > 0


@pytest.mark.slow
def test_export_killed_while_writing(tmp_path):
    """`spade-rt export` of a tiny model killed at a sweep of points: -o is absent or whole; the next run works."""
    model = tiny_model(tmp_path, "facades", size=64)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["export", model, "-o", out / "g.onnx", "--verify-samples", "1"]
    seen = []
    for point in (1.0, 3.0, 5.0, mid_write(out)):
        kill_at(argv, point, dict(os.environ), tmp_path)
        seen.append(outputs(out))
    run_cli(argv, dict(os.environ), tmp_path)
    final = outputs(out)
    assert set(final) == {"g.onnx", "g.onnx.json"}
    check_whole(seen, final, ignore=(".onnx.json",))
    for files in seen:  # a report present is whole JSON
        if "g.onnx.json" in files:
            json.loads(files["g.onnx.json"])
    no_temporaries(out)


@pytest.mark.slow
def test_build_killed_while_writing(tmp_path):
    """`spade-rt build` (TensorRT-RTX, on this CPU) of a tiny graph killed at a sweep of points: an engine
    present is never half-written (its manifest's size and sha256 hold whenever the manifest is there, and
    `inspect` refuses an engine without its manifest); the next build writes both and they check."""
    pytest.importorskip("tensorrt_rtx", reason="the rtx extra (tensorrt-rtx-cu13) is part of CI's install")
    from spade_rt.engines.manifest import load_manifest, read_checked_engine
    from spade_rt.errors import ModelFormatError

    graph = tiny_graph(tmp_path, "facades", batch="1:1:1")
    out = tmp_path / "out"
    out.mkdir()
    engine = out / "g.engine"
    argv = ["build", graph, "-o", engine, "--backend", "tensorrt-rtx", "-q"]
    killed = []
    for point in (0.5, 2.0, 4.0, mid_write(out)):
        killed.append(kill_at(argv, point, dict(os.environ), tmp_path))
        if engine.is_file():
            try:
                manifest = load_manifest(engine)
            except ModelFormatError:  # an engine without its manifest: refused, never run
                continue
            read_checked_engine(engine, manifest)  # raises EngineTrustError on a half-written engine
    assert killed[0] and killed[-1], killed  # at least the start and the engine's write were interrupted
    run_cli(argv, dict(os.environ), tmp_path)
    read_checked_engine(engine, load_manifest(engine))
    no_temporaries(out)


def test_web_killed_while_writing_the_site(tmp_path):
    """`spade-rt web -o SITE` (the demo: the shipped graph, no export) killed at a sweep of points while it
    copies the graph and the runtime; every file present is whole; the next run writes the whole site."""
    site = tmp_path / "site"
    argv = ["web", "-o", site, "--ort-web", ort_web_dist()]
    seen = []
    for point in (0.3, 0.8, 1.2, 1.6, 2.0, 2.5, mid_write(site)):
        kill_at(argv, point, dict(os.environ), tmp_path)
        seen.append(outputs(site))
    run_cli(argv, dict(os.environ), tmp_path)
    final = outputs(site)
    assert {"index.html", "model.json", "graph.onnx", "_headers"} <= set(final)
    check_whole(seen, final)
    no_temporaries(site)


@pytest.mark.slow
def test_train_killed_while_saving(tmp_path):
    """`spade-rt train` saving every step, killed at a sweep of points: state.pt, latest.safetensors and each
    snapshot present load whole; the next run (--resume when a state was saved) finishes the run."""
    from spade_rt.model.native_format import load_model
    from spade_rt.training.state import load_state

    run = tmp_path / "run"
    argv = ["train", "--preset", "landscape", "--ngf", "8", "--crop-size", "32", "--ndf", "8", "--batch-size", "2"]
    argv += ["--procedural-size", "8", "--steps", "20", "--save-every", "1", "--snapshot-every", "2"]
    argv += ["--sample-every", "3", "--no-tensorboard", "--workers", "0", "--out", run, "-q"]
    snapshots = lambda n: lambda: len(list((run / "snapshots").glob("*.safetensors"))) >= n  # noqa: E731
    steps = []
    # kill points: early (torch still loading), mid-write of the first save, after some snapshots, mid-write of a
    # save after a resume, after more snapshots
    for point in (1.0, mid_write(run), snapshots(2), mid_write(run), snapshots(5)):
        resume = ["--resume"] if (run / "state.pt").is_file() else []
        kill_at([*argv, *resume], point, dict(os.environ), tmp_path)
        if (run / "state.pt").is_file():
            steps.append(load_state(run / "state.pt")["step"])  # raises on a half-written state
        for model in [run / "latest.safetensors", *(run / "snapshots").glob("*.safetensors")]:
            if model.is_file():
                load_model(model)  # raises on a half-written model
    assert steps and steps == sorted(steps), steps  # saves happened between kills, and each resume went on
    run_cli([*argv, "--resume"], dict(os.environ), tmp_path)
    assert load_state(run / "state.pt")["step"] == 20
    no_temporaries(run)
    snapshots = {p.stem: p.suffix for p in (run / "snapshots").iterdir()}
    pairs = sorted(p.name for p in (run / "snapshots").iterdir())
    assert all(sorted(p.suffix for p in (run / "snapshots").glob(f"{stem}.*")) == [".json", ".safetensors"]
               for stem in snapshots), pairs  # fmt: skip


@pytest.mark.slow
def test_two_processes_needing_the_same_cache_entry_export_it_once(tmp_path):
    """Two `spade-rt web MODEL` started together need the same export: one exports, the other waits on the
    entry's lock and uses it; both sites get the same graph, and the cache holds one whole entry."""
    model = tiny_model(tmp_path, "facades", size=64)
    env = {**os.environ, "SPADE_RT_CACHE": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "spade_rt.cli", "web", str(model), "--wasm-only", "--ort-web", str(ort_web_dist())]
    procs = [
        subprocess.Popen([*argv, "-o", str(tmp_path / f"site{i}")], env=env, stderr=subprocess.PIPE, text=True)
        for i in (1, 2)
    ]
    logs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert sum("exporting facades.safetensors" in log for log in logs) == 1, logs
    assert sum("waiting for another process" in log for log in logs) == 1, logs
    assert (tmp_path / "site1" / "graph.onnx").read_bytes() == (tmp_path / "site2" / "graph.onnx").read_bytes()
    entries = sorted(p.name for p in (tmp_path / "cache" / "built").iterdir())
    assert [n for n in entries if n.endswith(".onnx")] == [entries[0]] and not any(n.endswith(".tmp") for n in entries)
