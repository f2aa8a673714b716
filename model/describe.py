"""`spade-rt info MODEL.safetensors`: what a spade-rt model takes and gives, parameters, GMACs."""

from __future__ import annotations

from pathlib import Path

from spade_rt.model.costs import count_parameters, generator_macs
from spade_rt.model.native_format import load_model


def describe_model(path: str | Path) -> dict:
    model = load_model(path)
    cfg = model.config
    h, w = cfg.output_hw
    return {
        "file": str(model.path),
        "kind": "spade-rt native model",
        "preset": cfg.preset,
        "inputs": {
            "labels": f"N x {h} x {w} ids 0..{cfg.num_label_ids - 1}",
            **({"instance": f"N x {h} x {w} instance ids (edges computed)"} if cfg.use_instance else {}),
            **({"z": f"N x {cfg.z_dim} float32"} if cfg.use_vae else {}),
        },
        "output": f"N x 3 x {h} x {w} float32 in [-1, 1]",
        "semantic_nc": cfg.semantic_nc,
        "ngf": cfg.ngf,
        "num_upsampling_layers": cfg.num_upsampling_layers,
        "norm_G": cfg.norm_G,
        "use_vae": cfg.use_vae,
        "encoder": cfg.has_encoder,
        "parameters": count_parameters(model.generator),
        "gmacs_per_image": round(generator_macs(cfg) / 1e9, 2),
        "source": model.source,
    }
