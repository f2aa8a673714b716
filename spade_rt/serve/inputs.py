"""Request bodies and painter frames -> model inputs, through the project's one label pipeline.

Uploaded PNGs are read by ``spade_rt.labels.read_label_ids`` / ``read_instance_map`` (ids, or colours of
the model's palette) and prepared by ``prepare_inputs`` exactly as ``Synthesizer`` and `spade-rt
synthesize` do; painter frames carry raw ids and go straight to ``prepare_inputs``. What fails becomes a
``RequestError`` with an HTTP status, the field at fault and a one-line message.

Wire format of painter frames (both directions over ``/ws``): ``u32 little-endian n`` + ``n`` bytes of
UTF-8 JSON header + payload. Client -> server: ``{"frame": int, "seed": int, "height": H, "width": W,
"dtype": "uint8"|"uint16"}`` + H*W ids (little-endian for uint16). Server -> client: ``{"frame", "batch",
"server_ms", "queue_ms", "compute_ms", "replaced", "format"}`` + the picture (PNG), or ``{"frame",
"error", "status"}`` and no payload.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from spade_rt.errors import ConfigError, InputError, LabelError
from spade_rt.labels import prepare_inputs, read_instance_map, read_label_ids
from spade_rt.palettes import palette_for, preset_colours
from spade_rt.presets import PRESETS
from spade_rt.runtime.spec import ModelSpec
from spade_rt.serve.settings import MAX_FRAME_HEADER
from spade_rt.serve.trust import brief
from spade_rt.validation import MAX_SEED, Voice, check_call_options, check_seed

FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg")}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
FRAME_DTYPES = {"uint8": np.dtype("<u1"), "uint16": np.dtype("<u2")}
# The validation rules' voice for HTTP parameters: named as sent (``seed 7``, ``it takes no seed``).
HTTP = Voice(True, {"seed": "seed", "z": "z", "style": "style"})
SEED_DIGITS = len(str(MAX_SEED)) + 1  # longer text is no seed: refused as text, never parsed as a number


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, the ``field`` at fault, a one-line message.

    The message is cleaned here, once for every refusal: object reprs (``<_io.BytesIO object at 0x...>``)
    are cut out and it is capped at ``MAX_MESSAGE`` characters, so an error never echoes a whole upload or
    leaks the server's internals."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        message = _OBJECT_REPR.sub("the upload", " ".join(str(message).split()))
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def as_json(self) -> dict:
        body = {"error": self.message, "status": self.status}
        if self.field:
            body["field"] = self.field
        return body


MAX_MESSAGE = 300
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Prepared:
    ids: np.ndarray  # (H, W) model ids
    edges: np.ndarray | None
    z: np.ndarray | None


# ---- parameters ------------------------------------------------------------------------------------------
def parse_seed(text: str | None) -> int:
    """A seed parameter -> 0..MAX_SEED by the project's one seed rule (``spade_rt.validation.check_seed``, as
    `synthesize --seed` and ``Synthesizer(seed=)``); absent or empty: 0."""
    if text is None or text == "":
        return 0
    value: int | str = brief(str(text))  # not a number: quoted and bounded in the refusal
    if len(text) <= SEED_DIGITS:
        with contextlib.suppress(TypeError, ValueError):
            value = int(text)
    try:
        return check_seed(value, HTTP)
    except ConfigError as exc:
        raise RequestError(400, str(exc), "seed") from None


def check_seed_applies(spec: ModelSpec, model: str, seed: int) -> None:
    """A seed given for a model without a style input (not a VAE model) is refused, in the words of
    `synthesize --seed` and ``Synthesizer(seed=)`` (``spade_rt.validation.check_call_options``)."""
    try:
        check_call_options(spec, z=None, seed=seed, output="uint8", resize=True, voice=HTTP, name=model)
    except (ConfigError, InputError) as exc:
        raise RequestError(400, str(exc), "seed") from None


def parse_format(text: str | None) -> str:
    fmt = (text or "png").lower()
    if fmt not in FORMATS:
        raise RequestError(400, f"format {brief(str(text))}: expected png or jpeg", "format")
    return "jpeg" if fmt == "jpg" else fmt


def parse_flag(name: str, text: str | None) -> bool:
    value = (text or "").lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise RequestError(400, f"{name} {brief(str(text))}: expected true or false", name)


# ---- maps ------------------------------------------------------------------------------------------------
def png_size(data: bytes, field: str) -> tuple[int, int]:
    """(height, width) from a PNG's header, decoding nothing; anything but a PNG is refused (422)."""
    if not data:
        raise RequestError(400, f"{field}: empty (expected a PNG)", field)
    if not data.startswith(PNG_SIGNATURE):
        raise RequestError(
            422,
            f"{field}: not a PNG (this server reads label and instance maps as PNG only: ids or palette colours)",
            field,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
                w, h = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError, Warning):
        raise RequestError(422, f"{field}: not a readable PNG (its header is damaged)", field) from None
    return h, w


def check_map_size(h: int, w: int, field: str, spec: ModelSpec, resize: bool, max_pixels: int) -> None:
    """The pixel budget, from the header: without ``resize`` the map must be the model's size (a dynamic graph:
    within ``max_pixels``); with it, at most ``max_pixels`` (413, naming the server's limit)."""
    lab = spec.labels
    if not resize and not spec.dynamic_size and (h, w) != (lab.height, lab.width):
        raise RequestError(
            422,
            f"{field}: {h}x{w}, but the model takes {lab.height}x{lab.width} "
            "(send resize=true to resize it with NEAREST)",
            field,
        )
    if w * h > max_pixels:
        raise RequestError(
            413,
            f"{field}: {w}x{h} ({w * h} px) is larger than this server takes ({max_pixels} px, --max-map-pixels)",
            field,
        )


def _read_png(data: bytes, field: str, spec: ModelSpec, resize: bool, max_pixels: int, reader, *args) -> np.ndarray:
    """Header checks first (PNG only, size within budget), then the project's reader, in memory."""
    h, w = png_size(data, field)
    check_map_size(h, w, field, spec, resize, max_pixels)
    upload = io.BytesIO(data)
    upload.name = f"'{field}'"  # what the reader's messages call it
    try:
        return reader(upload, *args, max_pixels=max(w * h, 1))
    except InputError as exc:
        raise RequestError(422, str(exc), field) from None


def read_labels(
    data: bytes, spec: ModelSpec, max_pixels: int, resize: bool = False, field: str = "labels"
) -> np.ndarray:
    """A label PNG (one channel of ids, or colours of the model's palette) -> ids as stored."""
    return _read_png(data, field, spec, resize, max_pixels, read_label_ids, palette_for(spec.preset))


def read_instance(
    data: bytes, spec: ModelSpec, max_pixels: int, resize: bool = False, field: str = "instance"
) -> np.ndarray:
    return _read_png(data, field, spec, resize, max_pixels, read_instance_map)


def prepare(
    spec: ModelSpec,
    make_z,
    raw: np.ndarray,
    instance: np.ndarray | None = None,
    seed: int = 0,
    resize: bool = False,
    source: str = "labels",
) -> Prepared:
    """Stored ids (+ instance map) -> checked model inputs: ``spade_rt.labels.prepare_inputs``, as Synthesizer."""
    try:
        multiple = spec.dynamic_multiple
        ids, edges = prepare_inputs(
            raw, spec.labels, instance=instance, resize=resize, dynamic_multiple=multiple, source=source,
            instance_source="instance",
        )  # fmt: skip
    except LabelError as exc:
        raise RequestError(422, str(exc), source) from None
    except InputError as exc:
        message = str(exc)
        if "allow resizing" in message:
            message = message.split(" (allow resizing")[0] + " (send resize=true to resize it with NEAREST)"
        field = "instance" if "instance" in message else source
        raise RequestError(422, message, field) from None
    z = make_z(1, seed)[0] if spec.use_vae else None
    return Prepared(ids, edges, z)


def encode_picture(rgb: np.ndarray, fmt: str, jpeg_quality: int = 90) -> bytes:
    pil_format, _ = FORMATS[fmt]
    buf = io.BytesIO()
    options = {"quality": jpeg_quality} if pil_format == "JPEG" else {"compress_level": 1}
    Image.fromarray(rgb).save(buf, format=pil_format, **options)
    return buf.getvalue()


def encode_ids(ids: np.ndarray, num_ids: int) -> bytes:
    """Model ids as the painter's buffer holds them: uint8, or uint16 little-endian for more than 256 ids."""
    return np.ascontiguousarray(ids, dtype="<u1" if num_ids <= 256 else "<u2").tobytes()


# ---- painter frames ------------------------------------------------------------------------------------
def pack(header: dict, payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + payload


def unpack(message: bytes) -> tuple[dict, bytes]:
    if len(message) < 4:
        raise RequestError(400, f"frame of {len(message)} bytes: expected a 4-byte header length first", "frame")
    (n,) = struct.unpack_from("<I", message)
    if n > min(len(message) - 4, MAX_FRAME_HEADER):
        raise RequestError(400, f"frame header of {n} bytes does not fit the {len(message)}-byte frame", "frame")
    try:
        header = json.loads(message[4 : 4 + n])
    except (UnicodeDecodeError, ValueError):
        raise RequestError(400, "frame header is not JSON", "frame") from None
    except RecursionError:  # "[[[[...": json's parser recurses per level
        raise RequestError(400, "frame header nests too deeply: expected a flat JSON object", "frame") from None
    if not isinstance(header, dict):
        raise RequestError(400, "frame header is not a JSON object", "frame")
    return header, message[4 + n :]


def frame_ids(header: dict, payload: bytes, spec: ModelSpec) -> tuple[int, int, np.ndarray]:
    """A painter frame -> (frame number, seed, stored ids (H, W)); the size must be the model's (no resize)."""
    frame = header.get("frame")
    if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
        raise RequestError(400, f"frame number {brief(repr(frame))}: expected an integer >= 0", "frame")
    seed = parse_seed(str(header.get("seed", 0)))
    h, w, dtype = header.get("height"), header.get("width"), header.get("dtype", "uint8")
    if not isinstance(dtype, str) or dtype not in FRAME_DTYPES:
        raise RequestError(400, f"frame dtype {brief(repr(dtype))}: expected uint8 or uint16", "dtype")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
        raise RequestError(
            400, f"frame size {brief(repr(h), 20)}x{brief(repr(w), 20)}: expected positive integers", "frame"
        )
    item = FRAME_DTYPES[dtype].itemsize
    if len(payload) != h * w * item:
        raise RequestError(400, f"frame {h}x{w} {dtype} needs {h * w * item} bytes of ids, got {len(payload)}", "frame")
    return frame, seed, np.frombuffer(payload, FRAME_DTYPES[dtype]).reshape(h, w)


# ---- the model, as the painter and GET /v1/model describe it ---------------------------------------------
def describe_model(spec: ModelSpec, *, model: str, kind: str, backend: str, max_batch: int, settings) -> dict:
    """GET /v1/model (and the static site's model.json): the model, its classes, the seed range, the settings'
    sections (``ServeSettings.described``)."""
    sections = settings.described()
    n = spec.labels.num_label_ids
    preset = PRESETS.get(spec.preset)
    names = preset.class_names(n) if preset is not None else [f"class {i}" for i in range(n)]
    colours = preset_colours(spec.preset, n)
    return {
        "model": model,
        "kind": kind,
        "backend": backend,
        "preset": spec.preset,
        "height": spec.labels.height,
        "width": spec.labels.width,
        "num_ids": n,
        "id_dtype": "uint8" if n <= 256 else "uint16",
        "dontcare_id": spec.labels.label_nc if spec.labels.contain_dontcare_label else None,
        "uses_instance": spec.labels.use_instance,
        "use_vae": spec.use_vae,
        "z_dim": spec.z_dim if spec.use_vae else None,
        "precision": spec.precision,
        "graph": (spec.extra.get("graph_options") or {}).get("graph"),  # ONNX graphs: static or dedup
        "dynamic_size": spec.dynamic_size,
        "palette": palette_for(spec.preset),
        "classes": [
            {"id": i, "name": names[i], "colour": "#{:02x}{:02x}{:02x}".format(*map(int, colours[i]))} for i in range(n)
        ],
        "examples": spec.preset == "landscape" and n == 10,  # GET /v1/example: procedural scenes
        "seed": {"min": 0, "max": MAX_SEED},  # VAE models' style seeds and example scenes (spade_rt.validation)
        "batching": {"max_batch": max_batch, **sections["batching"]},  # the model's batch, the settings' delay
        "limits": sections["limits"],  # every ServeSettings field that is a limit (spade_rt/serve/settings.py)
    }
