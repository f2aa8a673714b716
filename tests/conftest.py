"""Shared fixtures: the real COCO-Stuff sample, CLI runners, original-format checkpoints."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # reference_spade
NVIDIA_DEVICE_NODES = glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/dxg")  # empty: no NVIDIA GPU at all


def share_the_cpus_between_workers() -> None:
    """Under pytest-xdist (`-n N`), each worker's torch (and the CLI processes it starts, which inherit the
    environment) gets its share of the CPUs as OpenMP threads, set before torch is first imported. Without it
    N workers each run as many OpenMP threads as there are CPUs, and OpenMP's spinning barriers make a training
    test 2-10x slower on 2 cores (measured: the overfit test, 20 s alone, 79 s beside one busy core with 2
    threads, 37 s with 1). A value the user set is kept."""
    from spade_rt.runtime.onnxruntime_backend import default_threads  # the CPUs this process may run on

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = max(1, default_threads() // workers)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, str(share))


share_the_cpus_between_workers()


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Built graphs and engines of the whole session go to a temporary cache, never the user's ~/.cache."""
    if "SPADE_RT_CACHE" not in os.environ:
        os.environ["SPADE_RT_CACHE"] = str(tmp_path_factory.mktemp("spade-rt-cache"))


@pytest.fixture(scope="session")
def coco_sample() -> Path:
    """The real COCO-Stuff sample that ships in the package (spade_rt/assets/coco_stuff_sample): read only."""
    from spade_rt.sample_data import coco_stuff_sample

    return coco_stuff_sample()


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `spade-rt ARGS` in a fresh interpreter, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "spade_rt.cli", *map(str, args)], capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"spade-rt {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture
def cli():
    return run_cli


def cli_in_process(*argv) -> tuple[int, str]:
    """`spade-rt ARGV` in this process: (exit status, stderr)."""
    import contextlib
    import io

    from spade_rt.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            status = exc.code
    return status, err.getvalue()


def run_in_threads(worker, n: int) -> list:
    """``worker(0)`` .. ``worker(n - 1)``, each in a thread of its own, all at once; their results in order. The
    first exception a worker raised is raised here, once every thread has ended."""
    import threading

    results: list = [None] * n
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            results[k] = worker(k)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def one_line(status: int, err: str, *words: str, expected: int = 1) -> str:
    """The contract of a refusal: exit ``expected``, one line on stderr holding ``words``, no traceback."""
    lines = err.strip().splitlines()
    assert status == expected, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def gpu_available() -> str | None:
    """None if an NVIDIA GPU answers (through cuda-python), else the reason: the skip message of every
    `gpu` test. Tests that also need TensorRT, or onnxruntime-gpu, check for it themselves
    (``tensorrt_for_this_gpu``): the lent H100s have a GPU and no TensorRT that runs there."""
    try:
        from spade_rt.engines.cuda import Cuda

        Cuda()
    except Exception as exc:
        return f"no usable NVIDIA GPU here: {exc}"
    return None


def tensorrt_for_this_gpu() -> str | None:
    """None if a TensorRT that runs engines on this GPU is installed, else why not (a skip message)."""
    try:
        from spade_rt.engines.adapter import TensorRT
        from spade_rt.engines.cuda import Cuda

        trt = TensorRT.load("auto")
        cc = Cuda().info.compute_capability
    except Exception as exc:
        return f"no TensorRT / GPU here: {exc}"
    if not trt.supports_gpu(cc):
        return f"{trt.module_name} does not run on this GPU (compute capability {cc})"
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            reason = reason or gpu_available() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


# ---- the serve tests' shared fixtures (helpers: tests/serve_support.py) ---------------------------------------
@pytest.fixture(scope="module")
def demo_graph() -> Path:
    """The embedded demo model's graph in the session cache, as `spade-rt serve` without MODEL serves it."""
    from serve_support import demo_graph_path

    return demo_graph_path()


@pytest.fixture(scope="module")
def demo_synth(demo_graph):
    """The reference for the server's pictures: ``Synthesizer`` on the same graph, in the test process."""
    from spade_rt.runtime.synthesizer import Synthesizer

    with Synthesizer(demo_graph) as synth:
        yield synth


def require_tools(missing: list[str], what: str, skip_var: str) -> None:
    """A test that needs real tools (a browser, node, onnxruntime-web) fails without them, naming each one
    missing, unless ``skip_var=1`` says to skip it knowingly (a skip is never counted as a pass)."""
    if not missing:
        return
    message = f"{what} {' and '.join(missing)}"
    if os.environ.get(skip_var) == "1":
        pytest.skip(f"{message} (skipped: {skip_var}=1)")
    pytest.fail(f"{message}; set {skip_var}=1 to skip it knowingly")


def ort_web_dist(optional: bool = False) -> Path | None:
    """onnxruntime-web's files, as `npm ci --prefix web` installs them (what `spade-rt web --ort-web` takes).
    Missing: the test fails, or with SPADE_RT_SKIP_BROWSER=1 is skipped, or (``optional``) gets None and goes
    on without the web part."""
    dist = Path(__file__).resolve().parents[1] / "web" / "node_modules" / "onnxruntime-web" / "dist"
    if optional and not dist.is_dir() and os.environ.get("SPADE_RT_SKIP_BROWSER") == "1":
        return None
    require_tools([] if dist.is_dir() else ["onnxruntime-web (npm ci --prefix web)"], "`spade-rt web` needs",
                  "SPADE_RT_SKIP_BROWSER")  # fmt: skip
    return dist


@contextlib.contextmanager
def building_from_the_checkout():
    """Held while pip builds spade-rt from this checkout: setuptools builds in the tree (``build/``,
    ``*.egg-info``), so two tests building at once (the suite runs in two processes) take turns."""
    name = f"spade-rt-build-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}.lock"  # one per checkout
    with open(Path(tempfile.gettempdir()) / name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
