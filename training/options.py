"""A training run's options as a few typed groups, and the command line that fills them (torch-free).

``TrainOptions`` groups the settings the way the loop uses them (as NVlabs EDM groups network, loss,
optimizer and data kwargs): ``data``, ``network`` (generator + discriminator), ``loss``, ``optim`` and
``outputs``. The dataclass defaults are the only defaults. ``RUN/options.json`` stores the flat form
(``TrainOptions.flat()``: one key per field, the names of the original SPADE options where they exist), so
a resumed run reads its own values back with ``TrainOptions.from_flat``.

Every command-line option's ``dest`` is a field name; an option left out is absent from the parsed namespace
(``argparse.SUPPRESS``), so the dataclass default applies, or, with ``--resume``, the run's saved value.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spade_rt.errors import ConfigError
from spade_rt.presets import PRESETS, UPSAMPLING_LAYERS, add_network_flags

if TYPE_CHECKING:
    from spade_rt.model.config import GeneratorConfig

S = argparse.SUPPRESS
DATASET_MODES = ("coco", "ade20k", "cityscapes", "facades", "custom", "procedural")
PREPROCESS_MODES = ("resize_and_crop", "scale_width_and_crop", "crop", "fixed", "none")


@dataclass
class DataOptions:
    dataset_mode: str | None = None  # default: the preset's layout; procedural for 'landscape'
    dataroot: str | None = None
    phase: str = "train"
    label_dir: str | None = None
    image_dir: str | None = None
    instance_dir: str | None = None
    preprocess_mode: str | None = None  # default: the layout's original mode (resize_and_crop / fixed)
    load_size: int | None = None  # default: crop_size * 286/256 for crop modes
    flip: bool = True
    procedural_size: int = 10000
    data_check: bool = True
    pairing_check: bool = True
    workers: int | None = None  # default: 4 on CUDA, 0 on CPU


@dataclass
class NetworkOptions:
    """The generator (None: the preset's value), its style encoder and the discriminator."""

    preset: str = "landscape"
    label_nc: int | None = None
    contain_dontcare_label: bool | None = None
    use_instance: bool | None = None
    crop_size: int | None = None
    aspect_ratio: float | None = None
    num_upsampling_layers: str | None = None
    ngf: int = 64
    norm_G: str = "spectralspadesyncbatch3x3"
    use_vae: bool = False
    z_dim: int = 256
    norm_E: str = "spectralinstance"
    init_type: str = "xavier"
    init_gain: float = 0.02
    ndf: int = 64
    n_layers_D: int = 4
    num_D: int = 2
    norm_D: str = "spectralinstance"


@dataclass
class LossOptions:
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    lambda_kld: float = 0.05
    gan_feat_loss: bool = True
    vgg_weights: str | None = None


@dataclass
class OptimizerOptions:
    batch_size: int = 1  # global: split over the processes
    steps: int = 100_000
    lr: float = 2e-4
    ttur: bool = True  # G lr/2, D lr*2
    beta1: float | None = None  # default 0 with TTUR, else 0.5
    beta2: float | None = None  # default 0.9 with TTUR, else 0.999
    lr_decay_steps: int = 0  # linear decay to zero over the last N steps
    ema: bool = False
    ema_decay: float = 0.999
    amp: bool = True  # fp16 autocast + GradScaler, CUDA only
    seed: int = 0
    device: str | None = None
    dtype: str = "float32"  # float64: for verification (1-vs-N-process equality to ~1e-12)


@dataclass
class OutputOptions:
    save_every: int = 1000
    snapshot_every: int = 10_000
    sample_every: int = 1000
    log_every: int = 50
    num_samples: int = 8
    tensorboard: bool = True


GROUPS = {"data": DataOptions, "network": NetworkOptions, "loss": LossOptions, "optim": OptimizerOptions,
          "outputs": OutputOptions}  # fmt: skip


@dataclass
class TrainOptions:
    data: DataOptions = field(default_factory=DataOptions)
    network: NetworkOptions = field(default_factory=NetworkOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    optim: OptimizerOptions = field(default_factory=OptimizerOptions)
    outputs: OutputOptions = field(default_factory=OutputOptions)

    @staticmethod
    def field_names() -> set[str]:
        return {f.name for group in GROUPS.values() for f in dataclasses.fields(group)}

    @classmethod
    def from_flat(cls, flat: dict[str, Any] | None = None, **overrides: Any) -> TrainOptions:
        """Flat ``{field: value}`` (options.json, the parsed command line) -> grouped options."""
        values = {**(flat or {}), **overrides}
        unknown = sorted(set(values) - cls.field_names())
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        groups = {}
        for name, group in GROUPS.items():
            keys = {f.name for f in dataclasses.fields(group)}
            groups[name] = group(**{k: v for k, v in values.items() if k in keys})
        return cls(**groups)

    def flat(self) -> dict[str, Any]:
        """One key per field (what RUN/options.json holds)."""
        out: dict[str, Any] = {}
        for name in GROUPS:
            out.update(dataclasses.asdict(getattr(self, name)))
        return out


# ---- checks: every value of a run, torch-free (`spade-rt train` runs them before torch is imported) -------
# whole-number options and their least value
COUNTS = {"batch_size": 1, "steps": 1, "save_every": 1, "snapshot_every": 1, "sample_every": 1, "log_every": 1,
          "ndf": 1, "num_D": 1, "n_layers_D": 1, "num_samples": 1, "procedural_size": 1,
          "lr_decay_steps": 0}  # fmt: skip


def check_train_options(o: TrainOptions, world_size: int = 1) -> GeneratorConfig:
    """Every value of ``o`` checked, in the flags' names (a field's flag is --field-name): counts and rates,
    the generator (the preset's values filled in; the crop size a multiple of the generator's size cell; the
    original style encoder's limits) and batch norm's need for two values per channel with ``world_size``
    processes. Returns the generator's config. torch-free: a bad value costs no torch import."""
    from spade_rt.validation import CLI, check_int_option

    flat = o.flat()
    for key, lo in COUNTS.items():
        check_int_option(key, flat[key], lo, None, CLI)
    if flat["workers"] is not None:
        check_int_option("workers", flat["workers"], 0, None, CLI, "a number of processes")
    if not 0.0 <= o.optim.ema_decay < 1.0:
        raise ConfigError(f"{CLI.say('ema_decay', o.optim.ema_decay)}: expected a decay in [0, 1)")
    if o.optim.dtype not in ("float32", "float64"):
        raise ConfigError(f"{CLI.say('dtype', o.optim.dtype)}: expected float32 or float64")
    if not o.optim.lr > 0:
        raise ConfigError(f"{CLI.say('lr', o.optim.lr)}: expected a learning rate > 0")
    cfg = generator_config(o.network)
    check_batch_statistics(cfg, o.optim.batch_size, world_size)
    return cfg


def generator_config(n: NetworkOptions) -> GeneratorConfig:
    """The preset's generator with the options given; the crop size and the original encoder's limits checked."""
    from spade_rt.model.config import GeneratorConfig

    preset = PRESETS.get(n.preset)
    upsampling = n.num_upsampling_layers or (preset.num_upsampling_layers if preset else "normal")
    crop, cell = n.crop_size or (preset.crop_size if preset else 256), 2 ** UPSAMPLING_LAYERS.get(upsampling, 5)
    if isinstance(crop, int) and crop > 0 and crop % cell:  # else the generator quietly trains at a multiple
        raise ConfigError(
            f"--crop-size {crop}: expected a multiple of {cell} ({upsampling!r} upsampling doubles the generator's "
            f"first map {UPSAMPLING_LAYERS[upsampling]} times), e.g. {max(cell, round(crop / cell) * cell)}"
        )
    cfg = GeneratorConfig.from_preset(
        n.preset,
        label_nc=n.label_nc,
        contain_dontcare_label=n.contain_dontcare_label,
        use_instance=n.use_instance,
        crop_size=n.crop_size,
        aspect_ratio=n.aspect_ratio,
        num_upsampling_layers=n.num_upsampling_layers,
        ngf=n.ngf,
        norm_G=n.norm_G,
        use_vae=n.use_vae,
        z_dim=n.z_dim,
        has_encoder=n.use_vae,
        norm_E=n.norm_E,
    )
    if n.use_vae and cfg.crop_size < 256:
        raise ConfigError(
            f"use_vae needs crop_size >= 256 (got {cfg.crop_size}): the original style encoder resizes images to "
            "256x256 and ends in a 4x4 map only with its sixth layer, which it has from crop size 256 on"
        )
    if n.use_vae and n.z_dim != 256:
        raise ConfigError(f"use_vae needs z_dim 256 (got {n.z_dim}): the original style encoder always encodes 256-d z")
    return cfg


def check_batch_statistics(cfg: GeneratorConfig, batch_size: int, world_size: int) -> None:
    """Batch norm in training needs more than one value per channel: the first feature map (sh x sw) of a small
    crop times the batch of one process must hold two at least (else torch fails at the first step)."""
    sh, sw = cfg.latent_hw
    per_process = max(1, batch_size // max(1, world_size))
    if cfg.param_free_norm == "batch" and per_process * sh * sw < 2:
        raise ConfigError(
            f"--batch-size {batch_size} with --crop-size {cfg.crop_size} gives batch norm one value per channel on "
            f"the generator's first {sh}x{sw} map ({per_process} per process): expected --batch-size 2 or more per "
            "process, a larger --crop-size, or an instance-norm --norm-G (e.g. spectralspadeinstance3x3)"
        )


TRAIN_DESCRIPTION = """\
Train a SPADE generator (hinge GAN + multiscale feature matching [+ VGG19] [+ KLD], TTUR Adam) and write
RUN/latest.safetensors, a complete spade-rt model replaced atomically at every save (export it with
`spade-rt export RUN/latest -o model.onnx`). RUN also gets state.pt (resume), options.json, snapshots/,
samples/ (label | synthesized | real grids), stats.jsonl and tensorboard/. A killed run loses at most the
steps since the last save; --resume continues exactly. Several GPUs or nodes:
`torchrun --nproc_per_node N -m spade_rt.training.train ...` (--batch-size is the global batch).
"""

TRAIN_EPILOG = """\
examples:
  spade-rt train --preset landscape --ngf 8 --crop-size 128 --ndf 32 --batch-size 4 --steps 800 --out runs/demo
  spade-rt train --preset coco --dataroot datasets/coco_stuff --batch-size 32 --steps 200000 \\
      --vgg-weights vgg19.pth --out runs/coco
  spade-rt train --out runs/coco --resume --steps 300000
"""


def switch_off(group: Any, flag: str, help: str) -> None:
    """A ``--no-X`` flag that sets the field X (dashes as underscores) to False."""
    group.add_argument(
        flag, dest=flag.removeprefix("--no-").replace("-", "_"), action="store_false", default=S, help=help
    )


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Register every training option on ``p``."""
    p.add_argument("--out", dest="run_dir", required=True, metavar="RUN", help="run directory (created)")
    p.add_argument(
        "--resume",
        action="store_true",
        default=S,
        help="continue RUN from its last save; options not given are the run's own",
    )

    g = p.add_argument_group("data")
    g.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=S,
        help="label conventions and size (default landscape: the procedural demo scenes, no download)",
    )
    g.add_argument("--dataroot", default=S, help="dataset root in the original layout of --dataset-mode")
    g.add_argument(
        "--dataset-mode",
        choices=DATASET_MODES,
        default=S,
        help="file layout (default: the preset's; procedural for landscape): coco = {phase}_label/_img/_inst, "
        "ade20k = *_train_*.png/.jpg, cityscapes = gtFine/ + leftImg8bit/, custom = --label-dir/--image-dir",
    )
    g.add_argument("--phase", default=S, help="train (default) or val: which files of the layout")
    g.add_argument("--label-dir", default=S, help="custom mode: label maps (one channel of class ids)")
    g.add_argument("--image-dir", default=S, help="custom mode: photos, paired with labels by file name")
    g.add_argument("--instance-dir", default=S, help="custom mode: instance maps (models with instance edges)")
    g.add_argument(
        "--preprocess-mode",
        choices=PREPROCESS_MODES,
        default=S,
        help="the original's modes (default: resize_and_crop; fixed for cityscapes and procedural)",
    )
    g.add_argument("--load-size", type=int, default=S, help="resize target before cropping (default crop*286/256)")
    switch_off(g, "--no-flip", "no random horizontal flips")
    g.add_argument("--procedural-size", type=int, default=S, help="procedural mode: number of scenes (10000)")
    switch_off(g, "--no-data-check", "skip reading every label map at start (ids are still checked when loaded)")
    switch_off(g, "--no-pairing-check", "allow label maps and images of different sizes (both are resized)")
    g.add_argument("--workers", type=int, default=S, help="data loader processes (default 4 on CUDA, 0 on CPU)")

    g = p.add_argument_group("generator (default: the preset's value)")
    add_network_flags(g, S)
    g.add_argument("--ngf", type=int, default=S, help="generator width (default 64)")
    g.add_argument("--norm-G", default=S, help="default spectralspadesyncbatch3x3 (sync BN across processes)")
    g.add_argument("--use-vae", action="store_true", default=S, help="train a style encoder + KLD (z = mu + eps*std)")
    g.add_argument("--z-dim", type=int, default=S, help="VAE latent size (default 256)")
    g.add_argument("--norm-E", default=S, help="encoder norm (default spectralinstance)")
    g.add_argument("--init-type", default=S, help="weight init (default xavier)")
    g.add_argument("--init-gain", type=float, default=S, help="init gain (default 0.02)")

    g = p.add_argument_group("discriminator")
    g.add_argument("--ndf", type=int, default=S, help="discriminator width (default 64)")
    g.add_argument("--n-layers-D", type=int, default=S, help="layers per PatchGAN (default 4)")
    g.add_argument("--num-D", type=int, default=S, help="number of scales (default 2)")
    g.add_argument("--norm-D", default=S, help="default spectralinstance")

    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=S, help="global batch, split over processes (default 1)")
    g.add_argument("--steps", type=int, default=S, help="train until this step (default 100000)")
    g.add_argument("--lr", type=float, default=S, help="base learning rate (default 2e-4; TTUR: G lr/2, D lr*2)")
    switch_off(g, "--no-ttur", "same lr for G and D")
    g.add_argument("--beta1", type=float, default=S, help="Adam beta1 (default 0; 0.5 with --no-ttur)")
    g.add_argument("--beta2", type=float, default=S, help="Adam beta2 (default 0.9; 0.999 with --no-ttur)")
    g.add_argument("--lr-decay-steps", type=int, default=S, help="linear decay to 0 over the last N steps (0)")
    g.add_argument("--lambda-feat", type=float, default=S, help="feature matching weight (default 10)")
    g.add_argument("--lambda-vgg", type=float, default=S, help="VGG perceptual weight (default 10)")
    g.add_argument("--lambda-kld", type=float, default=S, help="KLD weight (default 0.05)")
    switch_off(
        g, "--no-gan-feat-loss", "no discriminator feature matching loss (on by default, weighted by --lambda-feat)"
    )
    g.add_argument(
        "--vgg-weights",
        default=S,
        metavar="PTH",
        help="torchvision VGG19 state dict file for the perceptual loss; without it the loss is off",
    )
    g.add_argument("--ema", action="store_true", default=S, help="keep an EMA of G; RUN/latest holds the EMA weights")
    g.add_argument("--ema-decay", type=float, default=S, help="EMA decay per step (default 0.999)")
    switch_off(g, "--no-amp", "no fp16 autocast on CUDA")
    g.add_argument("--seed", type=int, default=S, help="weights, data order and augmentation (default 0)")
    g.add_argument("--device", default=S, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument(
        "--dtype", choices=("float32", "float64"), default=S, help="float64 only to verify exactness (default float32)"
    )

    g = p.add_argument_group("outputs")
    g.add_argument("--save-every", type=int, default=S, help="write state.pt + latest every N steps (1000)")
    g.add_argument("--snapshot-every", type=int, default=S, help="keep snapshots/model-STEP every N steps (10000)")
    g.add_argument("--sample-every", type=int, default=S, help="write a sample grid every N steps (1000)")
    g.add_argument("--log-every", type=int, default=S, help="record losses every N steps (50)")
    g.add_argument("--num-samples", type=int, default=S, help="samples in each grid (8)")
    switch_off(g, "--no-tensorboard", "write no event files to RUN/tensorboard/ (stats.jsonl keeps the losses)")
