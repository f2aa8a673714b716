"""Inference-only algebra on a SPADE generator: every rewrite as plain arrays, before any graph exists.

1. Spectral norm: ``W = weight_orig / (u . W v)`` with the stored u, v (what eval mode computes).
2. Eval batch norm folded into the modulation. The original computes
       out = (x - m) / sqrt(v + eps) * (1 + gamma) + beta,   gamma = Wg*actv + bg,   beta = Wb*actv + bb
   which is  out = (x - m) * a + b  with  a = (inv_std*Wg)*actv + inv_std*(1 + bg),  b = Wb*actv + bb:
   gamma and beta become ONE conv with 2C outputs [a; b]; no normalisation kernel is left. The centring
   (x - m) is kept apart from the scale so fp16 never forms x*a for large x (it would overflow); for norm_1
   it folds into conv_0's bias.
3. ``mlp_shared`` on a one-hot map is a lookup: a k x k conv on one-hot channels equals the sum over the
   k*k taps of row ``id`` of the tap's weight slice. With an instance edge channel the index is
   ``id + V * edge`` (V = ids + 1); row ``num_ids`` (the padding sentinel) is zero, as zero padding is.
   Every ``mlp_shared`` (and the conv ``fc``) that sees one resolution shares one table.

Shapes: C channels, K concatenated lookup width, T = k*k taps, R rows of a lookup table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from spade_rt.errors import ExportError
from spade_rt.model.config import GeneratorConfig
from spade_rt.model.layers import SNConv2d
from spade_rt.model.networks import SPADE, SPADEGenerator, SPADEResnetBlock

BN_EPS = 1e-5  # nn.BatchNorm2d and SynchronizedBatchNorm2d default


def conv_weight(conv: torch.nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
    """Effective (weight, bias) of a plain or spectral-norm conv in eval mode, float32."""
    with torch.no_grad():
        w = conv.normalized_weight() if isinstance(conv, SNConv2d) else conv.weight
        b = conv.bias
    return w.detach().float().numpy().copy(), None if b is None else b.detach().float().numpy().copy()


@dataclass
class FoldedSPADE:
    channels: int  # C, the normalised feature width
    shared_offset: int  # where this SPADE's 128 hidden channels sit in its resolution's lookup output
    gb_weight: np.ndarray  # (2C, 128, k, k): rows [a; b]
    gb_bias: np.ndarray  # (2C,)
    mean: np.ndarray | None  # (C,) running mean to subtract; None for instance norm
    instance_norm: bool = False


@dataclass
class FoldedBlock:
    name: str
    stride: int  # output pixels per feature pixel at this block's resolution
    conv_0: tuple[np.ndarray, np.ndarray]  # bias already holds -mean of norm_1 (batch norm)
    conv_1: tuple[np.ndarray, np.ndarray]
    conv_s: np.ndarray | None  # (Cout, Cin, 1, 1), no bias
    norm_0: FoldedSPADE
    norm_1: FoldedSPADE
    norm_s: FoldedSPADE | None


@dataclass
class LookupTable:
    """Per-resolution one-hot conv as lookups: out[n, :, y, x] = bias + sum_t rows[t, index(n, y+dy_t, x+dx_t)]."""

    stride: int
    kernel_size: int
    rows: np.ndarray  # (T, R, K)
    bias: np.ndarray  # (K,)
    relu_from: int  # channels [relu_from:] are mlp_shared outputs (ReLU); [:relu_from] is the linear fc


@dataclass
class FoldedGenerator:
    config: GeneratorConfig
    lookups: dict[int, LookupTable]  # stride -> table
    fc_linear: tuple[np.ndarray, np.ndarray] | None  # VAE: (W (out, z_dim), b)
    fc_channels: int
    blocks: list[FoldedBlock]
    conv_img: tuple[np.ndarray, np.ndarray]
    sentinel: int  # padding row of every table: num_label_ids (with edge 0)
    index_rows: int  # R: (num_ids + 1) * (2 if edges else 1)
    notes: list[str] = field(default_factory=list)


def block_schedule(cfg: GeneratorConfig) -> list[tuple[str, int]]:
    """(block name, stride) in forward order, following SPADEGenerator.forward."""
    stride = 2**cfg.num_up
    order = [("head_0", stride)]
    stride //= 2
    order.append(("G_middle_0", stride))
    if cfg.num_upsampling_layers in ("more", "most"):
        stride //= 2
    order.append(("G_middle_1", stride))
    names = ["up_0", "up_1", "up_2", "up_3"] + (["up_4"] if cfg.num_upsampling_layers == "most" else [])
    for name in names:
        stride //= 2
        order.append((name, stride))
    if stride != 1:
        raise ExportError(f"internal: block schedule ends at stride {stride}, expected 1")
    return order


def _one_hot_rows(weight: np.ndarray, num_ids: int, use_edges: bool) -> np.ndarray:
    """Conv weight (K, L, k, k) over [one-hot ids (num_ids) (+ edge)] -> rows (T, R, K) for index id + V*edge."""
    k_out, _, kh, kw = weight.shape
    V = num_ids + 1
    per_tap = weight.reshape(k_out, weight.shape[1], kh * kw).transpose(2, 1, 0)  # (T, L, K)
    rows = np.zeros((kh * kw, V * (2 if use_edges else 1), k_out), dtype=np.float32)
    rows[:, :num_ids] = per_tap[:, :num_ids]  # row V-1 (sentinel, padding) stays zero
    if use_edges:
        rows[:, V : V + num_ids] = per_tap[:, :num_ids] + per_tap[:, num_ids : num_ids + 1]
    return rows


def _fold_spade(spade: SPADE, offset: int) -> FoldedSPADE:
    wg, bg = conv_weight(spade.mlp_gamma)
    wb, bb = conv_weight(spade.mlp_beta)
    norm = spade.param_free_norm
    if isinstance(norm, torch.nn.InstanceNorm2d):  # statistics come from x: only gamma/beta fuse
        return FoldedSPADE(wg.shape[0], offset, np.concatenate([wg, wb]), np.concatenate([1.0 + bg, bb]), None, True)
    inv_std = 1.0 / np.sqrt(norm.running_var.detach().double().numpy() + BN_EPS)  # float64 for the fold
    weight = np.concatenate([wg.astype(np.float64) * inv_std[:, None, None, None], wb]).astype(np.float32)
    bias = np.concatenate([inv_std * (1.0 + bg.astype(np.float64)), bb]).astype(np.float32)
    return FoldedSPADE(wg.shape[0], offset, weight, bias, norm.running_mean.float().numpy().copy())


def fold_generator(net: SPADEGenerator) -> FoldedGenerator:
    """All rewrites of the module docstring, on an eval-mode generator."""
    cfg = net.cfg
    if net.training:
        raise ExportError("fold an eval-mode generator (call .eval()): training mode updates statistics")
    num_ids, use_edges = cfg.num_label_ids, cfg.use_instance
    ks = cfg.spade_kernel_size

    # gather every one-hot conv per resolution: (stride) -> list of (weights (K, L, k, k), bias, is_fc)
    pending: dict[int, list[tuple[np.ndarray, np.ndarray, bool]]] = {}
    offsets: dict[int, int] = {}

    def claim(stride: int, weight: np.ndarray, bias: np.ndarray, is_fc: bool = False) -> int:
        group = pending.setdefault(stride, [])
        if is_fc and group:
            raise ExportError("internal: fc must come first in its lookup")
        start = offsets.get(stride, 0)
        group.append((weight, bias, is_fc))
        offsets[stride] = start + weight.shape[0]
        return start

    fc_linear, fc_channels = None, 16 * cfg.ngf
    if cfg.use_vae:
        w, b = conv_weight(net.fc)
        fc_linear = (w, b)
    else:
        w, b = conv_weight(net.fc)
        if w.shape[2:] != (3, 3):
            raise ExportError(f"fc kernel {w.shape[2:]} is not 3x3")
        claim(2**cfg.num_up, w, b, is_fc=True)

    blocks = []
    for name, stride in block_schedule(cfg):
        block: SPADEResnetBlock = getattr(net, name)
        spades = {}
        # order inside a block: norm_0, norm_s (both modulate the block input), then norm_1
        for key in ("norm_0", "norm_s", "norm_1"):
            spade = getattr(block, key, None)
            if spade is None:
                continue
            ws, bs = conv_weight(spade.mlp_shared[0])
            offset = claim(stride, ws, bs)
            spades[key] = _fold_spade(spade, offset)
        w0, b0 = conv_weight(block.conv_0)
        w1, b1 = conv_weight(block.conv_1)
        n1 = spades["norm_1"]
        if n1.mean is not None:
            b0 = b0 - n1.mean  # centring of norm_1's input folded into conv_0
            n1.mean = None
        blocks.append(
            FoldedBlock(
                name,
                stride,
                (w0, b0),
                (w1, b1),
                conv_weight(block.conv_s)[0] if block.learned_shortcut else None,
                spades["norm_0"],
                n1,
                spades.get("norm_s"),
            )
        )

    lookups = {}
    for stride, group in pending.items():
        weights = np.concatenate([g[0] for g in group])  # (K, L, k, k)
        k = weights.shape[-1]
        if any(g[0].shape[-1] != k for g in group):  # fc (3x3) and 5x5 SPADEs at one resolution
            k = max(g[0].shape[-1] for g in group)
            weights = np.concatenate([_pad_kernel(g[0], k) for g in group])
        relu_from = sum(g[0].shape[0] for g in group if g[2])
        lookups[stride] = LookupTable(
            stride, k, _one_hot_rows(weights, num_ids, use_edges), np.concatenate([g[1] for g in group]), relu_from
        )
    del ks
    return FoldedGenerator(
        config=cfg,
        lookups=lookups,
        fc_linear=fc_linear,
        fc_channels=fc_channels,
        blocks=blocks,
        conv_img=conv_weight(net.conv_img),
        sentinel=num_ids,
        index_rows=(num_ids + 1) * (2 if use_edges else 1),
    )


def _pad_kernel(w: np.ndarray, k: int) -> np.ndarray:
    """Centre a smaller kernel in a k x k one (zeros around): same conv with larger padding."""
    pad = (k - w.shape[-1]) // 2
    return np.pad(w, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
