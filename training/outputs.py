"""What a training run writes besides its state: the native model, snapshots with their options, sample
grids, the loss log (stats.jsonl + TensorBoard), and the progress bar. Process 0 calls these."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spade_rt import __version__
from spade_rt.io_utils import atomic_write_json
from spade_rt.model.config import GeneratorConfig
from spade_rt.model.native_format import NativeModel, save_model
from spade_rt.model.semantics import one_hot_semantics
from spade_rt.palettes import preset_colours
from spade_rt.training.samples import sample_grid, save_png

log = logging.getLogger(__name__)


def native_model(
    cfg: GeneratorConfig, G: nn.Module, E: nn.Module | None, run: Path, step: int, ema: bool
) -> NativeModel:
    """The native model of a run: fp32 tensors (a float64 verification run is rounded)."""
    source = {"trained_by": f"spade-rt {__version__}", "run": run.name, "step": step, "ema": ema}
    f32 = lambda sd: {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}  # noqa: E731
    return NativeModel(cfg, f32(G.state_dict()), f32(E.state_dict()) if E is not None else None, source)


def write_snapshot(run: Path, step: int, cfg, G, E, options: dict[str, Any], ema: bool) -> None:
    """snapshots/model-STEP.json, then the model beside it (both atomic): a run killed between the two leaves a
    sidecar without its model, which ``drop_orphan_sidecars`` removes when the run resumes; never a model without
    its options."""
    path = run / "snapshots" / f"model-{step:06d}.safetensors"
    atomic_write_json(path.with_suffix(".json"), {"step": step, "options": options})
    save_model(path, native_model(cfg, G, E, run, step, ema))


def drop_orphan_sidecars(run: Path) -> None:
    """Remove snapshots/model-STEP.json files whose model was never written (a run killed between the two)."""
    for sidecar in (run / "snapshots").glob("model-*.json"):
        if not sidecar.with_suffix(".safetensors").is_file():
            sidecar.unlink(missing_ok=True)


def preview_batch(dataset, n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` samples (epoch 0), fixed for the whole run."""
    items = [dataset[(i, 0)] for i in range(min(n, len(dataset)))]
    return torch.utils.data.default_collate(items)


@torch.no_grad()
def write_samples(run: Path, writer, step: int, batch, G: nn.Module, E, cfg: GeneratorConfig, dev) -> None:
    """Eval-mode G (running BN statistics, stored SN vectors: no state changes) on the preview batch."""
    edges = batch["edges"].to(dev) if batch["edges"].numel() else None
    dtype = next(G.parameters()).dtype
    seg = one_hot_semantics(batch["label"].to(dev), cfg.num_label_ids, edges, dtype=dtype)
    real = batch["image"].to(dev, dtype)
    was_training = G.training
    G.eval()
    z = None
    if E is not None:
        E.eval()
        z, _ = E(real)  # the mean style of each real image
        E.train()
    fake = G(seg, z).float().cpu().numpy()
    G.train(was_training)
    grid = sample_grid(batch["label"].numpy(), fake, real.cpu().numpy(), preset_colours(cfg.preset, cfg.num_label_ids))
    save_png(run / "samples" / f"step-{step:06d}.png", grid)
    if writer is not None:
        writer.add_image("samples", grid, step, dataformats="HWC")


def record_losses(run: Path, writer, step: int, stats: dict[str, float], lr_G: float, lr_D: float, elapsed: float):
    line = {"step": step, "seconds": round(elapsed, 2), "lr_G": lr_G, "lr_D": lr_D, **stats}
    with open(run / "stats.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    if writer is not None:
        for k, v in stats.items():
            writer.add_scalar(f"Loss/{k}", v, step)
        writer.add_scalar("Progress/lr_G", lr_G, step)
    log.debug("step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in stats.items()))


def truncate_stats(path: Path, start: int) -> None:
    """On resume, drop lines of steps after the resumed state (they will be redone)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= start]
    path.write_text("".join(ln + "\n" for ln in lines))


def open_tensorboard(run: Path, start: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is in the 'train' extra
        log.warning("TensorBoard logging is off: the tensorboard package is not installed (pip install tensorboard)")
        return None
    return SummaryWriter(str(run / "tensorboard"), purge_step=start or None)


def log_through(bar):
    if bar.disable:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def progress_bar(enabled: bool, start: int, total: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True, desc="train")
