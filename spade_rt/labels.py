"""Label and instance map pipeline, exactly as the original SPADE test pipeline feeds its network.

torch-free (numpy + Pillow); the toolchain and the runtime both call it, so a label map becomes the same
ids everywhere. Order of operations, following data/pix2pix_dataset.py and Pix2PixModel.preprocess_input:

1. read the PNG as ids (mode L / P / I;16 / I, one channel);
2. resize with Pillow's NEAREST to the model's (H, W) (the original resizes every map to the crop size);
3. stored 255 ("unlabeled") -> ``label_nc`` (the dontcare id);
4. instance map: same NEAREST resize, then edge = the pixel differs from any 4-neighbour, marked on both
   sides of the boundary.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from spade_rt.errors import InputError, LabelError
from spade_rt.limits import MAX_PIXELS_ENV, pixel_limit
from spade_rt.presets import DONTCARE_STORED_ID, Preset, output_size
from spade_rt.validation import API, Voice

log = logging.getLogger(__name__)

_ID_MODES = {"L", "P", "I;16", "I;16L", "I;16B", "I"}


@dataclass(frozen=True)
class LabelSpec:
    """What a model expects as input: its label ids, whether it takes instance edges, and its size."""

    label_nc: int
    contain_dontcare_label: bool
    use_instance: bool
    height: int
    width: int

    @classmethod
    def from_preset(cls, preset: Preset) -> LabelSpec:
        h, w = output_size(preset.crop_size, preset.aspect_ratio, preset.num_upsampling_layers)
        return cls(preset.label_nc, preset.contain_dontcare_label, preset.use_instance, h, w)

    @property
    def num_label_ids(self) -> int:
        """Accepted ids are 0 .. num_label_ids - 1."""
        return self.label_nc + (1 if self.contain_dontcare_label else 0)

    @property
    def id_dtype(self) -> np.dtype:
        """uint8 when every id fits, else int32 (the dtype of the exported graph's label input)."""
        return np.dtype(np.uint8) if self.num_label_ids <= 256 else np.dtype(np.int32)


ImageSource = str | Path | BinaryIO  # a file, or bytes in a binary file object (its ``name`` names it in errors)


def source_name(source: ImageSource) -> str:
    """How messages name an image: its path, or its file object's ``name``."""
    return str(source) if isinstance(source, str | Path) else str(getattr(source, "name", "<image bytes>"))


@contextlib.contextmanager
def open_image(source: ImageSource, what: str, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """Open an image from its header only and refuse it, before anything is decoded, when it has more than
    ``max_pixels`` pixels (default ``spade_rt.limits.pixel_limit()``). Pillow's own decompression-bomb
    warning and error become this one InputError naming the file, its size and the limit. ``source``: a path
    or a binary file object (an upload held in memory, say)."""
    path = source_name(source)
    limit = pixel_limit(max_pixels=max_pixels)
    if isinstance(source, str | Path):
        source = Path(source)
        if not source.is_file():
            raise InputError(f"{what} not found: {path}")
    hint = f"raise it with --max-pixels, max_pixels= or ${MAX_PIXELS_ENV} if you trust the file"
    try:
        with warnings.catch_warnings():  # our limit replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else None
        if pixels is not None and pixels > limit:
            raise InputError(f"{what} {path} has {pixels} pixels: more than the {limit} accepted ({hint})") from None
        raise InputError(  # a limit raised past Pillow's own (PIL.Image.MAX_IMAGE_PIXELS, twice over)
            f"{what} {path} is refused by Pillow as a decompression bomb ({exc}); Pillow's limit is "
            "PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read {what} {path} as an image: {exc}") from None
    with im:
        w, h = im.size
        if w * h > limit:
            raise InputError(f"{what} {path} is {w}x{h} ({w * h} pixels): more than the {limit} accepted ({hint})")
        yield im


def _open_single_channel(source: ImageSource, what: str, max_pixels: int | None = None) -> np.ndarray:
    """Read a one-channel PNG as an integer array (H, W); refuse colour images with a clear message, and
    images over ``max_pixels`` before decoding them (``open_image``)."""
    path = source_name(source)
    try:
        with open_image(source, what, max_pixels) as im:
            mode = im.mode
            if mode not in _ID_MODES:
                bands = len(im.getbands())
                hint = " or a colour-coded map with a palette (--palette)" if what == "label map" else ""
                raise InputError(
                    f"{what} {path} has {bands} channel(s) (mode {mode}): expected one channel of integer "
                    f"values (PNG mode L, P, I;16 or I){hint}"
                )
            arr = np.array(im)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # Pillow: "invalid palette size" ...
        raise InputError(f"cannot read {what} {path} as an image: {exc}") from None
    if arr.ndim != 2:
        raise InputError(f"{what} {path} decoded to shape {arr.shape}: expected (H, W)")
    if arr.dtype not in (np.uint8, np.int32):
        arr = arr.astype(np.int32)  # 16-bit PNGs; values are kept as stored
    return arr


def read_label_ids(source: ImageSource, palette: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Label PNG -> ids as stored, (H, W) uint8 or int32. Dontcare (255) is not mapped yet.

    A colour-coded (RGB) map is decoded with ``palette`` (coco, ade20k, cityscapes, landscape) when given.
    A map of more than ``max_pixels`` pixels (default ``spade_rt.limits.pixel_limit()``) is refused from its
    header, before decoding.
    """
    path = source_name(source)
    if palette is not None:
        with open_image(source, "label map", max_pixels) as im:
            if im.mode in ("RGB", "RGBA"):
                from spade_rt.palettes import decode_colours

                try:
                    rgb = np.asarray(im.convert("RGB"))
                except (OSError, SyntaxError, ValueError) as exc:
                    raise InputError(f"cannot read label map {path} as an image: {exc}") from None
                return decode_colours(rgb, palette, f"label map {path}")
        if not isinstance(source, str | Path):
            source.seek(0)  # read again below as one channel of ids
    return _open_single_channel(source, "label map", max_pixels)


def read_instance_map(source: ImageSource, max_pixels: int | None = None) -> np.ndarray:
    """Instance PNG -> (H, W) integer map; only equality between neighbours matters downstream. Refused from
    its header when larger than ``max_pixels`` (default ``spade_rt.limits.pixel_limit()``)."""
    return _open_single_channel(source, "instance map", max_pixels)


def resize_nearest(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow NEAREST resize of an integer map (H, W) to (height, width), as torchvision.Resize does."""
    if arr.shape == (height, width):
        return arr
    if arr.dtype == np.uint8:
        return np.asarray(Image.fromarray(arr).resize((width, height), Image.NEAREST))
    if arr.min(initial=0) < np.iinfo(np.int32).min or arr.max(initial=0) > np.iinfo(np.int32).max:
        raise InputError(f"map values {arr.min()}..{arr.max()} do not fit int32")
    im = Image.fromarray(arr.astype(np.int32))
    return np.asarray(im.resize((width, height), Image.NEAREST)).astype(np.int32)


def map_dontcare(ids: np.ndarray, label_nc: int) -> np.ndarray:
    """Stored 255 -> ``label_nc``, as the original dataset does for every preset.

    Label sets with more than 255 classes use 255 as a real class, so nothing is mapped there.
    """
    if label_nc > DONTCARE_STORED_ID:
        return ids
    out = ids.copy()
    out[ids == DONTCARE_STORED_ID] = label_nc
    return out


def instance_edges(inst: np.ndarray) -> np.ndarray:
    """(..., H, W) instance ids -> (..., H, W) uint8 edges: 1 where a 4-neighbour differs (both sides)."""
    edge = np.zeros(inst.shape, dtype=bool)
    horizontal = inst[..., :, 1:] != inst[..., :, :-1]  # (.., H, W-1)
    edge[..., :, 1:] |= horizontal
    edge[..., :, :-1] |= horizontal
    vertical = inst[..., 1:, :] != inst[..., :-1, :]  # (.., H-1, W)
    edge[..., 1:, :] |= vertical
    edge[..., :-1, :] |= vertical
    return edge.astype(np.uint8)


def check_label_ids(ids: np.ndarray, num_label_ids: int, source: str = "label map", no_dontcare: bool = False) -> None:
    """Raise LabelError naming the first unknown ids and how many pixels carry them. ``no_dontcare``: the model
    has no dontcare id, so stored 255 ("unlabeled" in the SPADE datasets) is not mapped and is named as such."""
    if ids.size == 0:
        raise LabelError(f"{source} is empty")
    lo, hi = int(ids.min()), int(ids.max())
    if lo >= 0 and hi < num_label_ids:
        return
    bad = ids[(ids < 0) | (ids >= num_label_ids)]
    values, counts = np.unique(bad, return_counts=True)
    shown = ", ".join(f"{v} ({c} px)" for v, c in zip(values[:5].tolist(), counts[:5].tolist()))
    more = f" and {len(values) - 5} more" if len(values) > 5 else ""
    why = ""
    if no_dontcare and DONTCARE_STORED_ID in values:
        why = f" (id {DONTCARE_STORED_ID} is 'unlabeled' in the SPADE datasets: this model has no dontcare id for it)"
    raise LabelError(
        f"{source} holds label id(s) the model does not know: {shown}{more}; accepted ids are "
        f"0..{num_label_ids - 1}{why}"
    )


def _as_batch(arr: np.ndarray, what: str) -> np.ndarray:
    """(H, W) or (N, H, W) integer array -> (N, H, W) view."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{what} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise InputError(f"{what} must be (H, W) or (N, H, W), got shape {arr.shape}")
    return arr if arr.ndim == 3 else arr[None]


def prepare_label_ids(
    ids: np.ndarray,
    spec: LabelSpec,
    resize: bool = True,
    source: str = "label map",
    dynamic_multiple: int | None = None,
    voice: Voice = API,
) -> np.ndarray:
    """Stored ids (H, W) or (N, H, W) -> model ids of the same rank, in ``spec.id_dtype``, checked.

    The one label pipeline: the CLI, the API (``Synthesizer``), export verification and the benchmark all
    call it, so a map becomes the same ids everywhere. NEAREST resize to the model's size (or, for a graph
    with dynamic size, a check that H and W are multiples of ``dynamic_multiple``), stored 255 -> dontcare,
    every id checked against the model's range.
    """
    ids = np.asarray(ids)
    batch = _as_batch(ids, source)
    h, w = batch.shape[1:]
    if dynamic_multiple is not None:
        if h % dynamic_multiple or w % dynamic_multiple:
            raise InputError(f"{source}: {h}x{w}, but this graph takes sizes in multiples of {dynamic_multiple}")
    elif (h, w) != (spec.height, spec.width):
        if not resize:
            raise InputError(
                f"{source}: {h}x{w}, but the model takes {spec.height}x{spec.width}: {voice.resize_refused()}"
            )
        log.debug("resizing %s %dx%d -> %dx%d (nearest)", source, h, w, spec.height, spec.width)
        batch = np.stack([resize_nearest(b, spec.height, spec.width) for b in batch])
    if spec.contain_dontcare_label:  # without a dontcare id, a stored 255 stays 255 and is refused as such
        batch = map_dontcare(batch, spec.label_nc)
    check_label_ids(batch, spec.num_label_ids, source, no_dontcare=not spec.contain_dontcare_label)
    out = np.ascontiguousarray(batch.astype(spec.id_dtype, copy=False))
    return out if ids.ndim == 3 else out[0]


def prepare_edges(
    inst: np.ndarray,
    spec: LabelSpec,
    resize: bool = True,
    source: str = "instance map",
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Instance map (H, W) or (N, H, W) -> uint8 edge map of the same rank at the labels' size, computed
    after the NEAREST resize (as the original does). ``size``: the labels' (H, W) when it is not the spec's."""
    inst = np.asarray(inst)
    batch = _as_batch(inst, source)
    th, tw = size or (spec.height, spec.width)
    if batch.shape[1:] != (th, tw):
        if not resize:
            raise InputError(f"{source}: {batch.shape[1]}x{batch.shape[2]}, but the labels are {th}x{tw}")
        batch = np.stack([resize_nearest(i, th, tw) for i in batch])
    edges = instance_edges(batch)
    return edges if inst.ndim == 3 else edges[0]


def given_edges(edges: np.ndarray, shape: tuple[int, ...], source: str = "edges") -> np.ndarray:
    """An edge map the caller computed: same shape as the ids, any non-zero is an edge -> uint8 0/1."""
    e = np.asarray(edges)
    e = e if e.ndim == len(shape) else e[None] if e.ndim == len(shape) - 1 else e
    if e.shape != tuple(shape):
        raise InputError(f"{source} must have the labels' shape {tuple(shape)}, got {np.asarray(edges).shape}")
    return np.ascontiguousarray((e != 0).astype(np.uint8))


def prepare_inputs(
    labels: np.ndarray,
    spec: LabelSpec,
    *,
    instance: np.ndarray | None = None,
    edges: np.ndarray | None = None,
    resize: bool = True,
    dynamic_multiple: int | None = None,
    source: str = "labels",
    instance_source: str = "instance map",
    voice: Voice = API,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Stored label ids (+ instance map or edge map) -> (model ids, edges or None), same rank as ``labels``.

    Models with an instance edge channel take ``edges`` as given (non-zero = edge), else edges of
    ``instance`` after its resize, else the label map's own boundaries (what interactive GauGAN front-ends
    do). Models without one refuse both.
    """
    ids = prepare_label_ids(labels, spec, resize, source, dynamic_multiple, voice)
    if not spec.use_instance:
        if instance is not None or edges is not None:
            raise InputError("this model takes no instance map or edges")
        return ids, None
    if edges is not None:
        return ids, given_edges(edges, ids.shape)
    if instance is None:
        return ids, instance_edges(ids)
    inst = np.asarray(instance)
    if inst.ndim != ids.ndim or (inst.ndim == 3 and inst.shape[0] != ids.shape[0]):
        raise InputError(
            f"{instance_source} must be (H, W) or (N, H, W) like the labels {ids.shape}, got shape {inst.shape}"
        )
    (lh, lw), (ih, iw) = np.shape(labels)[-2:], inst.shape[-2:]
    if (ih, iw) != (lh, lw):  # a map of another picture: both are resized alike, so they must match as given
        raise InputError(
            f"{instance_source} is {ih}x{iw} but {source} is {lh}x{lw}: expected the instance map of the same "
            f"picture, {lh}x{lw}"
        )
    return ids, prepare_edges(inst, spec, resize, instance_source, size=ids.shape[-2:])


def load_inputs(
    spec: LabelSpec,
    labels: str | Path,
    instance: str | Path | None = None,
    resize: bool = True,
    palette: str | None = None,
    *,
    note_missing_instance: bool = True,
    note_resize: bool = False,
    max_pixels: int | None = None,
    dynamic_multiple: int | None = None,
    voice: Voice = API,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Label PNG (+ instance PNG) -> (ids (H, W), edges (H, W) uint8 or None), ready for any backend.

    Files are read here; everything else is ``prepare_inputs``. A model that takes instance edges but gets
    no instance map uses the label map's own boundaries; the log says so (unless ``note_missing_instance``
    is False: callers reading many maps say it once themselves); with ``note_resize`` it says when the map was
    resized to the model's size (a command's one map; folder mode counts them). Colour-coded label maps are decoded with
    ``palette``. A graph with a dynamic size (``dynamic_multiple``) takes the map at its own size, as
    ``Synthesizer`` does. Maps larger than ``max_pixels`` are refused from their header (default: 16 times the
    model's size, at least 4096 x 4096, or ``$SPADE_RT_MAX_PIXELS``; see ``spade_rt.limits.pixel_limit``).
    """
    limit = pixel_limit(spec.height, spec.width, max_pixels)
    raw = read_label_ids(labels, palette, limit)
    inst = None
    if spec.use_instance and instance is not None:
        inst = read_instance_map(instance, limit)
    prepared = prepare_inputs(
        raw,
        spec,
        instance=inst,
        resize=resize,
        source=f"label map {labels}",
        instance_source=f"instance map {instance}",
        dynamic_multiple=dynamic_multiple,
        voice=voice,
    )  # notes come after the checks: a bad map gets its one error line, nothing before it
    if note_resize and raw.shape != prepared[0].shape:
        (h, w), (th, tw) = raw.shape, prepared[0].shape
        log.info("label map %s is %dx%d: resized to the model's %dx%d (nearest)", labels, h, w, th, tw)
    if spec.use_instance and instance is None and note_missing_instance:
        log.info("no instance map given: using the label map's boundaries as instance edges")
    elif not spec.use_instance and instance is not None:
        log.warning("this model takes no instance edges: ignoring %s", instance)
    return prepared
