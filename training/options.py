"""Command-line options of ``spade-rt train`` and ``python -m spade_rt.training.train`` (torch-free).

Every option's ``dest`` is a keyword of ``training_loop``; an option left out is absent from the parsed
namespace (``argparse.SUPPRESS``), so the loop's own default applies, or, with ``--resume``, the run's
saved value. Defaults quoted in the help are the loop's.
"""

from __future__ import annotations

import argparse

from spade_rt.presets import PRESETS

S = argparse.SUPPRESS
DATASET_MODES = ("coco", "ade20k", "cityscapes", "facades", "custom", "procedural")
PREPROCESS_MODES = ("resize_and_crop", "scale_width_and_crop", "crop", "fixed", "none")

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
    g.add_argument("--no-flip", dest="flip", action="store_false", default=S, help="no random horizontal flips")
    g.add_argument("--procedural-size", type=int, default=S, help="procedural mode: number of scenes (10000)")
    g.add_argument(
        "--no-data-check",
        dest="data_check",
        action="store_false",
        default=S,
        help="skip reading every label map at start (ids are still checked when loaded)",
    )
    g.add_argument(
        "--no-pairing-check",
        dest="pairing_check",
        action="store_false",
        default=S,
        help="allow label maps and images of different sizes (both are resized)",
    )
    g.add_argument("--workers", type=int, default=S, help="data loader processes (default 4 on CUDA, 0 on CPU)")

    g = p.add_argument_group("generator (default: the preset's value)")
    g.add_argument("--label-nc", type=int, default=S, help="classes without dontcare")
    g.add_argument("--instance", dest="use_instance", action=argparse.BooleanOptionalAction, default=S)
    g.add_argument("--dontcare", dest="contain_dontcare_label", action=argparse.BooleanOptionalAction, default=S)
    g.add_argument("--crop-size", type=int, default=S, help="output width (a multiple of 32; 64 for 'more')")
    g.add_argument("--aspect-ratio", type=float, default=S, help="width / height")
    g.add_argument("--num-upsampling-layers", choices=("normal", "more", "most"), default=S)
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
    g.add_argument("--no-ttur", dest="ttur", action="store_false", default=S, help="same lr for G and D")
    g.add_argument("--beta1", type=float, default=S, help="Adam beta1 (default 0; 0.5 with --no-ttur)")
    g.add_argument("--beta2", type=float, default=S, help="Adam beta2 (default 0.9; 0.999 with --no-ttur)")
    g.add_argument("--lr-decay-steps", type=int, default=S, help="linear decay to 0 over the last N steps (0)")
    g.add_argument("--lambda-feat", type=float, default=S, help="feature matching weight (default 10)")
    g.add_argument("--lambda-vgg", type=float, default=S, help="VGG perceptual weight (default 10)")
    g.add_argument("--lambda-kld", type=float, default=S, help="KLD weight (default 0.05)")
    g.add_argument("--no-gan-feat-loss", dest="gan_feat_loss", action="store_false", default=S)
    g.add_argument(
        "--vgg-weights",
        default=S,
        metavar="PTH",
        help="torchvision VGG19 state dict file for the perceptual loss; without it the loss is off",
    )
    g.add_argument("--ema", action="store_true", default=S, help="keep an EMA of G; RUN/latest holds the EMA weights")
    g.add_argument("--ema-decay", type=float, default=S, help="EMA decay per step (default 0.999)")
    g.add_argument("--no-amp", dest="amp", action="store_false", default=S, help="no fp16 autocast on CUDA")
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
    g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=S)
