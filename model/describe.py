"""`spade-rt info MODEL.safetensors`: what a spade-rt model takes and gives, parameters, GMACs.

torch-free: everything comes from the safetensors header (``spade_rt.model.header``): the config, and the
tensors' shapes for the parameter count, checked as ``load_model`` checks them (names, shapes, dtypes, and
finite weights, read with numpy); the multiply-accumulates are counted from the config by
``original_macs``, which follows ``networks.SPADEGenerator`` layer by layer (tests/test_contract.py compares
it with ``costs.generator_macs``, which counts a forward pass of the PyTorch network).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

from spade_rt.model.config import GeneratorConfig
from spade_rt.model.header import (
    check_finite_data,
    check_tensors,
    read_config,
    read_safetensors_header,
    resolve_model_path,
)

SPADE_HIDDEN = 128  # networks.SPADE_HIDDEN, the width of the SPADE mlp
BUFFERS = ("weight_u", "weight_v", "running_mean", "running_var", "num_batches_tracked")  # not parameters


def original_macs(cfg: GeneratorConfig) -> int:
    """Multiply-accumulates of one forward of the original formulation (one-hot input), per image."""
    L, nf, k = cfg.semantic_nc, cfg.ngf, cfg.spade_kernel_size
    sh, sw = cfg.latent_hw

    def spade(px: int, nc: int) -> int:  # mlp_shared on the one-hot map, then mlp_gamma and mlp_beta
        return px * SPADE_HIDDEN * L * k * k + 2 * px * nc * SPADE_HIDDEN * k * k

    def block(px: int, fin: int, fout: int) -> int:  # SPADEResnetBlock
        mid = min(fin, fout)
        total = spade(px, fin) + px * mid * fin * 9 + spade(px, mid) + px * fout * mid * 9
        if fin != fout:
            total += spade(px, fin) + px * fout * fin
        return total

    macs = cfg.z_dim * 16 * nf * sh * sw if cfg.use_vae else sh * sw * 16 * nf * L * 9
    scale = 1
    macs += block(sh * sw, 16 * nf, 16 * nf)  # head_0
    scale *= 2
    macs += block(sh * sw * scale**2, 16 * nf, 16 * nf)  # G_middle_0
    if cfg.num_upsampling_layers in ("more", "most"):
        scale *= 2
    macs += block(sh * sw * scale**2, 16 * nf, 16 * nf)  # G_middle_1
    widths = [16 * nf, 8 * nf, 4 * nf, 2 * nf, nf]
    if cfg.num_upsampling_layers == "most":
        widths.append(nf // 2)
    for fin, fout in itertools.pairwise(widths):  # up_0 .. up_3 (up_4)
        scale *= 2
        macs += block(sh * sw * scale**2, fin, fout)
    return macs + sh * sw * scale**2 * 3 * widths[-1] * 9  # conv_img


def describe_model(path: str | Path) -> dict:
    path = resolve_model_path(path)
    meta, tensors = read_safetensors_header(path)
    cfg = read_config(path, meta)
    check_tensors(path, cfg, tensors)  # as load_model does, before any count
    check_finite_data(path, tensors)
    h, w = cfg.output_hw
    parameters = sum(
        math.prod(t.shape) for k, t in tensors.items() if k.startswith("generator.") and not k.endswith(BUFFERS)
    )
    try:
        source = json.loads(meta.get("source", "{}"))
    except (ValueError, RecursionError):
        source = {}
    return {
        "file": str(path),
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
        "parameters": parameters,
        "gmacs_per_image": round(original_macs(cfg) / 1e9, 2),
        "source": source if isinstance(source, dict) else {},
    }
