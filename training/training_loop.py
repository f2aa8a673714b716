"""The SPADE training loop: one straight function over a ``TrainOptions`` (training/options.py), read top
to bottom: configuration and data, networks, optimisers, resume, losses, loader, outputs, then the steps.
Each piece is a function of one job below it.

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
import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from spade_rt.errors import ConfigError
from spade_rt.io_utils import atomic_write_json, sweep_dead_temporaries
from spade_rt.model.config import GeneratorConfig
from spade_rt.model.layers import init_weights
from spade_rt.model.native_format import save_model
from spade_rt.model.networks import ConvEncoder, SPADEGenerator
from spade_rt.training import distributed, outputs
from spade_rt.training.dataset import (
    BatchOrder,
    RankBatchSampler,
    build_dataset,
    dataset_fingerprint,
    default_dataset_mode,
)
from spade_rt.training.discriminator import MultiscaleDiscriminator
from spade_rt.training.loss import LossWeights, SPADELoss, VGGLoss
from spade_rt.training.options import NetworkOptions, OptimizerOptions, TrainOptions, check_train_options
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


@dataclass
class Networks:
    G: SPADEGenerator
    D: MultiscaleDiscriminator
    E: ConvEncoder | None
    G_ema: SPADEGenerator | None  # the exported weights when ``ema``


@dataclass
class Optimizers:
    opt_G: torch.optim.Adam
    opt_D: torch.optim.Adam
    scaler_G: torch.amp.GradScaler
    scaler_D: torch.amp.GradScaler
    lr_G: float
    lr_D: float
    use_amp: bool


def training_loop(
    run_dir: str | Path, options: TrainOptions, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) the run in ``run_dir``; returns {step, losses, seconds}."""
    o = options
    flat = o.flat()
    run = Path(run_dir)
    info = distributed.init_distributed(o.optim.device)
    dev = info.device
    # configuration and data: everything that can be wrong fails here, before any step (`spade-rt train`
    # ran the same checks before importing torch; here with the real number of processes)
    cfg = check_train_options(o, info.world_size)
    fdtype = {"float32": torch.float32, "float64": torch.float64}[o.optim.dtype]
    saved_options = _check_run_dir(run, flat, resume)
    for folder in (run, run / "snapshots", run / "samples"):  # what a run killed while saving left behind
        sweep_dead_temporaries(folder, folder=True)
    outputs.drop_orphan_sidecars(run)
    dataset = build_dataset_for(cfg, o)
    order = BatchOrder(len(dataset), o.optim.batch_size, o.optim.seed)
    vgg = _load_vgg(o.loss.vgg_weights, dev)

    nets = build_networks(cfg, o.network, o.optim, dev, fdtype)
    opts = build_optimizers(nets, o.optim, dev, fdtype)
    start = 0
    fingerprint = dataset_fingerprint(dataset)
    if resume:
        state = restore(run, nets, opts)
        start = int(state["step"])
        _warn_order_changes(saved_options, flat, state, fingerprint)
        log.info("resuming %s at step %d", run, start)
    loss = build_loss(nets, cfg, o, info, dev, vgg)

    workers = o.data.workers if o.data.workers is not None else (4 if dev.type == "cuda" else 0)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=RankBatchSampler(order, info.rank, info.world_size, start),
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        # workers start from a fresh interpreter: a forked child inherits the parent's thread pools (ONNX Runtime,
        # OpenVINO, BLAS) with their locks in whatever state they were, which can crash (seen in the test suite)
        multiprocessing_context="spawn" if workers > 0 else None,
        persistent_workers=workers > 0,  # spawned workers start once per run, not once per epoch
    )
    batches = iter(loader)

    writer = preview = None
    if info.is_main:  # outputs: process 0
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run / "options.json", flat)
        outputs.truncate_stats(run / "stats.jsonl", start)
        writer = outputs.open_tensorboard(run, start) if o.outputs.tensorboard else None
        preview = outputs.preview_batch(dataset, o.outputs.num_samples)
        log.info(
            "training %s: ngf %d, %dx%d, %d samples, global batch %d on %d process(es), %s, steps %d -> %d",
            o.network.preset, o.network.ngf, *cfg.output_hw, len(dataset), o.optim.batch_size, info.world_size,
            dev, start, o.optim.steps,
        )  # fmt: skip

    def save(step: int) -> None:
        if info.is_main:
            save_run(run, step, nets, opts, cfg, o, info, fingerprint)

    # the loop
    steps, out = o.optim.steps, o.outputs
    stats: dict[str, float] = {}
    t_start = time.perf_counter()
    bar = outputs.progress_bar(progress and info.is_main, start, steps)
    with outputs.log_through(bar):  # log lines above the progress bar, not through it
        for step in range(start, steps):
            batch = next(batches)
            g_losses, d_losses, f = train_step(step, batch, nets, opts, loss, o, info, dev, fdtype)
            done = step + 1
            if done % out.log_every == 0 or done == steps:
                stats = distributed.mean_across({**g_losses, **d_losses}, info)
                if info.is_main:
                    elapsed = time.perf_counter() - t_start
                    outputs.record_losses(run, writer, done, stats, opts.lr_G * f, opts.lr_D * f, elapsed)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items()}, refresh=False)
            bar.update(1)
            if info.is_main and (done % out.sample_every == 0 or done == steps):
                outputs.write_samples(run, writer, done, preview, nets.G_ema or nets.G, nets.E, cfg, dev)
            if done % out.save_every == 0 or done == steps:
                save(done)
            if info.is_main and done % out.snapshot_every == 0:
                outputs.write_snapshot(run, done, cfg, nets.G_ema or nets.G, nets.E, flat, o.optim.ema)
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


# ---- the pieces, in the order the loop uses them ----------------------------------------------------------
def build_dataset_for(cfg: GeneratorConfig, o: TrainOptions):
    d = o.data
    return build_dataset(
        cfg,
        d.dataset_mode or default_dataset_mode(o.network.preset),
        dataroot=d.dataroot,
        phase=d.phase,
        label_dir=d.label_dir,
        image_dir=d.image_dir,
        instance_dir=d.instance_dir,
        preprocess_mode=d.preprocess_mode,
        load_size=d.load_size,
        flip=d.flip,
        procedural_size=d.procedural_size,
        seed=o.optim.seed,
        check=d.data_check,
        pairing_check=d.pairing_check,
    )


def build_networks(cfg: GeneratorConfig, n: NetworkOptions, opt: OptimizerOptions, dev, fdtype) -> Networks:
    """G, D (and E) initialised from the seed: identical on every process."""
    _seed_everything(opt.seed)
    G = SPADEGenerator(cfg)
    D = MultiscaleDiscriminator(cfg.semantic_nc + 3, n.ndf, n.n_layers_D, n.num_D, n.norm_D)
    E = ConvEncoder(n.ngf, cfg.crop_size, n.norm_E) if n.use_vae else None
    for net in (G, D, E):
        if net is not None:
            init_weights(net, n.init_type, n.init_gain)
            net.to(dev, fdtype).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if opt.ema else None
    return Networks(G, D, E, G_ema)


def build_optimizers(nets: Networks, opt: OptimizerOptions, dev, fdtype) -> Optimizers:
    """Adam for G (+ E) and D with TTUR learning rates; GradScalers for CUDA autocast."""
    beta1 = opt.beta1 if opt.beta1 is not None else (0.0 if opt.ttur else 0.5)
    beta2 = opt.beta2 if opt.beta2 is not None else (0.9 if opt.ttur else 0.999)
    lr_G, lr_D = (opt.lr / 2, opt.lr * 2) if opt.ttur else (opt.lr, opt.lr)
    g_params = list(nets.G.parameters()) + (list(nets.E.parameters()) if nets.E is not None else [])
    opt_G = torch.optim.Adam(g_params, lr=lr_G, betas=(float(beta1), float(beta2)))
    opt_D = torch.optim.Adam(nets.D.parameters(), lr=lr_D, betas=(float(beta1), float(beta2)))
    use_amp = opt.amp and dev.type == "cuda" and fdtype == torch.float32
    scaler_G = torch.amp.GradScaler("cuda", enabled=use_amp)
    scaler_D = torch.amp.GradScaler("cuda", enabled=use_amp)
    return Optimizers(opt_G, opt_D, scaler_G, scaler_D, lr_G, lr_D, use_amp)


def restore(run: Path, nets: Networks, opts: Optimizers) -> dict:
    """Networks, optimisers, scalers and RNG from RUN/state.pt; returns the state (its "step" continues)."""
    state = load_state(run / "state.pt")
    nets.G.load_state_dict(state["G"])
    nets.D.load_state_dict(state["D"])
    if nets.E is not None:
        nets.E.load_state_dict(state["E"])
    if nets.G_ema is not None:
        nets.G_ema.load_state_dict(state["G_ema"])
    opts.opt_G.load_state_dict(state["opt_G"])
    opts.opt_D.load_state_dict(state["opt_D"])
    if opts.use_amp and state.get("scaler_G"):
        opts.scaler_G.load_state_dict(state["scaler_G"])
        opts.scaler_D.load_state_dict(state["scaler_D"])
    restore_rng(state["rng"])
    return state


def build_loss(nets: Networks, cfg: GeneratorConfig, o: TrainOptions, info, dev, vgg) -> SPADELoss:
    """Sync batch norm where a norm says 'syncbatch', DDP wrappers over processes, then the SPADE losses."""
    G_run, D_run, E_run = nets.G, nets.D, nets.E
    n = o.network
    if info.distributed:
        if "syncbatch" in n.norm_G:
            distributed.convert_sync_batchnorm(nets.G, dev)
        if "syncbatch" in n.norm_D:
            distributed.convert_sync_batchnorm(nets.D, dev)
        if nets.E is not None and "syncbatch" in n.norm_E:
            distributed.convert_sync_batchnorm(nets.E, dev)
        ids = [dev.index] if dev.type == "cuda" else None
        G_run, D_run = DistributedDataParallel(nets.G, device_ids=ids), DistributedDataParallel(nets.D, device_ids=ids)
        E_run = DistributedDataParallel(nets.E, device_ids=ids) if nets.E is not None else None
    weights = LossWeights(**dataclasses.asdict(o.loss), kld_scale=float(info.world_size))
    return SPADELoss(
        G_run, D_run, nets.D, E_run, nets.G, nets.E, cfg.num_label_ids, weights, VGGLoss(vgg) if vgg else None
    )


def train_step(step: int, batch, nets: Networks, opts: Optimizers, loss: SPADELoss, o: TrainOptions, info, dev, fdtype):
    """One global batch: learning rate of this step, Gmain (+ EMA), Dmain. Returns (G losses, D losses, lr factor)."""
    opt = o.optim
    f = 1.0 if opt.lr_decay_steps <= 0 else min(1.0, (opt.steps - step) / opt.lr_decay_steps)
    for group in opts.opt_G.param_groups:
        group["lr"] = opts.lr_G * f
    for group in opts.opt_D.param_groups:
        group["lr"] = opts.lr_D * f
    local = opt.batch_size // info.world_size
    seg = loss.semantics(batch, dev).to(fdtype)  # (n, semantic_nc, H, W), n = batch_size / processes
    real = batch["image"].to(dev, fdtype, non_blocking=True)  # (n, 3, H, W) in [-1, 1]
    z_dim = o.network.z_dim
    eps_g, eps_d = _vae_noise(
        o.network.use_vae, opt.seed, step, opt.batch_size, z_dim, info.rank * local, local, dev, fdtype
    )

    # Gmain: generator (+ encoder) step; D takes no gradient
    nets.D.requires_grad_(False)
    opts.opt_G.zero_grad(set_to_none=True)
    with torch.autocast(dev.type, dtype=torch.float16, enabled=opts.use_amp):
        g_total, g_losses, _ = loss.gmain(seg, real, eps_g)
    opts.scaler_G.scale(g_total).backward()
    opts.scaler_G.step(opts.opt_G)
    opts.scaler_G.update()
    if nets.G_ema is not None:
        _update_ema(nets.G_ema, nets.G, opt.ema_decay)

    # Dmain: discriminator step on the same batch, fake regenerated by the updated G
    nets.D.requires_grad_(True)
    opts.opt_D.zero_grad(set_to_none=True)
    with torch.autocast(dev.type, dtype=torch.float16, enabled=opts.use_amp):
        d_total, d_losses, = loss.dmain(seg, real, eps_d)  # fmt: skip
    opts.scaler_D.scale(d_total).backward()
    opts.scaler_D.step(opts.opt_D)
    opts.scaler_D.update()
    return g_losses, d_losses, f


def save_run(run: Path, step: int, nets: Networks, opts: Optimizers, cfg, o: TrainOptions, info, fingerprint) -> None:
    """state.pt first (what resume reads), then latest.safetensors; both atomic."""
    state = {
        "step": step,
        "G": nets.G.state_dict(),
        "D": nets.D.state_dict(),
        "E": nets.E.state_dict() if nets.E is not None else None,
        "G_ema": nets.G_ema.state_dict() if nets.G_ema is not None else None,
        "opt_G": opts.opt_G.state_dict(),
        "opt_D": opts.opt_D.state_dict(),
        "scaler_G": opts.scaler_G.state_dict() if opts.use_amp else None,
        "scaler_D": opts.scaler_D.state_dict() if opts.use_amp else None,
        "rng": capture_rng(),
        "data": {"seed": o.optim.seed, "batch_size": o.optim.batch_size, "fingerprint": fingerprint},
        "world_size": info.world_size,
    }
    save_state(run / "state.pt", state)
    model = outputs.native_model(cfg, nets.G_ema or nets.G, nets.E, run, step, o.optim.ema)
    save_model(run / "latest.safetensors", model)


# ---- helpers ------------------------------------------------------------------------------------------
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
