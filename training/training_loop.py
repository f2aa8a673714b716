"""The SPADE training loop: one straight function whose keyword signature is the run's configuration.

Per step, on one global batch (each process takes its slice): ``Gmain`` (generator + encoder update),
EMA update, ``Dmain`` (discriminator update), as the original trainer does. Everything a step depends on
is either saved in ``RUN/state.pt`` or a pure function of (seed, step): the data order, the augmentation,
the VAE noise and the learning rate. That is what makes ``--resume`` exact and N processes equal to one.

Outputs in ``run_dir``: ``latest.safetensors`` (a complete native model, EMA weights when ``ema``),
``state.pt`` (resumable state), ``options.json``, ``snapshots/model-NNNNNN.safetensors`` (+ ``.json``),
``samples/step-NNNNNN.png``, ``stats.jsonl`` (losses), ``tensorboard/`` (event files).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from spade_rt.errors import ConfigError
from spade_rt.io_utils import atomic_write_json
from spade_rt.training import distributed, outputs
from spade_rt.training.config import GeneratorConfig
from spade_rt.training.dataset import (
    BatchOrder,
    RankBatchSampler,
    build_dataset,
    dataset_fingerprint,
    default_dataset_mode,
)
from spade_rt.training.layers import init_weights
from spade_rt.training.loss import LossWeights, SPADELoss, VGGLoss
from spade_rt.training.model_io import save_model
from spade_rt.training.networks import ConvEncoder, MultiscaleDiscriminator, SPADEGenerator
from spade_rt.training.state import capture_rng, load_state, restore_rng, save_state

log = logging.getLogger(__name__)

# options that change the networks: a resumed run must keep them
MODEL_OPTIONS = (
    "preset",
    "label_nc",
    "contain_dontcare_label",
    "use_instance",
    "crop_size",
    "aspect_ratio",
    "num_upsampling_layers",
    "ngf",
    "norm_G",
    "use_vae",
    "z_dim",
    "norm_E",
    "ndf",
    "n_layers_D",
    "num_D",
    "norm_D",
    "ema",
)
# options that change the data order or the first steps: a resumed run that changes them is not exact
ORDER_OPTIONS = ("seed", "batch_size", "dataset_mode", "dataroot", "procedural_size", "flip", "preprocess_mode")


def training_loop(
    *,
    run_dir: str,
    # data
    preset: str = "landscape",
    dataset_mode: str | None = None,  # default: the preset's layout; procedural for 'landscape'
    dataroot: str | None = None,
    phase: str = "train",
    label_dir: str | None = None,
    image_dir: str | None = None,
    instance_dir: str | None = None,
    preprocess_mode: str | None = None,  # default: the layout's original mode (resize_and_crop / fixed)
    load_size: int | None = None,  # default: crop_size * 286/256 for crop modes
    flip: bool = True,
    procedural_size: int = 10000,
    data_check: bool = True,
    pairing_check: bool = True,
    workers: int | None = None,  # default: 4 on CUDA, 0 on CPU
    # generator (None: the preset's value)
    label_nc: int | None = None,
    contain_dontcare_label: bool | None = None,
    use_instance: bool | None = None,
    crop_size: int | None = None,
    aspect_ratio: float | None = None,
    num_upsampling_layers: str | None = None,
    ngf: int = 64,
    norm_G: str = "spectralspadesyncbatch3x3",
    use_vae: bool = False,
    z_dim: int = 256,
    norm_E: str = "spectralinstance",
    init_type: str = "xavier",
    init_gain: float = 0.02,
    # discriminator
    ndf: int = 64,
    n_layers_D: int = 4,
    num_D: int = 2,
    norm_D: str = "spectralinstance",
    # optimisation
    batch_size: int = 1,  # global: split over the processes
    steps: int = 100_000,
    lr: float = 2e-4,
    ttur: bool = True,  # G lr/2, D lr*2
    beta1: float | None = None,  # default 0 with TTUR, else 0.5
    beta2: float | None = None,  # default 0.9 with TTUR, else 0.999
    lr_decay_steps: int = 0,  # linear decay to zero over the last N steps
    lambda_feat: float = 10.0,
    lambda_vgg: float = 10.0,
    lambda_kld: float = 0.05,
    gan_feat_loss: bool = True,
    vgg_weights: str | None = None,
    ema: bool = False,
    ema_decay: float = 0.999,
    amp: bool = True,  # fp16 autocast + GradScaler, CUDA only
    seed: int = 0,
    device: str | None = None,
    dtype: str = "float32",  # float64: for verification (1-vs-N-process equality to ~1e-12)
    # outputs
    save_every: int = 1000,
    snapshot_every: int = 10_000,
    sample_every: int = 1000,
    log_every: int = 50,
    num_samples: int = 8,
    tensorboard: bool = True,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    options = {k: v for k, v in locals().items() if k not in ("run_dir", "resume", "progress")}
    run = Path(run_dir)
    info = distributed.init_distributed(device)
    dev = info.device
    _check_options(options)
    fdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]

    # ---- configuration and data: everything that can be wrong fails here, before any step ------------
    cfg = GeneratorConfig.from_preset(
        preset,
        label_nc=label_nc,
        contain_dontcare_label=contain_dontcare_label,
        use_instance=use_instance,
        crop_size=crop_size,
        aspect_ratio=aspect_ratio,
        num_upsampling_layers=num_upsampling_layers,
        ngf=ngf,
        norm_G=norm_G,
        use_vae=use_vae,
        z_dim=z_dim,
        has_encoder=use_vae,
        norm_E=norm_E,
    )
    if use_vae and cfg.crop_size < 256:
        raise ConfigError(
            f"use_vae needs crop_size >= 256 (got {cfg.crop_size}): the original style encoder resizes images to "
            "256x256 and ends in a 4x4 map only with its sixth layer, which it has from crop size 256 on"
        )
    if use_vae and z_dim != 256:
        raise ConfigError(f"use_vae needs z_dim 256 (got {z_dim}): the original style encoder always encodes 256-d z")
    saved_options = _check_run_dir(run, options, resume)
    mode = dataset_mode or default_dataset_mode(preset)
    dataset = build_dataset(
        cfg,
        mode,
        dataroot=dataroot,
        phase=phase,
        label_dir=label_dir,
        image_dir=image_dir,
        instance_dir=instance_dir,
        preprocess_mode=preprocess_mode,
        load_size=load_size,
        flip=flip,
        procedural_size=procedural_size,
        seed=seed,
        check=data_check,
        pairing_check=pairing_check,
    )
    order = BatchOrder(len(dataset), batch_size, seed)
    vgg = _load_vgg(vgg_weights, dev)
    if beta1 is None:
        beta1 = 0.0 if ttur else 0.5
    if beta2 is None:
        beta2 = 0.9 if ttur else 0.999
    lr_G, lr_D = (lr / 2, lr * 2) if ttur else (lr, lr)

    # ---- networks and optimisers (identical on every process: same seed) ------------------------------
    _seed_everything(seed)
    G = SPADEGenerator(cfg)
    D = MultiscaleDiscriminator(cfg.semantic_nc + 3, ndf, n_layers_D, num_D, norm_D)
    E = ConvEncoder(ngf, cfg.crop_size, norm_E) if use_vae else None
    for net in (G, D, E):
        if net is not None:
            init_weights(net, init_type, init_gain)
            net.to(dev, fdtype).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if ema else None
    g_params = list(G.parameters()) + (list(E.parameters()) if E is not None else [])
    opt_G = torch.optim.Adam(g_params, lr=lr_G, betas=(float(beta1), float(beta2)))
    opt_D = torch.optim.Adam(D.parameters(), lr=lr_D, betas=(float(beta1), float(beta2)))
    use_amp = amp and dev.type == "cuda" and fdtype == torch.float32
    scaler_G = torch.amp.GradScaler("cuda", enabled=use_amp)
    scaler_D = torch.amp.GradScaler("cuda", enabled=use_amp)

    start = 0
    fingerprint = dataset_fingerprint(dataset)
    if resume:
        state = load_state(run / "state.pt")
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        if E is not None:
            E.load_state_dict(state["E"])
        if G_ema is not None:
            G_ema.load_state_dict(state["G_ema"])
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        if use_amp and state.get("scaler_G"):
            scaler_G.load_state_dict(state["scaler_G"])
            scaler_D.load_state_dict(state["scaler_D"])
        restore_rng(state["rng"])
        start = int(state["step"])
        _warn_order_changes(saved_options, options, state, fingerprint)
        log.info("resuming %s at step %d", run, start)

    # ---- processes: sync batch norm where the norm says 'syncbatch', DDP wrappers -------------------
    G_run, D_run, E_run = G, D, E
    if info.distributed:
        if "syncbatch" in norm_G:
            distributed.convert_sync_batchnorm(G, dev)
        if "syncbatch" in norm_D:
            distributed.convert_sync_batchnorm(D, dev)
        if E is not None and "syncbatch" in norm_E:
            distributed.convert_sync_batchnorm(E, dev)
        ids = [dev.index] if dev.type == "cuda" else None
        G_run, D_run = DistributedDataParallel(G, device_ids=ids), DistributedDataParallel(D, device_ids=ids)
        E_run = DistributedDataParallel(E, device_ids=ids) if E is not None else None
    weights = LossWeights(lambda_feat, lambda_vgg, lambda_kld, gan_feat_loss, kld_scale=float(info.world_size))
    loss = SPADELoss(G_run, D_run, D, E_run, G, E, cfg.num_label_ids, weights, VGGLoss(vgg) if vgg else None)

    if workers is None:
        workers = 4 if dev.type == "cuda" else 0
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=RankBatchSampler(order, info.rank, info.world_size, start),
        num_workers=workers,
        pin_memory=dev.type == "cuda",
    )
    batches = iter(loader)
    local = batch_size // info.world_size

    # ---- outputs (process 0) ----------------------------------------------------------------------
    writer = None
    preview = None
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run / "options.json", options)
        outputs.truncate_stats(run / "stats.jsonl", start)
        writer = outputs.open_tensorboard(run, start) if tensorboard else None
        preview = outputs.preview_batch(dataset, num_samples)
        log.info(
            "training %s: ngf %d, %dx%d, %d samples, global batch %d on %d process(es), %s, steps %d -> %d",
            preset, ngf, *cfg.output_hw, len(dataset), batch_size, info.world_size, dev, start, steps,
        )  # fmt: skip

    def save(step: int) -> None:
        """state.pt first (what resume reads), then latest.safetensors; both atomic."""
        if not info.is_main:
            return
        state = {
            "step": step,
            "G": G.state_dict(),
            "D": D.state_dict(),
            "E": E.state_dict() if E is not None else None,
            "G_ema": G_ema.state_dict() if G_ema is not None else None,
            "opt_G": opt_G.state_dict(),
            "opt_D": opt_D.state_dict(),
            "scaler_G": scaler_G.state_dict() if use_amp else None,
            "scaler_D": scaler_D.state_dict() if use_amp else None,
            "rng": capture_rng(),
            "data": {"seed": seed, "batch_size": batch_size, "fingerprint": fingerprint},
            "world_size": info.world_size,
        }
        save_state(run / "state.pt", state)
        save_model(run / "latest.safetensors", outputs.native_model(cfg, G_ema or G, E, run, step, ema))

    # ---- the loop ---------------------------------------------------------------------------------
    stats: dict[str, float] = {}
    t_start = time.perf_counter()
    bar = outputs.progress_bar(progress and info.is_main, start, steps)
    with outputs.log_through(bar):  # log lines above the progress bar, not through it
        for step in range(start, steps):
            f = 1.0 if lr_decay_steps <= 0 else min(1.0, (steps - step) / lr_decay_steps)
            for group in opt_G.param_groups:
                group["lr"] = lr_G * f
            for group in opt_D.param_groups:
                group["lr"] = lr_D * f
            batch = next(batches)
            seg = loss.semantics(batch, dev).to(fdtype)  # (n, semantic_nc, H, W), n = batch_size / processes
            real = batch["image"].to(dev, fdtype, non_blocking=True)  # (n, 3, H, W) in [-1, 1]
            eps_g, eps_d = _vae_noise(use_vae, seed, step, batch_size, z_dim, info.rank * local, local, dev, fdtype)

            # Gmain: generator (+ encoder) step; D takes no gradient
            D.requires_grad_(False)
            opt_G.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                g_total, g_losses, _ = loss.gmain(seg, real, eps_g)
            scaler_G.scale(g_total).backward()
            scaler_G.step(opt_G)
            scaler_G.update()
            if G_ema is not None:
                _update_ema(G_ema, G, ema_decay)

            # Dmain: discriminator step on the same batch, fake regenerated by the updated G
            D.requires_grad_(True)
            opt_D.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                d_total, d_losses, = loss.dmain(seg, real, eps_d)  # fmt: skip
            scaler_D.scale(d_total).backward()
            scaler_D.step(opt_D)
            scaler_D.update()

            done = step + 1
            if done % log_every == 0 or done == steps:
                stats = distributed.mean_across({**g_losses, **d_losses}, info)
                if info.is_main:
                    outputs.record_losses(run, writer, done, stats, lr_G * f, lr_D * f, time.perf_counter() - t_start)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items()}, refresh=False)
            bar.update(1)
            if info.is_main and (done % sample_every == 0 or done == steps):
                outputs.write_samples(run, writer, done, preview, G_ema or G, E, cfg, dev)
            if done % save_every == 0 or done == steps:
                save(done)
            if info.is_main and done % snapshot_every == 0:
                outputs.write_snapshot(run, done, cfg, G_ema or G, E, options, ema)
    bar.close()
    if start >= steps and info.is_main:
        log.info("%s is already at step %d (>= --steps %d): nothing to do", run, start, steps)
    del batches
    if writer is not None:
        writer.close()
    distributed.barrier(info)
    elapsed = time.perf_counter() - t_start
    if info.is_main and start < steps:
        log.info("done: %d steps in %.1f s; model %s", steps - start, elapsed, run / "latest.safetensors")
    return {"step": max(start, steps), "losses": stats, "seconds": elapsed}


# ---- helpers ------------------------------------------------------------------------------------------
def _check_options(o: dict[str, Any]) -> None:
    for name in ("batch_size", "steps", "save_every", "snapshot_every", "sample_every", "log_every", "ndf"):
        if not isinstance(o[name], int) or o[name] < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {o[name]!r}")
    if o["num_D"] < 1 or o["n_layers_D"] < 1:
        raise ConfigError(f"num_D and n_layers_D must be >= 1, got {o['num_D']} and {o['n_layers_D']}")
    if not 0.0 <= o["ema_decay"] < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1), got {o['ema_decay']}")
    if o["dtype"] not in ("float32", "float64"):
        raise ConfigError(f"dtype must be float32 or float64, got {o['dtype']!r}")
    if o["lr"] <= 0:
        raise ConfigError(f"lr must be > 0, got {o['lr']}")


def _check_run_dir(run: Path, options: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """A new run refuses a directory that holds one; a resumed run refuses changed model options."""
    if not resume:
        if (run / "state.pt").exists():
            raise ConfigError(f"{run} already holds a training run: pass --resume to continue it, or another --out")
        return None
    path = run / "options.json"
    if not path.is_file() or not (run / "state.pt").is_file():
        raise ConfigError(f"nothing to resume in {run}: no options.json / state.pt (start it without --resume)")
    saved = json.loads(path.read_text())
    changed = [
        f"{k}: run has {saved.get(k)!r}, now {options[k]!r}" for k in MODEL_OPTIONS if saved.get(k) != options[k]
    ]
    if changed:
        raise ConfigError(f"cannot resume {run} with options that change the model ({'; '.join(changed)})")
    return saved


def _warn_order_changes(saved: dict[str, Any] | None, options: dict[str, Any], state: dict, fingerprint: str) -> None:
    changed = [k for k in ORDER_OPTIONS if saved is not None and saved.get(k) != options[k]]
    if state["data"]["fingerprint"] != fingerprint:
        changed.append("dataset files")
    if changed:
        log.warning("resuming with changed %s: the data order differs from an uninterrupted run", ", ".join(changed))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_vgg(path: str | None, dev: torch.device) -> nn.Module | None:
    if path is None:
        log.warning("VGG perceptual loss is off: no --vgg-weights given")
        return None
    from spade_rt.training.vgg import load_vgg19

    return load_vgg19(path).to(dev)


def _vae_noise(use_vae: bool, seed: int, step: int, batch: int, z_dim: int, offset: int, n: int, dev, dtype):
    """eps for Gmain and Dmain: drawn for the global batch from (seed, step), this process's rows kept."""
    if not use_vae:
        return None, None
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, 0xAE]).generate_state(1)[0]))
    eps = torch.randn(2, batch, z_dim, generator=gen)[:, offset : offset + n]  # (2, n, z_dim)
    return eps[0].to(dev, dtype), eps[1].to(dev, dtype)


@torch.no_grad()
def _update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * net for parameters; buffers (BN statistics, SN u/v) copied."""
    params = dict(net.named_parameters())
    for name, p in ema.named_parameters():
        p.lerp_(params[name].detach(), 1.0 - decay)
    buffers = dict(net.named_buffers())
    for name, b in ema.named_buffers():
        b.copy_(buffers[name])
