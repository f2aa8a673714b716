"""Training data: the original preprocessing on real COCO-Stuff files, bad data caught early with the file
name, the procedural landscapes, and the data order that exact resume and multi-process training rest on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spade_rt.errors import ConfigError, InputError, LabelError
from spade_rt.model.config import GeneratorConfig
from spade_rt.procedural import LANDSCAPE_CLASSES, LANDSCAPE_NAMES, landscape, landscape_labels
from spade_rt.training.dataset import (
    BatchOrder,
    PairedDataset,
    Preprocess,
    ProceduralDataset,
    RankBatchSampler,
    build_dataset,
    find_samples,
    sample_rng,
)
from spade_rt.training.procedural_data import render_scene

from reference_spade import ref_edges

COCO64 = GeneratorConfig.from_preset("coco", ngf=8, crop_size=64)


def copy_sample(coco_sample: Path, dst: Path, n: int = 3) -> Path:
    """The first n training triples of the shared sample, copied so a test may damage them."""
    stems = sorted(p.stem for p in (coco_sample / "train_label").glob("*.png"))[:n]
    for kind, ext in (("label", ".png"), ("img", ".jpg"), ("inst", ".png")):
        (dst / f"train_{kind}").mkdir(parents=True)
        for s in stems:
            shutil.copy(coco_sample / f"train_{kind}" / f"{s}{ext}", dst / f"train_{kind}" / f"{s}{ext}")
    return dst


# ---- the original preprocessing, re-done with plain PIL calls as the original transform chain does ---------
def ref_train_sample(label_png, image_jpg, inst_png, load, crop, pos, flip, label_nc):
    def chain(im, method):
        im = im.resize((load, load), method).crop((pos[0], pos[1], pos[0] + crop, pos[1] + crop))
        return im.transpose(Image.FLIP_LEFT_RIGHT) if flip else im

    ids = np.array(chain(Image.open(label_png), Image.NEAREST)).astype(np.int64)
    ids[ids == 255] = label_nc
    rgb = np.array(chain(Image.open(image_jpg).convert("RGB"), Image.BICUBIC)).astype(np.float32)
    inst = np.array(chain(Image.open(inst_png), Image.NEAREST)).astype(np.int64)
    edges = ref_edges(torch.from_numpy(inst)[None, None])[0, 0].numpy()
    return ids, rgb / 127.5 - 1.0, edges


def test_coco_samples_follow_the_original_resize_crop_flip(coco_sample):
    ds = build_dataset(COCO64, "coco", dataroot=str(coco_sample), seed=3)
    assert isinstance(ds, PairedDataset) and len(ds) == 13
    assert (ds.preprocess.mode, ds.preprocess.load_size, ds.preprocess.crop_size) == ("resize_and_crop", 72, 64)
    flips = set()
    for index, epoch in [(0, 0), (1, 0), (5, 2), (12, 7), (3, 3), (7, 1)]:
        f = ds.files[index]
        item = ds[(index, epoch)]
        w, h = Image.open(f.label).size
        pos, flip = ds.preprocess.params(w, h, sample_rng(3, epoch, index))
        flips.add(flip)
        ids, rgb, edges = ref_train_sample(f.label, f.image, f.instance, 72, 64, pos, flip, 182)
        np.testing.assert_array_equal(item["label"].numpy(), ids)
        np.testing.assert_array_equal(item["edges"].numpy(), edges)
        np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), rgb, atol=1e-6)
        assert item["label"].dtype == torch.int64 and item["label"].max() <= 182
    assert flips == {True, False}, "both flip outcomes should occur over these samples"
    # the same key gives the same sample: no global RNG involved
    a, b = ds[(4, 9)], ds[(4, 9)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_fixed_mode_and_no_flip_keep_the_whole_picture(coco_sample):
    ds = build_dataset(COCO64, "coco", dataroot=str(coco_sample), preprocess_mode="fixed", flip=False)
    f = ds.files[2]
    item = ds[(2, 5)]
    want = np.array(Image.open(f.label).resize((64, 64), Image.NEAREST)).astype(np.int64)
    want[want == 255] = 182
    np.testing.assert_array_equal(item["label"].numpy(), want)


def test_mismatched_pair_fails_at_construction_with_the_file_name(coco_sample, tmp_path):
    root = copy_sample(coco_sample, tmp_path / "d")
    img = sorted((root / "train_img").iterdir())[1]
    img.rename(img.with_name("000000999999.jpg"))
    with pytest.raises(InputError, match=r"label map .*\.png has no image of the same name"):
        build_dataset(COCO64, "coco", dataroot=str(root))


def test_pair_of_different_sizes_is_refused(coco_sample, tmp_path):
    root = copy_sample(coco_sample, tmp_path / "d")
    imgs = sorted((root / "train_img").iterdir())
    shutil.copy(imgs[0], imgs[1])  # right name, wrong picture (another size)
    with pytest.raises(InputError, match=rf"{imgs[1].name} is .*the pair does not match"):
        build_dataset(COCO64, "coco", dataroot=str(root))
    build_dataset(COCO64, "coco", dataroot=str(root), pairing_check=False)  # the user may override


def test_id_above_the_label_count_names_the_file_and_the_id(coco_sample, tmp_path):
    root = copy_sample(coco_sample, tmp_path / "d")
    label = sorted((root / "train_label").iterdir())[2]
    ids = np.array(Image.open(label))
    ids[:3, :4] = 200  # coco knows 0..181 (+ 255 = dontcare)
    Image.fromarray(ids).save(label)
    with pytest.raises(LabelError, match=rf"{label.name} holds label id\(s\) .*200 \(12 px\).*0\.\.182"):
        build_dataset(COCO64, "coco", dataroot=str(root))


def test_unreadable_image_names_the_file(coco_sample, tmp_path):
    root = copy_sample(coco_sample, tmp_path / "d")
    img = sorted((root / "train_img").iterdir())[0]
    img.write_bytes(b"this is not a jpeg")
    with pytest.raises(InputError, match=rf"cannot read image .*{img.name}"):
        build_dataset(COCO64, "coco", dataroot=str(root))


def test_missing_instance_directory_says_what_to_do(coco_sample, tmp_path):
    root = copy_sample(coco_sample, tmp_path / "d")
    shutil.rmtree(root / "train_inst")
    with pytest.raises(InputError, match="instance directory .*--no-instance"):
        build_dataset(COCO64, "coco", dataroot=str(root))
    cfg = GeneratorConfig.from_preset("coco", ngf=8, crop_size=64, use_instance=False)
    assert len(build_dataset(cfg, "coco", dataroot=str(root))) == 3


def test_custom_and_cityscapes_layouts_pair_files(tmp_path):
    for d in ("lab", "img"):
        (tmp_path / d).mkdir()
    for i in (1, 2, 10):
        Image.fromarray(np.full((8, 8), i, np.uint8)).save(tmp_path / "lab" / f"s{i}.png")
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img" / f"s{i}.jpg")
    files = find_samples("custom", None, label_dir=tmp_path / "lab", image_dir=tmp_path / "img")
    assert [f.label.stem for f in files] == ["s1", "s2", "s10"]  # natural order
    city = tmp_path / "city"
    for sub, name in (("gtFine", "aachen_000000_000019_gtFine_labelIds.png"),
                      ("gtFine", "aachen_000000_000019_gtFine_instanceIds.png"),
                      ("leftImg8bit", "aachen_000000_000019_leftImg8bit.png")):  # fmt: skip
        (city / sub / "train" / "aachen").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 8), np.uint8)).save(city / sub / "train" / "aachen" / name)
    (f,) = find_samples("cityscapes", city, use_instance=True)
    assert f.image.name.endswith("leftImg8bit.png") and f.instance.name.endswith("instanceIds.png")


def test_preprocess_options_are_checked(coco_sample):
    with pytest.raises(ConfigError, match="aspect ratio 2.0 needs 'fixed'"):
        Preprocess("resize_and_crop", 286, 256, 2.0, True)
    sw = Preprocess("scale_width_and_crop", 286, 256, 1.0, True)
    assert sw.resized_size(640, 480) == (286, 214)  # width to load size, height kept in proportion
    with pytest.raises(InputError, match="smaller than the 256x256 crop"):
        sw.apply_ids(np.zeros((480, 640), np.uint8), (0, 0), False, "label map x.png")
    crop = Preprocess("crop", 0, 64, 1.0, False)
    out = crop.apply_ids(np.arange(100 * 80, dtype=np.int32).reshape(80, 100), (5, 7), False, "x")
    assert out.shape == (64, 64) and out[0, 0] == 7 * 100 + 5  # no resize, window at (x 5, y 7)
    with pytest.raises(ConfigError, match="multiple of 32"):  # 100 px crops, but the generator makes 96 px
        build_dataset(GeneratorConfig.from_preset("coco", crop_size=100), "coco", dataroot=str(coco_sample))


# ---- procedural landscapes -----------------------------------------------------------------------------
def test_procedural_scenes_are_deterministic_and_recognisable():
    ids_a, rgb_a = render_scene(96, 128, seed=11)
    ids_b, rgb_b = render_scene(96, 128, seed=11)
    assert np.array_equal(ids_a, ids_b) and np.array_equal(rgb_a, rgb_b)
    ids_c, rgb_c = render_scene(96, 128, seed=12)
    assert not np.array_equal(ids_c, ids_a) and not np.array_equal(rgb_c, rgb_a)
    # compact ids are the COCO ids of spade_rt.procedural.landscape, renumbered 0..9
    coco = landscape(96, 128, 11)
    for i, name in enumerate(LANDSCAPE_NAMES):
        assert np.array_equal(ids_a == i, coco == LANDSCAPE_CLASSES[name])
    assert np.array_equal(landscape_labels(96, 128, 11, compact=False), coco)
    assert len(np.unique(ids_a)) >= 6 and ids_a.max() <= 9
    # the pictures look like their classes: blue sky above green grass
    sky, grass = rgb_a[ids_a == 0].mean(0), rgb_a[ids_a == 5].mean(0)
    assert sky[2] > sky[0] + 40 and grass[1] > grass[0] + 30 and grass[1] > grass[2] + 30


def test_procedural_dataset_serves_both_id_spaces():
    cfg = GeneratorConfig.from_preset("landscape", crop_size=64)
    ds = ProceduralDataset(50, cfg, seed=0)
    a = ds[(7, 0)]
    assert a["label"].shape == (64, 64) and a["label"].max() <= 9 and a["edges"].numel() == 0
    assert a["image"].shape == (3, 64, 64) and a["image"].min() >= -1 and a["image"].max() <= 1
    flipped = [ds[(7, e)]["label"] for e in range(8)]
    assert any(torch.equal(f, a["label"].flip(-1)) for f in flipped)
    assert any(torch.equal(f, a["label"]) for f in flipped)
    coco = ProceduralDataset(50, GeneratorConfig.from_preset("coco", crop_size=64), seed=0)
    b = coco[(7, 0)]
    assert set(b["label"].unique().tolist()) <= set(LANDSCAPE_CLASSES.values())
    assert b["edges"].shape == (64, 64) and b["edges"].any()


# ---- data order ----------------------------------------------------------------------------------------
def test_batch_order_is_a_function_of_seed_and_step_and_splits_over_ranks():
    order = BatchOrder(10, 4, seed=5)
    assert order.steps_per_epoch == 2
    epoch0 = order.batch(0) + order.batch(1)
    assert len({i for i, _ in epoch0}) == 8 and all(e == 0 for _, e in epoch0)
    assert order.batch(2)[0][1] == 1 and order.batch(2) != order.batch(0)
    assert BatchOrder(10, 4, seed=5).batch(3) == order.batch(3)  # fresh object, same answer
    assert BatchOrder(10, 4, seed=6).batch(0) != order.batch(0)
    ranks = [iter(RankBatchSampler(order, r, 2, start_step=3)) for r in range(2)]
    for step in (3, 4, 5):
        assert next(ranks[0]) + next(ranks[1]) == order.batch(step)
    with pytest.raises(ConfigError, match="not divisible"):
        RankBatchSampler(order, 0, 3, 0)
    with pytest.raises(ConfigError, match="fewer than the batch size 4"):
        BatchOrder(3, 4, 0)
