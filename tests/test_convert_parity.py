"""Original-format checkpoints -> `spade-rt convert` -> `spade-rt synthesize -o out.npy` == the original network.

The reference (tests/reference_spade.py) uses torch's own spectral_norm hook and BatchNorm2d, so both the
checkpoint keys and the eval-mode numbers come from outside spade-rt.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spade_rt.cli import main

from reference_spade import (
    blobby_labels,
    ref_generator_for,
    ref_load_ids,
    ref_load_instance,
    ref_semantics,
    rel_l2,
)

NUM_IDS = {"coco": 183, "ade20k": 151, "cityscapes": 35}


def write_png(path, arr, dtype=np.uint8):
    Image.fromarray(np.asarray(arr).astype(dtype)).save(path)
    return path


def original_checkpoint(tmp_path, preset, ngf=8, use_vae=False, seed=0, **kw):
    ref = ref_generator_for(preset, ngf, use_vae=use_vae, seed=seed, **kw)
    path = tmp_path / f"{preset}{'_vae' if use_vae else ''}_net_G.pth"
    torch.save(ref.state_dict(), path)  # exactly what the original util.save_network writes
    return ref, path


@pytest.mark.parametrize(
    "preset,use_vae,size",
    [
        ("coco", False, (256, 256)),
        ("ade20k", False, (256, 256)),
        ("cityscapes", False, (256, 512)),
        ("ade20k", True, (256, 256)),
    ],
    ids=["coco-instance", "ade20k", "cityscapes-more", "ade20k-vae"],
)
def test_converted_checkpoint_matches_original_network(tmp_path, preset, use_vae, size):
    ref, pth = original_checkpoint(tmp_path, preset, use_vae=use_vae, seed=3)
    model = tmp_path / "model.safetensors"
    assert main(["convert", str(pth), "--preset", preset, "-o", str(model)]) == 0

    h, w = size
    # stored ids: 255 stands for unlabeled where the preset has a dontcare id
    stored = blobby_labels(1, h, w, NUM_IDS[preset], seed=5)[0]
    if preset == "coco":
        stored[stored == 182] = 255
    labels = write_png(tmp_path / "labels.png", stored)
    args = ["synthesize", str(model), "--labels", str(labels), "-o", str(tmp_path / "out.npy")]
    instance = None
    if preset in ("coco", "cityscapes"):
        instance = blobby_labels(1, h, w, 6, seed=6, cell=24)[0] * 1000 + 26  # cityscapes-style 16-bit ids
        args += ["--instance", str(write_png(tmp_path / "inst.png", instance, np.uint16))]
    z = None
    if use_vae:
        z = np.random.default_rng(7).standard_normal((1, 256)).astype(np.float32)
        np.save(tmp_path / "z.npy", z[0])
        args += ["--z", str(tmp_path / "z.npy")]
    assert main(args) == 0
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (1, 3, h, w) and out.dtype == np.float32

    ids = ref_load_ids(labels, size, NUM_IDS[preset] - 1 if preset != "cityscapes" else 35)
    inst = None if instance is None else ref_load_instance(tmp_path / "inst.png", size)[None]
    seg = ref_semantics(ids[None], NUM_IDS[preset], inst)
    with torch.no_grad():
        want = ref(seg, None if z is None else torch.from_numpy(z)).numpy()
    err = rel_l2(out, want)
    assert err < 1e-5, f"relative L2 {err:.2e}"
    assert want.std() > 1e-3  # a non-degenerate picture


def test_real_coco_maps_synthesize_like_the_original(tmp_path, coco_sample):
    ref, pth = original_checkpoint(tmp_path, "coco", ngf=8, seed=11)
    model = tmp_path / "coco.safetensors"
    assert main(["convert", str(pth), "--preset", "coco", "-o", str(model)]) == 0
    name = "000000000139"
    label_png, inst_png = coco_sample / "val_label" / f"{name}.png", coco_sample / "val_inst" / f"{name}.png"
    for suffix in (".npy", ".png"):
        assert (
            main(
                [
                    "synthesize",
                    str(model),
                    "--labels",
                    str(label_png),
                    "--instance",
                    str(inst_png),
                    "-o",
                    str(tmp_path / f"out{suffix}"),
                ]
            )
            == 0
        )
    seg = ref_semantics(
        ref_load_ids(label_png, (256, 256), 182)[None], 183, ref_load_instance(inst_png, (256, 256))[None]
    )
    with torch.no_grad():
        want = ref(seg).numpy()
    assert rel_l2(np.load(tmp_path / "out.npy"), want) < 1e-5
    png = np.array(Image.open(tmp_path / "out.png"))
    want_png = np.clip((want[0].transpose(1, 2, 0) + 1) / 2 * 255, 0, 255).astype(np.uint8)  # original tensor2im
    assert png.shape == (256, 256, 3)
    assert np.abs(png.astype(int) - want_png).max() <= 1


def test_most_upsampling_and_instance_norm_variants(tmp_path):
    ref, pth = original_checkpoint(tmp_path, "facades", ngf=8, num_up="most", spectral=False, norm="instance", ks=5)
    model = tmp_path / "m.safetensors"
    assert main(["convert", str(pth), "--preset", "facades", "-o", str(model)]) == 0
    stored = blobby_labels(1, 256, 256, 13, seed=2)[0]
    labels = write_png(tmp_path / "l.png", stored)
    assert main(["synthesize", str(model), "--labels", str(labels), "-o", str(tmp_path / "o.npy")]) == 0
    with torch.no_grad():
        want = ref(ref_semantics(stored[None], 13)).numpy()
    assert rel_l2(np.load(tmp_path / "o.npy"), want) < 1e-5
