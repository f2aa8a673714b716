"""Original SPADE checkpoint(s) -> native spade-rt model (``spade-rt convert``)."""

from __future__ import annotations

import logging
from pathlib import Path

from spade_rt.io_utils import check_output_file, sha256_file
from spade_rt.model.native_format import NativeModel, build_encoder, build_generator, save_model
from spade_rt.model.original_checkpoint import infer_encoder_norm, infer_generator_config, load_torch_state_dict

log = logging.getLogger(__name__)


def convert_checkpoint(
    generator_path: str | Path,
    preset: str,
    output: str | Path,
    *,
    encoder_path: str | Path | None = None,
    **options,
) -> NativeModel:
    """Load, infer and check the config, prove the weights fit (strict load), write the native file.

    ``options``: ngf, use_vae, label_nc, contain_dontcare_label, use_instance, num_upsampling_layers,
    crop_size, aspect_ratio (None = from the file or the preset).
    """
    generator_path = Path(generator_path)
    check_output_file(output, "output")  # before any reading: a bad output location fails first, and fast
    state = load_torch_state_dict(generator_path)
    config = infer_generator_config(state, preset, generator_path.name, **options)
    encoder_state = None
    if encoder_path is not None:
        encoder_path = Path(encoder_path)
        if not config.use_vae:
            log.warning("%s is not a VAE generator: the encoder %s is not stored", generator_path.name, encoder_path)
        else:
            encoder_state = load_torch_state_dict(encoder_path)
            norm_E = infer_encoder_norm(encoder_state, encoder_path.name, config)
            config = config.replace(has_encoder=True, norm_E=norm_E)
    source = {
        "kind": "original SPADE checkpoint",
        "generator": generator_path.name,
        "generator_sha256": sha256_file(generator_path),
    }
    if encoder_state is not None:
        source.update(encoder=Path(encoder_path).name, encoder_sha256=sha256_file(encoder_path))
    model = NativeModel(config, state, encoder_state, source)
    build_generator(model)  # strict load: every key and shape must fit before anything is written
    build_encoder(model)
    save_model(output, model)
    model.path = Path(output)
    return model
