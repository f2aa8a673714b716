"""What the painter's browser mode runs on: the onnxruntime-web files and the graph offered to browsers.

onnxruntime-web comes from the npm registry, pinned by ``web/package.json`` + ``web/package-lock.json`` in the
checkout (``npm ci --prefix web``; docs/serving.md, "Browser mode"). Nothing of it is committed or shipped in
the wheel; where the files are not found, the painter still works in server mode and says why the browser
switch is unavailable. Search order for the folder holding the files (onnxruntime-web's ``dist/``):

1. ``--ort-web DIR`` (``spade-rt serve``, ``spade-rt web``);
2. ``$SPADE_RT_ORT_WEB``;
3. the checkout's ``web/node_modules/onnxruntime-web/dist/`` (what ``npm ci --prefix web`` makes).

A folder named by 1 or 2 that lacks the files is a configuration error (one line); ``off`` there turns browser
mode off; a checkout without the files only leaves browser mode unavailable. Only the files named here are
ever served, by their fixed names.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from spade_rt.errors import ConfigError

log = logging.getLogger(__name__)

ORT_WEB_VERSION = "1.30.0"  # web/package.json pins this; the lockfile pins its integrity hash
ENV = "SPADE_RT_ORT_WEB"
# the WASM build (any browser), and the WebGPU build (used where the browser offers a real adapter)
WASM_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
WEBGPU_FILES = ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
MEDIA_TYPES = {".mjs": "text/javascript", ".wasm": "application/wasm"}
NPM_STEP = "npm ci --prefix web"


def checkout_dist() -> Path:
    """Where ``npm ci --prefix web`` puts the files in a checkout (an editable install runs from it)."""
    return Path(__file__).resolve().parents[2] / "web" / "node_modules" / "onnxruntime-web" / "dist"


@dataclass(frozen=True)
class WebRuntime:
    """The onnxruntime-web files found (``files``: name -> path), or why there are none (``reason``)."""

    folder: Path | None
    files: dict[str, Path] = field(default_factory=dict)
    version: str | None = None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.folder is not None

    @property
    def webgpu(self) -> bool:
        return all(name in self.files for name in WEBGPU_FILES)

    def describe(self) -> str:
        return f"onnxruntime-web {self.version or '(version unknown)'}"


def _files_in(folder: Path) -> dict[str, Path]:
    return {name: folder / name for name in (*WASM_FILES, *WEBGPU_FILES) if (folder / name).is_file()}


def _version(folder: Path) -> str | None:
    try:
        return json.loads((folder.parent / "package.json").read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return None


def find_runtime(explicit: str | Path | None = None) -> WebRuntime:
    """The onnxruntime-web files by the documented search order (module docstring)."""
    named = [(str(explicit), "--ort-web")] if explicit else []
    if os.environ.get(ENV):
        named.append((os.environ[ENV], f"${ENV}"))
    if named and named[0][0] == "off":
        return WebRuntime(None, reason=f"browser mode is off here ({named[0][1]} off)")
    if named:
        where, what = named[0]
        folder = Path(where).expanduser()
        files = _files_in(folder)
        missing = [n for n in WASM_FILES if n not in files]
        if missing:
            raise ConfigError(
                f"{what} {where}: expected onnxruntime-web's dist/ folder holding {', '.join(WASM_FILES)}; "
                f"missing {', '.join(missing)} (`{NPM_STEP}` in the checkout puts them in "
                "web/node_modules/onnxruntime-web/dist/)"
            )
    else:
        folder = checkout_dist()
        files = _files_in(folder)
        if any(n not in files for n in WASM_FILES):
            return WebRuntime(
                None,
                reason=f"onnxruntime-web is not installed here: run `{NPM_STEP}` in the spade-rt checkout, "
                f"or point ${ENV} at its dist/ folder (docs/serving.md, Browser mode)",
            )
    version = _version(folder)
    if version is not None and version != ORT_WEB_VERSION:
        log.warning("onnxruntime-web %s in %s: spade-rt is tested with %s", version, folder, ORT_WEB_VERSION)
    return WebRuntime(folder.resolve(), files, version)


@dataclass(frozen=True)
class BrowserOffer:
    """What `spade-rt serve` offers the painter's browser mode: the runtime files and one graph, or why not."""

    runtime: WebRuntime
    graph: Path | None
    graph_kind: str | None = None  # static or dedup (the graph's spec says)
    reason: str | None = None  # why there is no graph

    @property
    def available(self) -> bool:
        return self.runtime.available and self.graph is not None

    def describe(self) -> dict:
        reason = self.runtime.reason if not self.runtime.available else self.reason
        return {
            "available": self.available,
            "reason": None if self.available else reason,
            "runtime": self.runtime.describe() if self.runtime.available else None,
            "webgpu": self.runtime.webgpu,
            "graph": self.graph_kind if self.graph is not None else None,
            "graph_bytes": self.graph.stat().st_size if self.graph is not None else None,
        }


def graph_spec(graph: Path, what: str = "--browser-graph"):
    """The ModelSpec an ONNX graph of `spade-rt export` carries; ConfigError (one line) for anything else."""
    from spade_rt.errors import SpadeRtError
    from spade_rt.runtime.model_kind import model_kind
    from spade_rt.runtime.onnxruntime_backend import make_session, session_strings
    from spade_rt.runtime.spec import SPEC_KEY, spec_from_onnx_metadata

    try:
        kind = model_kind(graph) if graph.is_file() else "missing"
    except SpadeRtError:
        kind = "unknown"
    if kind != "onnx":
        found = "no such file" if kind == "missing" else "not an ONNX graph"
        raise ConfigError(f"{what} {graph}: {found}; expected an ONNX graph exported by `spade-rt export`")
    try:
        meta = session_strings(make_session(graph, providers=["CPUExecutionProvider"]), str(graph))[0]
        if SPEC_KEY not in meta:
            raise ConfigError("no spade-rt spec")
        spec = spec_from_onnx_metadata(meta, str(graph))
    except (SpadeRtError, OSError, RuntimeError) as exc:
        raise ConfigError(
            f"{what} {graph}: expected an ONNX graph exported by `spade-rt export` ({str(exc)[:100]})"
        ) from None
    return spec


def check_browser_graph(graph: Path, served_spec) -> str | None:
    """The graph kind (static / dedup) of an ONNX graph for browsers; ConfigError unless it takes the same maps
    as the served model (size, ids, instance edges, style input)."""
    spec = graph_spec(graph)
    a, b = spec.labels, served_spec.labels
    same = (a.height, a.width, a.num_label_ids, a.use_instance, spec.use_vae) == (
        b.height,
        b.width,
        b.num_label_ids,
        b.use_instance,
        served_spec.use_vae,
    )
    if not same:
        raise ConfigError(
            f"--browser-graph {graph}: takes {a.width}x{a.height} maps of {a.num_label_ids} ids; the served model "
            f"takes {b.width}x{b.height} of {b.num_label_ids} (export the browser graph from the same model)"
        )
    return (spec.extra.get("graph_options") or {}).get("graph")
