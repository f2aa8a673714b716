"""The demo model that ships in the package, and every ONNX graph made from a spade-rt model for the commands.

One home for both, torch-free at import:

- **The shipped model**: ``spade_rt/assets/landscape_demo.safetensors`` (trained by
  `spade-rt train --preset landscape ...`, docs/training.md), ``demo_model()``.
- **The shipped graph**: the demo's CPU graph (``SHIPPED``: dedup, fp32, batches 1..8, the graph `spade-rt demo`,
  `spade-rt serve` and `spade-rt web` use on CPUs) is package data too, ``assets/landscape_demo-dedup.onnx``,
  with ``assets/landscape_demo-dedup.json`` recording the SHA-256 of the model it was exported from and of the
  graph itself. It is used only while both hashes match (checked on every use), so a plain
  ``pip install 'spade-rt[ort]'`` runs the demo, the server and the static site without torch.
  ``tests/test_demo_model.py`` checks that it equals a fresh export of the shipped model, byte for byte;
  ``python -m spade_rt.demo_model --refresh`` remakes it (with the toolchain).
- **The cache of exported graphs**: any other graph (the static graph, other batch ranges, a user's model for
  `spade-rt web`) is exported once, verified against the PyTorch network, into the per-user cache
  (``spade_rt.cache.built_dir``) under a name keyed by the model's content hash and the graph options
  (``<stem>-<sha256[:16]>-<graph>-b<min>-<opt>-<max>.onnx``): a changed model is a new entry, never a stale hit.
  The export runs in a child `spade-rt export` (so the caller never maps torch: a server stays small), which
  writes through ``atomic_path`` (a temporary name renamed into place: a process killed at any moment leaves
  either no entry or a whole one). Two processes that need the same entry at once take turns on a lock file
  beside it (``fcntl.flock``, released by the kernel if its holder dies); the second finds the entry made.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from spade_rt.errors import ExportError, InputError
from spade_rt.io_utils import atomic_write_json, check_output_dir, sha256_file, sweep_dead_temporaries

log = logging.getLogger("spade_rt")

DEMO_MODEL = "assets/landscape_demo.safetensors"
DEMO_NAME = "landscape demo (embedded)"  # how the server and the static site name it


@dataclass(frozen=True)
class GraphRequest:
    """The graph options a cached export is keyed by (besides the model's content): `spade-rt export`'s
    ``--graph`` (static or dedup) and ``--batch MIN:OPT:MAX``; the rest are export's defaults (fp32, float
    output)."""

    graph: str = "dedup"
    batch: tuple[int, int, int] = (1, 1, 8)

    @property
    def key(self) -> str:
        return f"{self.graph}-b{'-'.join(str(b) for b in self.batch)}"

    def export_argv(self) -> list[str]:
        return ["--graph", self.graph, "--batch", ":".join(str(b) for b in self.batch)]

    def to_dict(self) -> dict:
        return {"graph": self.graph, "batch": list(self.batch)}


# the demo's CPU graph: what the wheel ships (assets/landscape_demo-dedup.onnx)
SHIPPED = GraphRequest("dedup", (1, 1, 8))
SHIPPED_GRAPH = "assets/landscape_demo-dedup.onnx"
SHIPPED_RECORD = "assets/landscape_demo-dedup.json"  # {"model_sha256", "graph_sha256", "options"}


def _asset(name: str) -> Path:
    return Path(str(resources.files("spade_rt").joinpath(name)))


def demo_model() -> Path:
    """The shipped demo model (a spade-rt safetensors file); InputError when the installation lacks it."""
    path = _asset(DEMO_MODEL)
    if not path.is_file():
        raise InputError(f"the embedded demo model is missing ({path}): reinstall spade-rt")
    return path


def fastest_graph_kind() -> str:
    """The fastest exact graph for this machine's ONNX Runtime: ``dedup`` on CPUs (the demo model: 37 ms vs 88-108
    ms per picture for the static graph on 2 cores, docs/serving.md), ``static`` where the CUDA provider runs it."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "dedup"
    return "static" if "CUDAExecutionProvider" in ort.get_available_providers() else "dedup"


def demo_graph(graph_kind: str | None = None, cache_dir: str | Path | None = None, *, purpose: str = "demo") -> Path:
    """The demo model's graph (``graph_kind``: static or dedup; default the fastest for this machine) with
    batches of 1..8: the shipped one when it is the one asked for, else the cached export (made once).

    Where the toolchain is missing and the static graph was asked for by default (ONNX Runtime with CUDA), the
    shipped dedup graph runs instead (exact too, slower there): the small install still runs."""
    request = GraphRequest(graph_kind or fastest_graph_kind(), SHIPPED.batch)
    if graph_kind is None and request != SHIPPED and not toolchain_installed() and shipped_graph_for(request=SHIPPED):
        log.info(
            "the %s graph needs the toolchain to export; running the shipped %s graph", request.graph, SHIPPED.graph
        )
        request = SHIPPED
    return exported_graph(demo_model(), request, cache_dir, purpose=purpose)


def exported_graph(
    model: str | Path, request: GraphRequest, cache_dir: str | Path | None = None, *, purpose: str = "demo"
) -> Path:
    """The ONNX graph of the spade-rt model ``model`` for ``request``: the shipped graph when it matches (same
    model content, same options), else the cache entry keyed by the model's content and the options, exported
    (verified) in a child `spade-rt export` when it is missing. ``purpose`` names the command in the message
    when the toolchain is missing."""
    from spade_rt.cache import built_dir

    model = Path(model)
    digest = sha256_file(model)
    shipped = shipped_graph_for(digest, request)
    if shipped is not None:
        return shipped
    folder = built_dir(cache_dir)
    entry = folder / f"{model.stem}-{digest[:16]}-{request.key}.onnx"
    sweep_dead_temporaries(folder, folder=True)  # what an export killed while writing left behind
    if entry.is_file():
        return entry
    from spade_rt.runtime.registry import require_toolchain

    require_toolchain(f"{purpose} (exporting {model.name} to the {request.graph} graph)")
    check_output_dir(folder, "the cache folder (--cache-dir, $SPADE_RT_CACHE)")
    with _entry_lock(entry):
        if entry.is_file():  # made by another process while this one waited
            return entry
        log.info(
            "exporting %s to the %s graph, verified against the PyTorch network (once): %s",
            model.name,
            request.graph,
            entry,
        )
        _export_in_child(model, entry, request)
    return entry


def shipped_graph_for(model_sha256: str | None = None, request: GraphRequest = SHIPPED) -> Path | None:
    """The shipped graph when it is the graph of ``request`` for the model with ``model_sha256`` (default: the
    shipped model) and its bytes are the ones recorded; None otherwise (a damaged one is logged)."""
    graph, record = _asset(SHIPPED_GRAPH), _asset(SHIPPED_RECORD)
    if request != SHIPPED or not graph.is_file() or not record.is_file():
        return None
    try:
        recorded = json.loads(record.read_text())
    except (OSError, ValueError):
        log.warning("the shipped demo graph's record %s is unreadable: exporting instead", record)
        return None
    if model_sha256 is None:
        model_sha256 = sha256_file(demo_model())
    if not isinstance(recorded, dict) or recorded.get("model_sha256") != model_sha256:
        return None
    if recorded.get("options") != SHIPPED.to_dict() or recorded.get("graph_sha256") != sha256_file(graph):
        log.warning(
            "the shipped demo graph %s does not match its record: exporting instead (reinstall spade-rt)", graph
        )
        return None
    return graph


def toolchain_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "safetensors", "onnx"))


@contextlib.contextmanager
def _entry_lock(entry: Path) -> Iterator[None]:
    """An exclusive lock on ``<entry>.lock`` (POSIX flock; the kernel releases it when its holder dies, even by
    SIGKILL). Where flock is missing (Windows) no lock: two exports then both write whole files, one wins."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.with_name(entry.name + ".lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is exporting %s", entry)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _export_in_child(model: Path, out: Path, request: GraphRequest) -> None:
    """`spade-rt export MODEL -o OUT` in a child interpreter (torch never loads in this process)."""
    argv = ["export", str(model), "-o", str(out), *request.export_argv(), "--verify-samples", "1", "-q"]
    proc = subprocess.run([sys.executable, "-m", "spade_rt.cli", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ExportError(f"exporting {model.name} to the {request.graph} graph failed: {last}")


def refresh_shipped_graph() -> Path:
    """Export the shipped graph again from the shipped model into the package's assets (a checkout, with the
    toolchain) and record both hashes. ``python -m spade_rt.demo_model --refresh``."""
    import tempfile

    from spade_rt.io_utils import atomic_path

    model, graph = demo_model(), _asset(SHIPPED_GRAPH)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / graph.name
        _export_in_child(model, fresh, SHIPPED)
        with atomic_path(graph) as out:
            out.write_bytes(fresh.read_bytes())
    record = {"model_sha256": sha256_file(model), "graph_sha256": sha256_file(graph), "options": SHIPPED.to_dict()}
    atomic_write_json(_asset(SHIPPED_RECORD), record)
    return graph


if __name__ == "__main__":
    if sys.argv[1:] != ["--refresh"]:
        sys.exit("usage: python -m spade_rt.demo_model --refresh  (exports the shipped demo graph again)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("wrote %s", refresh_shipped_graph())
