"""``spade-rt build``: ONNX graph -> TensorRT / TensorRT-RTX engine + JSON manifest.

One code path for both modules (differences live in spade_rt.engines.adapter). Optimisation profiles
come from the batch (and size) ranges export wrote into the graph; a timing cache (TensorRT) is reused across
builds; the builder's progress monitor feeds a progress bar; parser errors name the failing node.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import onnx

from spade_rt import __version__
from spade_rt.engines.adapter import TensorRT
from spade_rt.engines.manifest import MANIFEST_FORMAT, manifest_path
from spade_rt.errors import BuildError, ModelFormatError
from spade_rt.io_utils import atomic_path, atomic_write_bytes, sha256_file
from spade_rt.runtime.spec import SPEC_KEY, spec_from_onnx_metadata

log = logging.getLogger(__name__)


def read_graph(onnx_path: Path) -> tuple[bytes, dict, onnx.ModelProto]:
    """The ONNX bytes, its spade-rt spec and the (weight-less) model proto; clear errors when corrupt."""
    if not onnx_path.is_file():
        raise ModelFormatError(f"ONNX file not found: {onnx_path}")
    data = onnx_path.read_bytes()
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(f"{onnx_path} is not a valid ONNX graph: {first[:200]}") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if SPEC_KEY not in meta:
        raise ModelFormatError(f"{onnx_path} was not written by `spade-rt export` (no {SPEC_KEY} metadata)")
    return data, spec_from_onnx_metadata(meta, str(onnx_path)).extra, model


def profile_shapes(spec: dict, model: onnx.ModelProto) -> dict[str, tuple[tuple, tuple, tuple]]:
    """(min, opt, max) per input from the spec's batch range and size (dynamic H, W: half to twice it)."""
    b = (spec["min_batch"], spec["opt_batch"], spec["max_batch"])
    h, w, cell = spec["height"], spec["width"], spec["size_multiple"]

    def sizes(v: int) -> tuple[int, int, int]:
        if not spec["dynamic_size"]:
            return v, v, v
        return max(cell, (v // 2) // cell * cell), v, v * 2

    hs, ws = sizes(h), sizes(w)
    shapes = {}
    for inp in model.graph.input:
        if inp.name == "z":
            shapes[inp.name] = tuple((b[i], spec["z_dim"]) for i in range(3))
        else:
            shapes[inp.name] = tuple((b[i], hs[i], ws[i]) for i in range(3))
    return shapes


class _ProgressBars:
    """IProgressMonitor -> nested tqdm bars (one per builder phase); never cancels."""

    def __new__(cls, trt_module, enabled: bool):
        from tqdm import tqdm

        class Monitor(trt_module.IProgressMonitor):
            def __init__(self) -> None:
                trt_module.IProgressMonitor.__init__(self)
                self.bars: dict[str, tqdm] = {}

            def phase_start(self, phase_name, parent_phase, num_steps):
                depth = len(self.bars)
                self.bars[phase_name] = tqdm(
                    total=num_steps,
                    desc=("  " * depth) + phase_name,
                    leave=depth == 0,
                    disable=None if enabled else True,  # None: only on a terminal
                    position=depth,
                    unit="step",
                )

            def step_complete(self, phase_name, step):
                bar = self.bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
                return True  # keep building

            def phase_finish(self, phase_name):
                bar = self.bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

        return Monitor()


def parser_errors(parser) -> str:
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = ""
        if err.node() >= 0:
            where = f"node {err.node()} ({err.node_operator() or '?'} {err.node_name() or ''!r}): "
        lines.append(f"{where}{err.desc()}")
    return "; ".join(lines) or "unknown parser error"


def build_engine(
    onnx_path: str | Path,
    output: str | Path,
    *,
    backend: str = "auto",
    workspace: int | None = None,
    compute_capabilities: list[str] | None = None,
    timing_cache: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Parse, configure, build; write the engine and ``engine.json`` atomically. Returns the manifest."""
    t0 = time.perf_counter()
    onnx_path, output = Path(onnx_path), Path(output)
    data, spec, model = read_graph(onnx_path)
    options = spec.get("graph_options")
    if isinstance(options, dict) and options.get("graph") == "dedup":
        raise BuildError(
            f"{onnx_path.name} is a dedup graph (`spade-rt export --graph dedup`): dedup graphs are CPU graphs for "
            "ONNX Runtime (TensorRT has no layer for their Unique op), not for engines; for an engine, "
            f"export the static graph: `spade-rt export MODEL -o {onnx_path.stem}_fp16.onnx --precision fp16` "
            "(--graph static is the default), then build that"
        )
    trt = TensorRT.load(backend)
    errors: list[str] = []
    logger = trt.logger(errors)
    builder = trt.module.Builder(logger)
    network = trt.create_network(builder)
    parser = trt.module.OnnxParser(network, logger)
    if not parser.parse(data, str(onnx_path)):
        raise BuildError(f"{trt.module_name} cannot parse {onnx_path.name}: {parser_errors(parser)}")

    config = builder.create_builder_config()
    trt.set_workspace(config, workspace)
    targets = trt.set_targets(config, compute_capabilities)
    shapes = profile_shapes(spec, model)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache_file = Path(timing_cache) if timing_cache else output.parent / "timing.cache"
    cache = trt.attach_timing_cache(config, cache_file.read_bytes() if cache_file.is_file() else None)
    if cache is None and timing_cache:  # TensorRT-RTX: no tactic timing at build time, so no timing cache
        log.warning(
            "%s has no timing cache (it times no kernels when building; it compiles them on the GPU at the first "
            "run and keeps them in %s.rtxcache): --timing-cache %s is not used",
            trt.module_name,
            output.name,
            timing_cache,
        )
    config.progress_monitor = _ProgressBars(trt.module, progress)

    log.info("building %s with %s %s ...", output.name, trt.module_name, trt.version)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"{trt.module_name} could not build {onnx_path.name}: {'; '.join(errors[-3:]) or 'no reason'}")
    seconds = time.perf_counter() - t0
    if cache is not None:
        atomic_write_bytes(cache_file, bytes(cache.serialize()))

    manifest = _manifest(trt, onnx_path, output, spec, model, shapes, targets, workspace, seconds)
    with atomic_path(output) as tmp_engine, atomic_path(manifest_path(output)) as tmp_manifest:
        with open(tmp_engine, "wb") as f:
            f.write(memoryview(serialized))
        manifest["engine_sha256"] = sha256_file(tmp_engine)
        manifest["engine_bytes"] = tmp_engine.stat().st_size
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info(
        "wrote %s (%.1f MB) in %.1f s, manifest %s",
        output,
        manifest["engine_bytes"] / 1e6,
        seconds,
        manifest_path(output).name,
    )
    return manifest


def _manifest(trt, onnx_path: Path, output: Path, spec: dict, model, shapes: dict, targets, workspace, seconds):
    """``X.engine.json`` but for the engine's hash and size (filled in as it is written): the graph it came from,
    the builder, the GPU targets, IO with the profile's shapes, the spec."""
    device = {}
    if not trt.is_rtx:  # full TensorRT builds for the GPU it runs on: record which
        from spade_rt.engines.cuda import Cuda

        info = Cuda().info
        device = {"device": info.name, "device_compute_capability": info.compute_capability}
    return {
        "format": MANIFEST_FORMAT,
        "engine": output.name,
        "onnx": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "builder": {"module": trt.module_name, "version": trt.version, "backend": trt.backend},
        "target_compute_capabilities": [device["device_compute_capability"]] if device else targets,
        **device,
        "precision": spec["precision"],
        "preset": spec["preset"],
        "label_nc": spec["label_nc"],
        "num_label_ids": spec["label_nc"] + (1 if spec["contain_dontcare_label"] else 0),
        "inputs": {
            i.name: {
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name,
                "min": list(shapes[i.name][0]),
                "opt": list(shapes[i.name][1]),
                "max": list(shapes[i.name][2]),
            }
            for i in model.graph.input
        },
        "outputs": {
            o.name: {"dtype": onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type).name}
            for o in model.graph.output
        },
        "spec": spec,
        "workspace_bytes": workspace,
        "build_seconds": round(seconds, 2),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "spade_rt": __version__,
    }


def network_precisions(onnx_path: str | Path, backend: str = "auto") -> dict[str, dict[str, int]]:
    """Parse a graph with TensorRT and count (input dtype -> output dtype) per layer type: proof of precision."""
    data, _, _ = read_graph(Path(onnx_path))
    trt = TensorRT.load(backend)
    logger = trt.logger([])
    builder = trt.module.Builder(logger)
    network = trt.create_network(builder)
    parser = trt.module.OnnxParser(network, logger)
    if not parser.parse(data):
        raise BuildError(f"cannot parse {onnx_path}: {parser_errors(parser)}")
    counts: dict[str, dict[str, int]] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = str(layer.type).split(".")[-1]
        key = f"{layer.get_input(0).dtype.name}->{layer.get_output(0).dtype.name}" if layer.num_inputs else "const"
        counts.setdefault(kind, {}).setdefault(key, 0)
        counts[kind][key] += 1
    return counts
