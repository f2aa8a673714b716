"""Label pipeline: ids, dontcare, resize and edges against the reference re-implementation and real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spade_rt.errors import InputError, LabelError
from spade_rt.labels import (
    LabelSpec,
    check_label_ids,
    instance_edges,
    load_inputs,
    map_dontcare,
    read_label_ids,
    resize_nearest,
)
from spade_rt.presets import get_preset

from reference_spade import ref_edges, ref_load_ids, ref_load_instance

COCO = LabelSpec.from_preset(get_preset("coco"))


def test_real_coco_maps_match_the_original_pipeline(coco_sample):
    names = sorted(p.stem for p in (coco_sample / "val_label").glob("*.png"))
    assert len(names) >= 5
    saw_dontcare = False
    for name in names:
        label_png = coco_sample / "val_label" / f"{name}.png"
        inst_png = coco_sample / "val_inst" / f"{name}.png"
        raw = np.array(Image.open(label_png))
        assert raw.shape != (256, 256)  # original sizes: the resize is exercised
        ids, edges = load_inputs(COCO, label_png, inst_png)
        want_ids = ref_load_ids(label_png, (256, 256), 182)
        np.testing.assert_array_equal(ids, want_ids)
        assert ids.dtype == np.uint8 and ids.max() <= 182
        # 255 in the (resized) file became exactly the dontcare id 182
        resized_raw = np.array(Image.open(label_png).resize((256, 256), Image.NEAREST))
        np.testing.assert_array_equal(ids == 182, resized_raw == 255)
        saw_dontcare |= bool((resized_raw == 255).any())
        want_edges = ref_edges(torch.from_numpy(ref_load_instance(inst_png, (256, 256)))[None, None])[0, 0]
        np.testing.assert_array_equal(edges, want_edges.numpy().astype(np.uint8))
        assert 0 < edges.mean() < 0.5
    assert saw_dontcare, "the sample should contain unlabeled (255) pixels"


def test_edges_mark_both_sides_of_every_boundary():
    inst = np.zeros((5, 6), dtype=np.int32)
    inst[:, 3:] = 7
    e = instance_edges(inst)
    assert e[:, 2].all() and e[:, 3].all() and e[:, :2].sum() == 0 and e[:, 4:].sum() == 0
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 3, size=(2, 9, 11))
    want = ref_edges(torch.from_numpy(batch)[:, None])[:, 0].numpy()
    np.testing.assert_array_equal(instance_edges(batch), want)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_resize_nearest_is_pillow_nearest_for_every_dtype(dtype):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 200, size=(37, 53)).astype(dtype)
    want = np.array(Image.fromarray(arr.astype(np.uint8)).resize((29, 64), Image.NEAREST))
    np.testing.assert_array_equal(resize_nearest(arr, 64, 29), want)


def test_dontcare_and_range_errors_name_the_value_and_pixels():
    ids = np.array([[0, 255, 255], [181, 200, 3]], dtype=np.uint8)
    mapped = map_dontcare(ids, 182)
    assert mapped[0, 1] == 182 and mapped[1, 1] == 200
    with pytest.raises(LabelError, match=r"200 \(1 px\).*0\.\.182"):
        check_label_ids(mapped, 183)
    ade = LabelSpec.from_preset(get_preset("ade20k"))
    assert ade.num_label_ids == 151 and ade.id_dtype == np.uint8


def test_colour_and_missing_files_are_refused(tmp_path):
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(rgb)
    with pytest.raises(InputError, match="3 channel"):
        read_label_ids(rgb)
    with pytest.raises(InputError, match="not found"):
        read_label_ids(tmp_path / "nope.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read"):
        read_label_ids(junk)


def test_sixteen_bit_labels_keep_their_values(tmp_path):
    arr = np.array([[1, 300], [65000, 2]], dtype=np.uint16)
    path = tmp_path / "l16.png"
    Image.fromarray(arr).save(path)
    np.testing.assert_array_equal(read_label_ids(path), arr.astype(np.int32))


def test_palettes_decode_their_own_colours_and_name_strangers():
    from spade_rt.palettes import bit_interleaved, colorize, decode_colours, palette

    # SPADE's generic colormap: id 0 -> bits of 1 -> (128, 0, 0); id 1 -> (0, 128, 0); id 2 -> (128, 128, 0)
    assert bit_interleaved(3).tolist() == [[128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette("ade20k")[1].tolist() == [120, 120, 120] and palette("ade20k")[0].tolist() == [0, 0, 0]
    assert palette("cityscapes")[7].tolist() == [128, 64, 128]  # road
    for name, n in (("coco", 183), ("landscape", 10)):
        ids = np.arange(n, dtype=np.uint8)[None].repeat(4, 0)
        np.testing.assert_array_equal(decode_colours(colorize(ids, name), name), ids)
    rgb = colorize(np.zeros((2, 2), np.uint8), "landscape")
    rgb[0, 0] = (1, 2, 3)
    with pytest.raises(LabelError, match=r"rgb\(1, 2, 3\) \(1 px\)"):
        decode_colours(rgb, "landscape")
