"""Training data: the original dataset layouts, the original preprocessing, and the procedural landscapes.

Every sample goes through ``spade_rt.labels`` (NEAREST resize, 255 -> dontcare, instance edges, id checks),
so training sees exactly the ids inference sees. Randomness (crop position, flip) comes from a generator
seeded by (seed, epoch, index), never from global state: a sample is the same in any process, worker or
resumed run, which is what exact resume and 1-vs-N-process equality rest on.

Bad data fails at construction, before any training step, with the file name: unpaired files, label maps
and images of different sizes, unreadable files, ids the preset does not know.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from spade_rt.errors import ConfigError, InputError
from spade_rt.labels import (
    check_label_ids,
    instance_edges,
    map_dontcare,
    open_image,
    read_instance_map,
    read_label_ids,
)
from spade_rt.labels import resize_nearest as resize_ids
from spade_rt.model.config import GeneratorConfig
from spade_rt.training.options import DATASET_MODES, PREPROCESS_MODES
from spade_rt.training.procedural_data import render_scene

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
# the original's defaults per dataset: (preprocess_mode, load_size as a multiple of crop_size)
DATASET_DEFAULTS = {
    "coco": ("resize_and_crop", 286 / 256),
    "ade20k": ("resize_and_crop", 286 / 256),
    "facades": ("resize_and_crop", 286 / 256),
    "custom": ("resize_and_crop", 286 / 256),
    "cityscapes": ("fixed", 1.0),
    "procedural": ("fixed", 1.0),
}


def default_dataset_mode(preset: str) -> str:
    """The layout a preset's data comes in: its own name, or procedural scenes for the landscape preset."""
    return "procedural" if preset == "landscape" else preset


# ---- preprocessing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocess:
    """The original ``get_params`` / ``get_transform``: resize (BICUBIC images, NEAREST maps), crop, flip."""

    mode: str
    load_size: int
    crop_size: int
    aspect_ratio: float
    flip: bool

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESS_MODES:
            raise ConfigError(f"preprocess mode {self.mode!r} is not one of {', '.join(PREPROCESS_MODES)}")
        if "crop" in self.mode and self.aspect_ratio != 1.0:
            raise ConfigError(
                f"preprocess mode {self.mode} makes square crops; aspect ratio {self.aspect_ratio} needs 'fixed'"
            )
        if "crop" in self.mode and self.mode != "crop" and self.load_size < self.crop_size:
            raise ConfigError(f"load size {self.load_size} is smaller than the crop size {self.crop_size}")

    @property
    def output_hw(self) -> tuple[int, int]:
        """(H, W) of every sample (the generator's output size)."""
        if self.mode == "fixed":
            return round(self.crop_size / self.aspect_ratio), self.crop_size
        return self.crop_size, self.crop_size

    def resized_size(self, w: int, h: int) -> tuple[int, int]:
        """(new_w, new_h) after the resize step, as the original computes it."""
        if self.mode == "resize_and_crop":
            return self.load_size, self.load_size
        if self.mode == "scale_width_and_crop":
            return self.load_size, self.load_size * h // w
        if self.mode == "fixed":
            return self.crop_size, round(self.crop_size / self.aspect_ratio)
        return w, h  # crop, none

    def params(self, w: int, h: int, rng: np.random.Generator) -> tuple[tuple[int, int], bool]:
        """(crop x, crop y), flip: drawn like the original (inclusive randint, flip when random > 0.5)."""
        new_w, new_h = self.resized_size(w, h)
        x = int(rng.integers(0, max(0, new_w - self.crop_size), endpoint=True))
        y = int(rng.integers(0, max(0, new_h - self.crop_size), endpoint=True))
        flip = bool(rng.random() > 0.5)
        return (x, y), flip and self.flip

    def _check_fits(self, new_w: int, new_h: int, source: str) -> None:
        if "crop" in self.mode and (new_w < self.crop_size or new_h < self.crop_size):
            raise InputError(
                f"{source} is {new_w}x{new_h} after the '{self.mode}' resize, smaller than the "
                f"{self.crop_size}x{self.crop_size} crop: use a larger --load-size or preprocess mode 'fixed'"
            )
        if self.mode == "none" and (new_h, new_w) != self.output_hw:
            raise InputError(
                f"{source} is {new_w}x{new_h}: preprocess mode 'none' needs files of the model's size "
                f"{self.output_hw[1]}x{self.output_hw[0]}"
            )

    def apply_ids(self, arr: np.ndarray, pos: tuple[int, int], flip: bool, source: str) -> np.ndarray:
        """Integer map (H, W) -> (h, w): NEAREST resize, crop, flip."""
        new_w, new_h = self.resized_size(arr.shape[1], arr.shape[0])
        self._check_fits(new_w, new_h, source)
        arr = resize_ids(arr, new_h, new_w)
        return self._crop_flip(arr, pos, flip)

    def apply_image(self, img: Image.Image, pos: tuple[int, int], flip: bool, source: str) -> np.ndarray:
        """RGB PIL image -> (h, w, 3) uint8: BICUBIC resize, crop, flip."""
        new_w, new_h = self.resized_size(*img.size)
        self._check_fits(new_w, new_h, source)
        if (new_w, new_h) != img.size:
            img = img.resize((new_w, new_h), Image.BICUBIC)
        return self._crop_flip(np.array(img), pos, flip)

    def _crop_flip(self, arr: np.ndarray, pos: tuple[int, int], flip: bool) -> np.ndarray:
        if "crop" in self.mode:
            x, y = pos
            arr = arr[y : y + self.crop_size, x : x + self.crop_size]
        return np.ascontiguousarray(arr[:, ::-1] if flip else arr)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation stream of one sample in one epoch: independent of processes, workers and resumes."""
    return np.random.default_rng([seed, epoch, index])


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(127.5).sub(1.0)


# ---- file layouts -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleFiles:
    label: Path
    image: Path
    instance: Path | None = None


def natural_key(path: Path) -> list:
    """'img2' < 'img10', as the original's natural_sort."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def _list_files(directory: Path, recursive: bool = False, what: str = "directory") -> list[Path]:
    if not directory.is_dir():
        raise InputError(f"{what} not found: {directory}")
    it = directory.rglob("*") if recursive else directory.iterdir()
    return sorted((p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)


def _pair(
    labels: list[Path], images: list[Path], instances: list[Path] | None, key, label_dir, image_dir
) -> list[SampleFiles]:
    """Pair files by key (the stem, or cityscapes' city_seq_frame); any unpaired file is an error."""
    if not labels:
        raise InputError(f"no label maps found in {label_dir}")
    by_key = {}
    for img in images:
        by_key.setdefault(key(img), img)
    inst_by_key = None if instances is None else {key(p): p for p in instances}
    label_keys = {key(p) for p in labels}
    out = []
    for label in labels:
        image = by_key.get(key(label))
        if image is None:
            raise InputError(
                f"label map {label} has no image of the same name in {image_dir}: the label/image pairs do not match"
            )
        inst = None
        if inst_by_key is not None:
            inst = inst_by_key.get(key(label))
            if inst is None:
                raise InputError(f"label map {label} has no instance map of the same name")
        out.append(SampleFiles(label, image, inst))
    extra = [img for img in images if key(img) not in label_keys]
    if extra:
        raise InputError(
            f"image {extra[0]} has no label map of the same name in {label_dir} ({len(extra)} unpaired image(s)): "
            "the label/image pairs do not match"
        )
    return out


def find_samples(
    mode: str,
    dataroot: str | Path | None,
    phase: str = "train",
    use_instance: bool = False,
    label_dir: str | Path | None = None,
    image_dir: str | Path | None = None,
    instance_dir: str | Path | None = None,
) -> list[SampleFiles]:
    """Files of one of the original layouts, paired and naturally sorted."""
    if mode not in DATASET_MODES or mode == "procedural":
        raise ConfigError(f"dataset mode {mode!r} has no files; expected one of {', '.join(DATASET_MODES[:-1])}")
    stem = lambda p: p.stem  # noqa: E731
    if mode == "custom":
        if dataroot is None and (label_dir is None or image_dir is None):
            raise ConfigError("dataset mode custom needs --label-dir and --image-dir (or --dataroot)")
        root = Path(dataroot) if dataroot is not None else None
        ldir = Path(label_dir) if label_dir else root / f"{phase}_label"
        idir = Path(image_dir) if image_dir else root / f"{phase}_img"
        inst_dir = Path(instance_dir) if instance_dir else (root / f"{phase}_inst" if root else None)
        labels, images = _list_files(ldir, what="label directory"), _list_files(idir, what="image directory")
        instances = None
        if use_instance:
            if inst_dir is None:
                raise ConfigError("this preset takes instance maps: pass --instance-dir, or train with --no-instance")
            instances = _list_files(inst_dir, what="instance directory (or train with --no-instance)")
        return _pair(labels, images, instances, stem, ldir, idir)
    if dataroot is None:
        raise ConfigError(f"dataset mode {mode} needs --dataroot")
    root = Path(dataroot)
    if not root.is_dir():
        raise InputError(f"dataroot not found: {root}")
    if mode in ("coco", "facades"):
        labels, images, instances = [], [], [] if use_instance else None
        suffixes = ("", "_portrait") if mode == "coco" and phase == "train" else ("",)
        for suffix in suffixes:  # coco also reads {phase}_*_portrait directories when present
            ldir = root / f"{phase}_label{suffix}"
            if suffix and not ldir.is_dir():
                continue
            labels += _list_files(ldir, what="label directory")
            images += _list_files(root / f"{phase}_img{suffix}", what="image directory")
            if instances is not None:
                instances += _list_files(
                    root / f"{phase}_inst{suffix}", what="instance directory (or train with --no-instance)"
                )
        return _pair(labels, images, instances, stem, root / f"{phase}_label", root / f"{phase}_img")
    if mode == "ade20k":  # ADEChallengeData2016: *_{phase}_* files anywhere under the root
        tag = f"_{'val' if phase in ('val', 'test') else 'train'}_"
        files = [p for p in _list_files(root, recursive=True) if tag in p.name]
        labels = [p for p in files if p.suffix.lower() == ".png"]
        images = [p for p in files if p.suffix.lower() == ".jpg"]
        return _pair(labels, images, None, stem, root, root)
    # cityscapes: gtFine/{phase}/**/*_labelIds.png, leftImg8bit/{phase}/**/*; key = city_seq_frame
    phase = "val" if phase == "test" else phase
    key = lambda p: "_".join(p.name.split("_")[:3])  # noqa: E731
    gt = _list_files(root / "gtFine" / phase, recursive=True, what="label directory")
    labels = [p for p in gt if p.name.endswith("_labelIds.png")]
    instances = [p for p in gt if p.name.endswith("_instanceIds.png")] if use_instance else None
    images = _list_files(root / "leftImg8bit" / phase, recursive=True, what="image directory")
    return _pair(labels, images, instances, key, root / "gtFine" / phase, root / "leftImg8bit" / phase)


# ---- datasets -----------------------------------------------------------------------------------------
class PairedDataset(torch.utils.data.Dataset):
    """Label map + photo (+ instance map) files -> training samples.

    Item key: ``(index, epoch)`` (what ``BatchOrder`` yields) or a plain index (epoch 0). A sample is a dict:
    ``label`` (H, W) int64 ids, ``edges`` (H, W) uint8 (empty (0,) without instance maps), ``image``
    (3, H, W) float32 in [-1, 1], ``index``.
    """

    def __init__(
        self,
        files: list[SampleFiles],
        config: GeneratorConfig,
        preprocess: Preprocess,
        seed: int = 0,
        check: bool = True,
        pairing_check: bool = True,
    ) -> None:
        self.files, self.config, self.preprocess, self.seed = files, config, preprocess, seed
        if preprocess.output_hw != config.output_hw:
            raise ConfigError(
                f"preprocessing makes {preprocess.output_hw[0]}x{preprocess.output_hw[1]} samples, the generator "
                f"makes {config.output_hw[0]}x{config.output_hw[1]}: crop size {config.crop_size} must be a multiple "
                f"of {2**config.num_up} (the generator's upsampling factor)"
            )
        if check:
            self.check_files(pairing_check)

    def __len__(self) -> int:
        return len(self.files)

    def check_files(self, pairing_check: bool = True) -> None:
        """Open every file (headers), check pair sizes, and read every label map to check its ids."""
        log.info("checking %d training samples (label ids, readable files, matching sizes)", len(self.files))
        for f in self.files:
            ids = map_dontcare(read_label_ids(f.label), self.config.label_nc)
            check_label_ids(ids, self.config.num_label_ids, f"label map {f.label}")
            size = _image_size(f.image)
            if pairing_check and size != (ids.shape[1], ids.shape[0]):
                raise InputError(
                    f"label map {f.label} is {ids.shape[1]}x{ids.shape[0]} but its image {f.image} is "
                    f"{size[0]}x{size[1]}: the pair does not match (pass --no-pairing-check to resize both anyway)"
                )
            if f.instance is not None and _image_size(f.instance) != size and pairing_check:
                raise InputError(f"instance map {f.instance} is not the size of its image {f.image} {size}")

    def __getitem__(self, key: tuple[int, int] | int) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        f = self.files[index]
        raw = read_label_ids(f.label)
        rng = sample_rng(self.seed, epoch, index)
        pos, flip = self.preprocess.params(raw.shape[1], raw.shape[0], rng)
        ids = self.preprocess.apply_ids(raw, pos, flip, f"label map {f.label}")
        ids = map_dontcare(ids, self.config.label_nc)
        check_label_ids(ids, self.config.num_label_ids, f"label map {f.label}")  # lazily too (--no-data-check)
        image = self.preprocess.apply_image(_read_rgb(f.image), pos, flip, f"image {f.image}")
        if self.config.use_instance:
            inst = read_instance_map(f.instance) if f.instance is not None else raw.astype(np.int32)
            edges = torch.from_numpy(instance_edges(self.preprocess.apply_ids(inst, pos, flip, str(f.instance))))
        else:
            edges = torch.zeros(0, dtype=torch.uint8)
        return {
            "label": torch.from_numpy(ids.astype(np.int64)),
            "edges": edges,
            "image": image_to_tensor(image),
            "index": index,
        }


class ProceduralDataset(torch.utils.data.Dataset):
    """Scene ``index`` of the procedural landscapes (label map + rendered picture), drawn on the fly.

    ``compact``: ids 0..9 (the ``landscape`` preset); otherwise COCO-Stuff ids (the ``coco`` preset), whose
    instance map is the label map itself (every region one instance). Flips follow ``sample_rng``.
    """

    def __init__(self, size: int, config: GeneratorConfig, seed: int = 0, flip: bool = True, scene_seed: int = 0):
        if size < 1:
            raise ConfigError(f"procedural dataset size must be >= 1, got {size}")
        self.size, self.config, self.seed, self.flip, self.scene_seed = size, config, seed, flip, scene_seed
        self.compact = config.label_nc < 182
        needed = 10 if self.compact else 170
        if config.label_nc < needed:
            raise ConfigError(
                f"procedural landscapes use {'ids 0..9' if self.compact else 'COCO-Stuff ids up to 168'}: "
                f"label_nc must be >= {needed} (presets landscape or coco), got {config.label_nc}"
            )

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: tuple[int, int] | int) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        h, w = self.config.output_hw
        ids, rgb = render_scene(h, w, self.scene_seed * 1_000_003 + index, compact=self.compact)
        if self.flip and sample_rng(self.seed, epoch, index).random() > 0.5:
            ids, rgb = np.ascontiguousarray(ids[:, ::-1]), np.ascontiguousarray(rgb[:, ::-1])
        edges = torch.from_numpy(instance_edges(ids)) if self.config.use_instance else torch.zeros(0, dtype=torch.uint8)
        return {
            "label": torch.from_numpy(ids.astype(np.int64)),
            "edges": edges,
            "image": image_to_tensor(rgb),
            "index": index,
        }


def _image_size(path: Path) -> tuple[int, int]:
    """(w, h) from the header; an unreadable file, or one over the pixel limit, is an InputError naming it."""
    with open_image(path, "image") as im:
        return im.size


def _read_rgb(path: Path) -> Image.Image:
    """The picture as RGB; refused from its header when over the pixel limit (spade_rt.limits.pixel_limit)."""
    with open_image(path, "image") as im:
        try:
            return im.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"cannot read image {path}: {exc}") from None


def build_dataset(
    config: GeneratorConfig,
    mode: str,
    *,
    dataroot: str | None = None,
    phase: str = "train",
    label_dir: str | None = None,
    image_dir: str | None = None,
    instance_dir: str | None = None,
    preprocess_mode: str | None = None,
    load_size: int | None = None,
    flip: bool = True,
    procedural_size: int = 10000,
    seed: int = 0,
    check: bool = True,
    pairing_check: bool = True,
) -> torch.utils.data.Dataset:
    """The dataset of ``mode`` with the original preprocessing defaults for that layout."""
    if mode not in DATASET_MODES:
        raise ConfigError(f"dataset mode {mode!r} is not one of {', '.join(DATASET_MODES)}")
    if mode == "procedural":
        if preprocess_mode not in (None, "fixed"):
            raise ConfigError("procedural scenes are drawn at the model's size: preprocess mode must be 'fixed'")
        return ProceduralDataset(procedural_size, config, seed=seed, flip=flip)
    default_mode, load_factor = DATASET_DEFAULTS[mode]
    mode_pp = preprocess_mode or default_mode
    load = load_size or (round(config.crop_size * load_factor) if "crop" in mode_pp else config.crop_size)
    pp = Preprocess(mode_pp, load, config.crop_size, config.aspect_ratio, flip)
    files = find_samples(mode, dataroot, phase, config.use_instance, label_dir, image_dir, instance_dir)
    log.info("%s dataset: %d samples from %s, preprocess %s (load %d, crop %d)", mode, len(files),
             dataroot or label_dir, pp.mode, pp.load_size, pp.crop_size)  # fmt: skip
    return PairedDataset(files, config, pp, seed=seed, check=check, pairing_check=pairing_check)


# ---- data order ---------------------------------------------------------------------------------------
class BatchOrder:
    """Which samples global batch ``step`` holds: epoch e is a permutation seeded by (seed, e), cut into
    ``len // batch`` batches (the remainder is dropped, as the original's drop_last).

    A pure function of (seed, step): resuming at step s replays the same order, and N processes that each
    take their slice of every global batch see exactly what one process with the whole batch sees.
    """

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True) -> None:
        if size < batch_size:
            raise ConfigError(f"the dataset has {size} sample(s), fewer than the batch size {batch_size}")
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.steps_per_epoch = size // batch_size
        self._perm_epoch, self._perm = -1, None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def batch(self, step: int) -> list[tuple[int, int]]:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm_epoch = epoch
            rng = np.random.default_rng([self.seed, epoch, 0x5EED])
            self._perm = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
        idx = self._perm[k * self.batch_size : (k + 1) * self.batch_size]
        return [(int(i), epoch) for i in idx]


class RankBatchSampler(torch.utils.data.Sampler):
    """This process's slice of every global batch, from ``start_step`` on (endless)."""

    def __init__(self, order: BatchOrder, rank: int, world_size: int, start_step: int) -> None:
        if order.batch_size % world_size:
            raise ConfigError(f"batch size {order.batch_size} is not divisible by the {world_size} processes")
        self.order, self.rank, self.world_size, self.start_step = order, rank, world_size, start_step
        self.local = order.batch_size // world_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.order.batch(step)[self.rank * self.local : (self.rank + 1) * self.local]
            step += 1


def dataset_fingerprint(dataset: torch.utils.data.Dataset) -> str:
    """Identifies the sample list (resume warns when it changed, since the data order then changes)."""
    if isinstance(dataset, PairedDataset):
        names = "\n".join(f.label.name for f in dataset.files)
        return f"files:{len(dataset.files)}:{hashlib.sha256(names.encode()).hexdigest()[:16]}"
    return f"procedural:{len(dataset)}"
