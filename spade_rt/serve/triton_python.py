"""The model that Triton's python backend runs for a repository of ``spade-rt triton --backend python``.

Each written ``REPO/NAME/1/model.py`` is one import of ``TritonPythonModel`` from here, so the code that runs
inside Triton is the installed spade-rt's (its version is checked against the one that wrote the repository).
The config's ``parameters`` say what an instance is:

    spade_rt_role = synthesize   ``labels`` uint8/int32 (N, H, W) ids [+ ``edges`` uint8 (N, H, W), optional;
                                 + ``z`` float32 (N, z_dim)] -> ``image`` uint8 (N, H, W, 3): a ``Synthesizer``
                                 on the graph or engine in ``1/`` (``spade_rt_model``), one backend call per
                                 Triton batch
    spade_rt_role = png          ``label_png`` bytes (N, 1) [+ ``instance_png``, ``z``, optional] -> ``image``
                                 uint8 (N, H, W, 3) and ``image_png`` bytes (N, 1): reads the PNGs as
                                 ``spade-rt synthesize`` does (ids or the preset's palette colours), then asks
                                 the synthesize model (``spade_rt_target``) through Triton (BLS), so its dynamic
                                 batching and instances serve both

Every request goes through ``spade_rt.labels`` (resize, 255 -> dontcare, id checks, instance edges) on its
own, so a bad request gets its own Triton error (the one-line spade-rt message) and the others in the same
batch are served; the model stays loaded. Triton itself refuses wrong dtypes and shapes (the config's).

Only Triton's python backend stub imports this module (``triton_python_backend_utils`` exists only there).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from spade_rt import __version__
from spade_rt.errors import InputError, SpadeRtError
from spade_rt.labels import prepare_inputs, read_instance_map, read_label_ids
from spade_rt.limits import pixel_limit
from spade_rt.runtime.spec import EDGES, IMAGE, LABELS, Z

log = logging.getLogger("spade_rt.triton")

LABEL_PNG, INSTANCE_PNG, IMAGE_PNG = "label_png", "instance_png", "image_png"  # the PNG model's tensors
SIDECAR = "spade_rt.json"  # beside config.pbtxt (spade_rt.serve.triton.SIDECAR)


class _NamedBytes(io.BytesIO):
    """A request's PNG bytes that name themselves in errors (Pillow quotes the file object's repr)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def _optional(pb, request, name: str) -> np.ndarray | None:
    tensor = pb.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    """Triton's python-backend interface: initialize, execute (a list of requests), finalize."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb  # only inside Triton's stub

        self.pb = pb
        config = json.loads(args["model_config"])
        params = _parameters(config)
        self.name = config["name"]
        self.role = params.get("spade_rt_role", "synthesize")
        folder = Path(args["model_repository"])
        sidecar = folder / SIDECAR
        written = json.loads(sidecar.read_text()).get("spade_rt") if sidecar.is_file() else None
        if written not in (None, __version__):
            log.warning("%s was written by spade-rt %s; this is spade-rt %s", self.name, written, __version__)
        self.spec = None
        self.synth = None
        if self.role == "synthesize":
            from spade_rt.runtime.synthesizer import Synthesizer

            model = folder / args["model_version"] / params["spade_rt_model"]
            gpu = args.get("model_instance_kind") == "GPU"
            device = int(args.get("model_instance_device_id") or 0)
            if params.get("spade_rt_kind") == "engine":
                options: dict[str, Any] = {"device": device}
            elif gpu:
                options = {"backend": "onnxruntime", "device_id": device}  # the CUDA provider where installed
            else:
                options = {"backend": "onnxruntime", "providers": ["CPUExecutionProvider"]}
                if params.get("spade_rt_threads"):
                    options["threads"] = int(params["spade_rt_threads"])
            tier = params.get("spade_rt_tier", "auto")  # spade_rt.runtime.tiers; half runs on OpenVINO (CPU)
            if tier == "half":
                options = {"threads": int(params["spade_rt_threads"])} if params.get("spade_rt_threads") else {}
                options["backend"] = "openvino"
            self.synth = Synthesizer(model, tier=tier, **options)
            self.spec = self.synth.spec
        elif self.role == "png":
            from spade_rt.palettes import palette_for
            from spade_rt.runtime.spec import spec_from_dict

            self.spec = spec_from_dict(json.loads(params["spade_rt_spec"]), f"{self.name} config.pbtxt")
            self.target = params["spade_rt_target"]
            self.palette = palette_for(self.spec.preset)
            self.max_batch = int(config.get("max_batch_size") or 1)
        else:
            raise InputError(f"{self.name}: spade_rt_role {self.role!r}: expected synthesize or png")
        log.info("%s (%s) ready: spade-rt %s, %s", self.name, self.role, __version__, self.spec.preset)

    # ---- the synthesize model -------------------------------------------------------------------------------
    def _prepare(self, labels: np.ndarray, edges: np.ndarray | None, source: str):
        """One request's arrays -> (model ids, edges or None), through the label pipeline; SpadeRtError if bad."""
        spec = self.spec
        if spec.dynamic_size:
            h, w = labels.shape[-2:]
            limit = pixel_limit(spec.labels.height, spec.labels.width)
            if h * w > limit:
                raise InputError(f"{source}: {h}x{w} is more than the {limit} pixels accepted")
        if edges is not None and not spec.uses_edges:
            raise InputError(f"{self.name} takes no {EDGES}")
        return prepare_inputs(labels, spec.labels, edges=edges, resize=False, dynamic_multiple=spec.dynamic_multiple,
                              source=source)  # fmt: skip

    def _synthesize(self, requests) -> list:
        pb = self.pb
        responses: list = [None] * len(requests)
        # group the good requests by picture size (a dynamic-size graph takes one size per call)
        groups: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray | None, np.ndarray | None]]] = {}
        for i, request in enumerate(requests):
            try:
                labels = pb.get_input_tensor_by_name(request, LABELS).as_numpy()
                ids, edges = self._prepare(labels, _optional(pb, request, EDGES), f"request {LABELS}")
                z = _optional(pb, request, Z) if self.spec.use_vae else None
                groups.setdefault(ids.shape[-2:], []).append((i, ids, edges, z))
            except SpadeRtError as exc:
                responses[i] = self._error(exc)
        for members in groups.values():
            ids = np.concatenate([m[1] for m in members])
            edges = None if members[0][2] is None else np.concatenate([m[2] for m in members])
            z = None if members[0][3] is None else np.concatenate([m[3] for m in members])
            try:
                images = self.synth(ids, edges=edges, z=z, resize=False)
            except SpadeRtError as exc:
                for m in members:
                    responses[m[0]] = self._error(exc)
                continue
            start = 0
            for i, part, _, _ in members:
                n = part.shape[0]
                responses[i] = pb.InferenceResponse(output_tensors=[pb.Tensor(IMAGE, images[start : start + n])])
                start += n
        return responses

    # ---- the PNG model --------------------------------------------------------------------------------------
    def _read_png(self, data: bytes, instance: bytes | None, source: str):
        spec = self.spec
        limit = pixel_limit(spec.labels.height, spec.labels.width)
        raw = read_label_ids(_NamedBytes(data, source), self.palette, limit)
        inst = None
        if instance is not None:
            if not spec.uses_edges:
                raise InputError(f"{self.name} takes no {INSTANCE_PNG}")
            inst = read_instance_map(_NamedBytes(instance, source.replace(LABEL_PNG, INSTANCE_PNG)), limit)
        return prepare_inputs(
            raw,
            spec.labels,
            instance=inst,
            resize=not spec.dynamic_size,
            dynamic_multiple=spec.dynamic_multiple,
            source=source,
            instance_source=source.replace(LABEL_PNG, INSTANCE_PNG),
        )

    def _png(self, requests) -> list:
        pb = self.pb
        responses: list = [None] * len(requests)
        items: list[tuple[int, int, np.ndarray, np.ndarray | None, np.ndarray | None]] = []  # request, row, ...
        for i, request in enumerate(requests):
            try:
                pngs = pb.get_input_tensor_by_name(request, LABEL_PNG).as_numpy().reshape(-1)
                insts = _optional(pb, request, INSTANCE_PNG)
                insts = None if insts is None else insts.reshape(-1)
                zs = _optional(pb, request, Z) if self.spec.use_vae else None
                rows = []
                for j, data in enumerate(pngs):
                    source = f"request {LABEL_PNG}[{j}]"
                    ids, edges = self._read_png(bytes(data), None if insts is None else bytes(insts[j]), source)
                    z = zs[j] if zs is not None else (self._default_z() if self.spec.use_vae else None)
                    rows.append((i, j, ids, edges, z))
                items += rows
            except SpadeRtError as exc:
                responses[i] = self._error(exc)
            except (IndexError, ValueError) as exc:  # instance_png or z rows fewer than label_png rows
                responses[i] = self._error(InputError(f"request {INSTANCE_PNG}/{Z}: one row per {LABEL_PNG} ({exc})"))
        images: dict[tuple[int, int], np.ndarray] = {}
        by_size: dict[tuple[int, int], list] = {}
        for item in items:
            by_size.setdefault(item[2].shape, []).append(item)
        for members in by_size.values():
            for k in range(0, len(members), self.max_batch):
                chunk = members[k : k + self.max_batch]
                try:
                    out = self._call_target(chunk)
                except SpadeRtError as exc:
                    for i, *_ in chunk:
                        responses[i] = self._error(exc)
                    continue
                for (i, j, *_), image in zip(chunk, out):
                    images[(i, j)] = image
        for i in range(len(requests)):
            if responses[i] is not None:
                continue
            rows = [images[key] for key in sorted(k for k in images if k[0] == i)]
            if not rows:  # a chunk of it failed
                responses[i] = self._error(InputError(f"{self.name}: request {i} failed"))
                continue
            batch = np.stack(rows)
            encoded = np.array([[_encode_png(image)] for image in batch], dtype=np.object_)
            responses[i] = pb.InferenceResponse(output_tensors=[pb.Tensor(IMAGE, batch), pb.Tensor(IMAGE_PNG, encoded)])
        return responses

    def _default_z(self) -> np.ndarray:
        """VAE models without a ``z``: the z of `spade-rt synthesize`'s default --seed 0."""
        rng = np.random.default_rng(0)
        return rng.standard_normal((self.spec.z_dim,), dtype=np.float32)

    def _call_target(self, chunk: list) -> np.ndarray:
        """One BLS request to the synthesize model for a chunk of prepared maps of one size."""
        pb = self.pb
        inputs = [pb.Tensor(LABELS, np.stack([c[2] for c in chunk]))]
        if self.spec.uses_edges:
            inputs.append(pb.Tensor(EDGES, np.stack([c[3] for c in chunk])))
        if self.spec.use_vae:
            inputs.append(pb.Tensor(Z, np.stack([c[4] for c in chunk]).astype(np.float32)))
        request = pb.InferenceRequest(model_name=self.target, requested_output_names=[IMAGE], inputs=inputs)
        response = request.exec()
        if response.has_error():
            raise InputError(f"{self.target}: {response.error().message()}")
        return pb.get_output_tensor_by_name(response, IMAGE).as_numpy()

    # ---- Triton's entry points ------------------------------------------------------------------------------
    def _error(self, exc: Exception):
        pb = self.pb
        code = getattr(pb.TritonError, "INVALID_ARG", None)
        error = pb.TritonError(str(exc), code) if code is not None else pb.TritonError(str(exc))
        return pb.InferenceResponse(output_tensors=[], error=error)

    def execute(self, requests: list) -> list:
        return self._synthesize(requests) if self.role == "synthesize" else self._png(requests)

    def finalize(self) -> None:
        if self.synth is not None:
            self.synth.close()


def _encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
