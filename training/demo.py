"""The shipped demo model: pack a trained landscape run into ``spade_rt/assets/landscape_demo.safetensors``
(fp16 weights, fp32 buffers) and draw the README's picture grid.

    python -m spade_rt.training.demo runs/landscape            # writes the asset, the grid and the example map

Held-out scenes (seeds from ``HELD_OUT_SEED`` on, never seen in training: the procedural dataset uses
scenes 0 .. procedural_size-1) show what the model does with new label maps.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import spade_rt
from spade_rt.images import float_to_uint8
from spade_rt.io_utils import atomic_path
from spade_rt.model.native_format import NativeModel, build_generator, load_model, save_model
from spade_rt.model.semantics import one_hot_semantics
from spade_rt.training.procedural_data import colorize_landscape, render_scene
from spade_rt.training.samples import make_grid, save_png

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]  # the checkout (docs/ lives there, not in a wheel)
ASSET = Path(spade_rt.__file__).parent / "assets" / "landscape_demo.safetensors"
GRID = REPO / "docs" / "images" / "demo_landscapes.png"
EXAMPLE_LABELS = REPO / "docs" / "images" / "landscape_labels.png"
HELD_OUT_SEED = 1_000_000
BUFFER_SUFFIXES = ("weight_u", "weight_v", "running_mean", "running_var", "num_batches_tracked")


def pack_fp16(model: NativeModel) -> NativeModel:
    """Learned weights as fp16 (half the file), buffers (BN statistics, SN vectors) kept in fp32."""

    def half(state):
        return {
            k: v.half() if v.is_floating_point() and not k.endswith(BUFFER_SUFFIXES) else v for k, v in state.items()
        }

    enc = half(model.encoder) if model.encoder is not None else None
    return NativeModel(model.config, half(model.generator), enc, dict(model.source))


@torch.no_grad()
def synthesize_scenes(model: NativeModel, seeds: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (N, H, W), synthesized (N, 3, H, W) in [-1, 1], procedural renderings (N, H, W, 3) uint8)."""
    h, w = model.config.output_hw
    scenes = [render_scene(h, w, s) for s in seeds]
    ids = np.stack([s[0] for s in scenes])
    net = build_generator(model)
    fake = net(one_hot_semantics(torch.from_numpy(ids.astype(np.int64)), model.config.num_label_ids))
    return ids, fake.numpy(), np.stack([s[1] for s in scenes])


def relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def make_demo(run: str | Path, asset: Path = ASSET, grid: Path = GRID, count: int = 6) -> dict:
    """Write the fp16 asset, the label | synthesized | procedural grid, and the README's example label map."""
    model = load_model(run)
    if model.config.preset != "landscape":
        raise SystemExit(f"{run} is a {model.config.preset} model; the demo is a landscape model")
    seeds = [HELD_OUT_SEED + i for i in range(count)]
    packed = pack_fp16(model)
    ids, fake32, rendered = synthesize_scenes(model, seeds)
    _, fake16, _ = synthesize_scenes(packed, seeds)
    err = relative_l2(fake16, fake32)
    packed.source.update({"demo": "procedural landscapes", "storage": "fp16 weights, fp32 buffers",
                          "fp16_vs_fp32_rel_l2": round(err, 6)})  # fmt: skip
    save_model(asset, packed)
    save_png(grid, make_grid([colorize_landscape(ids), float_to_uint8(fake16), rendered]))
    with atomic_path(EXAMPLE_LABELS) as tmp:
        Image.fromarray(ids[0].astype(np.uint8), mode="L").save(tmp, format="PNG")
    with atomic_path(EXAMPLE_LABELS.with_name("landscape_labels_color.png")) as tmp:
        Image.fromarray(colorize_landscape(ids[0])).save(tmp, format="PNG")
    info = {"asset": str(asset), "bytes": asset.stat().st_size, "fp16_vs_fp32_rel_l2": err, "grid": str(grid)}
    log.info("demo: %s", info)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spade_rt.training.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="training run directory (or model) of a landscape model")
    p.add_argument("--count", type=int, default=6, help="held-out scenes in the grid")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    make_demo(args.run, count=args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
