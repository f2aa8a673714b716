"""Many label maps in, many pictures out: folder mode of `spade-rt synthesize`, batched, with a progress bar."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from spade_rt.errors import InputError
from spade_rt.images import save_output
from spade_rt.labels import load_inputs
from spade_rt.runtime.spec import ModelSpec
from spade_rt.runtime.synthesizer import Synthesizer
from spade_rt.validation import API, Voice, check_int_option, check_seed

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff"}  # lossless: label maps must not be JPEG


def natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


LOSSY_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WebP"}  # pictures whose ids compression would change


def list_label_maps(directory: Path) -> list[Path]:
    files = sorted((p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not files:
        raise InputError(f"no label maps (.png, .bmp, .tif) in {directory}")
    return files


def skipped_files(directory: Path) -> list[str]:
    """'NAME (why)' for each file of ``directory`` that folder mode does not read (hidden files aside)."""
    skipped = []
    for p in sorted(directory.iterdir(), key=natural_key):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() in IMAGE_SUFFIXES:
            continue
        lossy = LOSSY_SUFFIXES.get(p.suffix.lower())
        skipped.append(f"{p.name} ({lossy}, lossy: its ids would be changed)" if lossy else f"{p.name} (not a picture)")
    return skipped


def plural(n: int, noun: str) -> str:
    """'1 image', '2 images'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def pair_instances(labels: list[Path], instance_dir: Path | None) -> list[Path | None]:
    if instance_dir is None:
        return [None] * len(labels)
    by_stem = {p.stem: p for p in instance_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    missing = [p.name for p in labels if p.stem not in by_stem]
    if missing:
        raise InputError(
            f"no instance map in {instance_dir} for {missing[0]}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    return [by_stem[p.stem] for p in labels]


def check_folder(
    spec: ModelSpec,
    labels_dir: Path,
    instance_dir: Path | None = None,
    *,
    resize: bool = True,
    palette: str | None = None,
    max_pixels: int | None = None,
    voice: Voice = API,
) -> tuple[list[Path], list[Path | None], list[tuple[int, ...]], Callable]:
    """Read and check every map of a folder (and its instance map) for a model of ``spec``, writing nothing.

    `spade-rt synthesize` calls it with the spec of the model's header before the model is loaded, and
    ``synthesize_folder`` again before the first picture. Returns (label maps, their instance maps, the ids'
    shapes, the function that reads one pair)."""
    labels = list_label_maps(labels_dir)
    instances = pair_instances(labels, instance_dir)
    lspec = spec.labels
    dynamic = spec.dynamic_multiple  # a dynamic graph takes each map at its own size
    if not lspec.use_instance:
        instances = [None] * len(labels)  # said once by the caller, not once per map

    def read(label: Path, instance: Path | None):
        return load_inputs(
            lspec,
            label,
            instance,
            resize,
            palette,
            note_missing_instance=False,
            max_pixels=max_pixels,
            dynamic_multiple=dynamic,
            voice=voice,
        )

    sizes = [read(label, instance)[0].shape for label, instance in zip(labels, instances)]
    return labels, instances, sizes, read


def synthesize_folder(
    synth: Synthesizer,
    labels_dir: Path,
    out_dir: Path,
    *,
    instance_dir: Path | None = None,
    fmt: str = "png",
    batch_size: int = 1,
    z: np.ndarray | None = None,
    seed: int = 0,
    resize: bool = True,
    palette: str | None = None,
    progress: bool = True,
    max_pixels: int | None = None,
    voice: Voice = API,
) -> list[Path]:
    """Every label map of ``labels_dir`` -> ``out_dir/<stem>.<fmt>``; VAE models use one z for all (one style).
    Maps over ``max_pixels`` are refused from their header (``spade_rt.labels.load_inputs``).

    Every map (and instance map) is read and checked before the first picture is written, so a bad map
    stops the run with nothing written; ``out_dir`` is created only then (and removed again, if this call
    created it, when the run fails before writing anything).
    """
    if fmt not in ("png", "npy"):
        raise InputError(f"{voice.say('format', fmt)}: expected png or npy")
    check_int_option("batch_size", batch_size, 1, None, voice, "a number of maps per call")
    check_seed(seed, voice)
    labels, instances, sizes, read = check_folder(
        synth.spec, labels_dir, instance_dir, resize=resize, palette=palette, max_pixels=max_pixels, voice=voice
    )
    skipped = skipped_files(labels_dir)
    if skipped:  # one line: what was left out, and why (label maps are .png, .bmp or .tif)
        shown_names = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        log.warning("skipped %s in %s: %s; label maps are .png, .bmp or .tif", plural(len(skipped), "file"),
                    labels_dir, shown_names)  # fmt: skip
    spec = synth.spec.labels
    resized = 0 if synth.spec.dynamic_size or not resize else sum(_size(p) != (spec.height, spec.width) for p in labels)
    if resized:
        log.info("resizing %s of %d to the model's %dx%d (nearest)", plural(resized, "map"), len(labels), spec.height,
                 spec.width)  # fmt: skip
    if spec.use_instance and instance_dir is None:
        log.info("no instance map given: using each label map's boundaries as instance edges")
    elif not spec.use_instance and instance_dir is not None:
        log.warning("this model takes no instance edges: ignoring %s", instance_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    if synth.spec.use_vae and z is None:
        z = synth.make_z(1, seed)
    written: list[Path] = []
    try:
        with tqdm(total=len(labels), desc="synthesize", unit="img", disable=None if progress else True) as bar:
            for chunk in _chunks(list(zip(labels, instances)), sizes, batch_size):
                maps = [read(lab, inst) for lab, inst in chunk]
                ids = np.stack([m[0] for m in maps])
                edges = np.stack([m[1] for m in maps]) if synth.spec.uses_edges else None
                zz = None if z is None else np.repeat(z.reshape(1, -1), len(chunk), axis=0)
                images = synth(ids, edges=edges, z=zz, output="float" if fmt == "npy" else "uint8")
                for (lab, _), image in zip(chunk, images):
                    written += save_output(out_dir / f"{lab.stem}.{fmt}", image[None])
                bar.update(len(chunk))
    except BaseException:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    log.info("wrote %s to %s", plural(len(written), "image"), out_dir)
    return written


def _size(path: Path) -> tuple[int, int]:
    """(H, W) of a picture, from its header."""
    with Image.open(path) as im:
        return im.height, im.width


def _chunks(items: list, sizes: list, batch_size: int) -> list[list]:
    """Consecutive runs of at most ``batch_size`` items of one size (a dynamic graph's maps keep theirs)."""
    chunks: list[list] = []
    for item, size in zip(items, sizes):
        if chunks and len(chunks[-1]) < batch_size and chunks[-1][0][1] == size:
            chunks[-1].append((item, size))
        else:
            chunks.append([(item, size)])
    return [[item for item, _ in chunk] for chunk in chunks]
