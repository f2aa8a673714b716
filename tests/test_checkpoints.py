"""Loading original checkpoints: inference from shapes, clear mismatch errors, safety, full-size files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from spade_rt.errors import CheckpointMismatchError, ModelFormatError, UnsafeCheckpointError
from spade_rt.model.config import GeneratorConfig
from spade_rt.model.convert import convert_checkpoint
from spade_rt.model.costs import count_parameters, generator_macs
from spade_rt.model.native_format import build_generator, load_model, read_model_metadata
from spade_rt.model.networks import SPADEGenerator
from spade_rt.model.original_checkpoint import infer_generator_config, load_torch_state_dict

from reference_spade import RefEncoder, randomize_, ref_generator_for


class Payload:
    """Unpickling this would create a marker file: the loader must never do it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "latest_net_G.pth"
    state = ref_generator_for("ade20k", 4).state_dict()
    state["evil"] = Payload(marker)
    torch.save(state, bad)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="weights_only"):
        convert_checkpoint(bad, "ade20k", tmp_path / "m.safetensors")
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "m.safetensors").exists()
    # a plain pickle (not a torch zip) is refused too
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelFormatError):
        load_torch_state_dict(plain)
    assert not marker.exists()


def test_preset_mismatch_names_both_channel_counts(tmp_path):
    pth = tmp_path / "coco_G.pth"
    torch.save(ref_generator_for("coco", 4).state_dict(), pth)
    with pytest.raises(CheckpointMismatchError) as err:
        convert_checkpoint(pth, "ade20k", tmp_path / "x.safetensors")
    msg = str(err.value)
    assert "184" in msg and "151" in msg and "coco" in msg and "instance edge" in msg
    assert not (tmp_path / "x.safetensors").exists()
    # 183 channels: a coco model trained without instance maps, and the message says which flag fits
    state = ref_generator_for("coco", 4).state_dict()
    with pytest.raises(CheckpointMismatchError, match="--no-instance"):
        infer_generator_config(
            {k: (v[:, :183] if k.endswith("mlp_shared.0.weight") or k == "fc.weight" else v) for k, v in state.items()},
            "coco",
        )


def test_options_that_contradict_the_file_are_named(tmp_path):
    state = ref_generator_for("ade20k", 8).state_dict()
    with pytest.raises(CheckpointMismatchError, match="ngf 8.*--ngf 16"):
        infer_generator_config(state, "ade20k", ngf=16)
    with pytest.raises(CheckpointMismatchError, match="without --use_vae"):
        infer_generator_config(state, "ade20k", use_vae=True)
    vae = ref_generator_for("ade20k", 8, use_vae=True).state_dict()
    cfg = infer_generator_config(vae, "ade20k")
    assert cfg.use_vae and cfg.z_dim == 256
    # the VAE fc fixes the latent grid: 'more' upsampling would need 4x4, the file has 8x8
    with pytest.raises(CheckpointMismatchError, match="64-cell.*normal fits"):
        infer_generator_config(vae, "ade20k", num_upsampling_layers="more")
    with pytest.raises(ModelFormatError, match="not a SPADE generator"):
        infer_generator_config({"foo.weight": torch.zeros(1)}, "coco")


def test_encoder_is_stored_and_checked(tmp_path):
    gen = ref_generator_for("ade20k", 8, use_vae=True)
    torch.manual_seed(0)
    enc = randomize_(RefEncoder(8, 256))
    torch.save(gen.state_dict(), tmp_path / "G.pth")
    torch.save(enc.state_dict(), tmp_path / "E.pth")
    model = convert_checkpoint(
        tmp_path / "G.pth", "ade20k", tmp_path / "m.safetensors", encoder_path=tmp_path / "E.pth"
    )
    assert model.config.has_encoder and model.config.norm_E == "spectralinstance"
    from spade_rt.model.torch_backend import TorchBackend

    image = tmp_path / "style.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)).save(image)
    z = TorchBackend(tmp_path / "m.safetensors").encode_style(image)
    x = torch.from_numpy(
        np.asarray(Image.open(image).convert("RGB").resize((256, 256), Image.BICUBIC), dtype=np.float32) / 127.5 - 1
    ).permute(2, 0, 1)[None]
    with torch.no_grad():
        want = enc(x)[0].numpy()
    np.testing.assert_allclose(z, want, rtol=1e-4, atol=1e-5)
    torch.save(RefEncoder(16, 256).state_dict(), tmp_path / "E16.pth")
    with pytest.raises(CheckpointMismatchError, match="width 16.*ngf 8"):
        convert_checkpoint(tmp_path / "G.pth", "ade20k", tmp_path / "m2.safetensors", encoder_path=tmp_path / "E16.pth")


def test_native_format_roundtrip_and_corruption(tmp_path):
    pth = tmp_path / "G.pth"
    ref = ref_generator_for("cityscapes", 4)
    torch.save(ref.state_dict(), pth)
    model = convert_checkpoint(pth, "cityscapes", tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m")  # the suffix may be left out
    assert loaded.config == model.config and loaded.config.num_upsampling_layers == "more"
    assert set(loaded.generator) == set(ref.state_dict())
    meta = read_model_metadata(tmp_path / "m.safetensors")
    assert meta["format"] == "spade-rt-model" and "cityscapes" in meta["config"]
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError):
        load_model(tmp_path / "cut.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelFormatError, match="not a spade-rt model"):
        load_model(tmp_path / "other.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["coco", "ade20k", "cityscapes"])
def test_full_size_original_checkpoints_convert(tmp_path, preset):
    ref = ref_generator_for(preset, 64, seed=2)
    pth = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), pth)
    del ref
    model = convert_checkpoint(pth, preset, tmp_path / "m.safetensors")
    assert model.config.ngf == 64
    net = build_generator(load_model(tmp_path / "m.safetensors"))
    assert sum(p.numel() for p in net.parameters()) == count_parameters(model.generator)


def test_parameter_and_mac_counts_match_the_measured_reference():
    """DESIGN.md section 4 measured 97.5M params / 191 GMACs (coco) and 96.5M / 181 (ade20k) at ngf 64."""
    for preset, params_m, gmacs in (("coco", 97.5, 191), ("ade20k", 96.5, 181)):
        cfg = GeneratorConfig.from_preset(preset)
        assert abs(generator_macs(cfg) / 1e9 - gmacs) < 0.5, preset
        with torch.device("meta"):
            net = SPADEGenerator(cfg)
        assert abs(sum(p.numel() for p in net.parameters()) / 1e6 - params_m) < 0.05, preset
