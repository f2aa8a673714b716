"""An independent reference SPADE, written from the paper's equations with stock PyTorch layers.

It imports nothing from spade-rt. Spectral norm is ``torch.nn.utils.spectral_norm`` (the hook the original
code used) and the param-free norm is ``nn.BatchNorm2d`` / ``nn.InstanceNorm2d``; module names follow the
original code, because the checkpoint keys are the compatibility contract. ``torch.save(ref.state_dict())``
therefore writes a file in the original ``latest_net_G.pth`` format, and the reference's eval-mode output is
what the original network computes.

The input pipeline (PIL NEAREST resize, 255 -> label_nc, one-hot scatter, 4-neighbour instance edges) is
re-implemented here too, following the original preprocess_input.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils import spectral_norm

UP_LAYERS = {"normal": 5, "more": 6, "most": 7}


def _maybe_sn(module: nn.Module, spectral: bool) -> nn.Module:
    return spectral_norm(module) if spectral else module


class RefSPADE(nn.Module):
    def __init__(self, norm_nc, label_nc, norm="batch", ks=3):
        super().__init__()
        self.param_free_norm = (
            nn.BatchNorm2d(norm_nc, affine=False) if norm == "batch" else nn.InstanceNorm2d(norm_nc, affine=False)
        )
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, 128, ks, padding=ks // 2), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(128, norm_nc, ks, padding=ks // 2)
        self.mlp_beta = nn.Conv2d(128, norm_nc, ks, padding=ks // 2)

    def forward(self, x, seg):
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        h = self.mlp_shared(seg)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(h)) + self.mlp_beta(h)


class RefBlock(nn.Module):
    def __init__(self, fin, fout, semantic_nc, spectral=True, norm="batch", ks=3):
        super().__init__()
        fmid = min(fin, fout)
        self.learned = fin != fout
        self.conv_0 = _maybe_sn(nn.Conv2d(fin, fmid, 3, padding=1), spectral)
        self.conv_1 = _maybe_sn(nn.Conv2d(fmid, fout, 3, padding=1), spectral)
        if self.learned:
            self.conv_s = _maybe_sn(nn.Conv2d(fin, fout, 1, bias=False), spectral)
        self.norm_0 = RefSPADE(fin, semantic_nc, norm, ks)
        self.norm_1 = RefSPADE(fmid, semantic_nc, norm, ks)
        if self.learned:
            self.norm_s = RefSPADE(fin, semantic_nc, norm, ks)

    def forward(self, x, seg):
        skip = self.conv_s(self.norm_s(x, seg)) if self.learned else x
        h = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        h = self.conv_1(F.leaky_relu(self.norm_1(h, seg), 0.2))
        return skip + h


class RefGenerator(nn.Module):
    def __init__(
        self,
        semantic_nc,
        ngf=64,
        num_up="normal",
        crop_size=256,
        aspect_ratio=1.0,
        use_vae=False,
        z_dim=256,
        spectral=True,
        norm="batch",
        ks=3,
    ):
        super().__init__()
        self.num_up, self.use_vae, self.ngf, self.z_dim = num_up, use_vae, ngf, z_dim
        self.sw = crop_size // 2 ** UP_LAYERS[num_up]
        self.sh = round(self.sw / aspect_ratio)
        nf = ngf
        self.fc = (
            nn.Linear(z_dim, 16 * nf * self.sw * self.sh) if use_vae else nn.Conv2d(semantic_nc, 16 * nf, 3, padding=1)
        )
        args = (semantic_nc, spectral, norm, ks)
        self.head_0 = RefBlock(16 * nf, 16 * nf, *args)
        self.G_middle_0 = RefBlock(16 * nf, 16 * nf, *args)
        self.G_middle_1 = RefBlock(16 * nf, 16 * nf, *args)
        self.up_0 = RefBlock(16 * nf, 8 * nf, *args)
        self.up_1 = RefBlock(8 * nf, 4 * nf, *args)
        self.up_2 = RefBlock(4 * nf, 2 * nf, *args)
        self.up_3 = RefBlock(2 * nf, nf, *args)
        final = nf
        if num_up == "most":
            self.up_4 = RefBlock(nf, nf // 2, *args)
            final = nf // 2
        self.conv_img = nn.Conv2d(final, 3, 3, padding=1)

    def forward(self, seg, z=None):
        def up(t):
            return F.interpolate(t, scale_factor=2, mode="nearest")

        if self.use_vae:
            x = self.fc(z).view(-1, 16 * self.ngf, self.sh, self.sw)
        else:
            x = self.fc(F.interpolate(seg, size=(self.sh, self.sw), mode="nearest"))
        x = up(self.head_0(x, seg))
        x = self.G_middle_0(x, seg)
        if self.num_up in ("more", "most"):
            x = up(x)
        x = self.G_middle_1(x, seg)
        x = self.up_0(up(x), seg)
        x = self.up_1(up(x), seg)
        x = self.up_2(up(x), seg)
        x = self.up_3(up(x), seg)
        if self.num_up == "most":
            x = self.up_4(up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class RefEncoder(nn.Module):
    """ConvEncoder with norm_E = spectralinstance: each layer is Sequential(SN conv without bias, IN)."""

    def __init__(self, ngf=64, crop_size=256):
        super().__init__()
        chans = [3, ngf, 2 * ngf, 4 * ngf, 8 * ngf, 8 * ngf] + ([8 * ngf] if crop_size >= 256 else [])
        self.n = len(chans) - 1
        for i in range(self.n):
            conv = spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1, bias=False))
            self.add_module(f"layer{i + 1}", nn.Sequential(conv, nn.InstanceNorm2d(chans[i + 1], affine=False)))
        self.fc_mu = nn.Linear(8 * ngf * 16, 256)
        self.fc_var = nn.Linear(8 * ngf * 16, 256)

    def forward(self, x):
        if x.shape[-2:] != (256, 256):
            x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
        for i in range(self.n):
            if i:
                x = F.leaky_relu(x, 0.2)
            x = getattr(self, f"layer{i + 1}")(x)
        x = F.leaky_relu(x, 0.2).flatten(1)
        return self.fc_mu(x), self.fc_var(x)


@torch.no_grad()
def randomize_(net: nn.Module, seed: int = 0, power_iterations: int = 3) -> nn.Module:
    """Give a fresh net the look of a trained one: non-zero biases, BN statistics, converged-ish u and v."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            m.num_batches_tracked.fill_(1000)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
        if hasattr(m, "weight_orig"):
            w = m.weight_orig.flatten(1)
            u = F.normalize(torch.randn(w.shape[0], generator=g), dim=0)
            for _ in range(power_iterations):
                v = F.normalize(w.t() @ u, dim=0)
                u = F.normalize(w @ v, dim=0)
            m.weight_u.copy_(u)
            m.weight_v.copy_(v)
    return net.eval()


def ref_generator_for(preset: str, ngf: int, use_vae: bool = False, seed: int = 0, **kw) -> RefGenerator:
    """The reference network of a preset, with deterministic random weights."""
    table = {  # semantic_nc, crop, aspect, upsampling
        "coco": (184, 256, 1.0, "normal"),
        "ade20k": (151, 256, 1.0, "normal"),
        "cityscapes": (36, 512, 2.0, "more"),
        "facades": (13, 256, 1.0, "normal"),
    }
    nc, crop, aspect, up = table[preset]
    torch.manual_seed(seed)
    net = RefGenerator(nc, ngf, kw.pop("num_up", up), kw.pop("crop_size", crop), aspect, use_vae, **kw)
    return randomize_(net, seed)


# ---- input pipeline, following the original dataset + preprocess_input --------------------------------------
def ref_load_ids(path, size_hw, label_nc):
    """PIL NEAREST resize to (H, W), ids as stored, 255 -> label_nc. Returns int64 (H, W)."""
    im = Image.open(path)
    im = im.resize((size_hw[1], size_hw[0]), Image.NEAREST)
    ids = np.array(im).astype(np.int64)
    ids[ids == 255] = label_nc
    return ids


def ref_load_instance(path, size_hw):
    im = Image.open(path)
    return np.array(im.resize((size_hw[1], size_hw[0]), Image.NEAREST)).astype(np.int64)


def ref_edges(t: torch.Tensor) -> torch.Tensor:
    """The original get_edges on an (N, 1, H, W) tensor."""
    edge = torch.zeros(t.shape, dtype=torch.bool)
    edge[:, :, :, 1:] |= t[:, :, :, 1:] != t[:, :, :, :-1]
    edge[:, :, :, :-1] |= t[:, :, :, 1:] != t[:, :, :, :-1]
    edge[:, :, 1:, :] |= t[:, :, 1:, :] != t[:, :, :-1, :]
    edge[:, :, :-1, :] |= t[:, :, 1:, :] != t[:, :, :-1, :]
    return edge.float()


def ref_semantics(ids: np.ndarray, num_label_ids: int, instance: np.ndarray | None = None) -> torch.Tensor:
    """ids (N, H, W) -> one-hot (N, num_label_ids, H, W) [+ edge channel], as preprocess_input builds it."""
    label = torch.from_numpy(np.asarray(ids, dtype=np.int64))[:, None]
    n, _, h, w = label.shape
    sem = torch.zeros(n, num_label_ids, h, w).scatter_(1, label, 1.0)
    if instance is not None:
        sem = torch.cat([sem, ref_edges(torch.from_numpy(np.asarray(instance, dtype=np.int64))[:, None])], 1)
    return sem


def blobby_labels(n: int, h: int, w: int, num_ids: int, seed: int = 0, cell: int = 16) -> np.ndarray:
    """Random piecewise-constant label maps (N, H, W) int64: regions like real segmentation maps."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, num_ids, size=(n, -(-h // cell) + 1, -(-w // cell) + 1))
    ids = np.repeat(np.repeat(coarse, cell, axis=1), cell, axis=2)
    dy, dx = rng.integers(0, cell, size=2)
    ids = ids[:, dy : dy + h, dx : dx + w]
    noise = rng.random((n, h, w)) < 0.02  # sprinkle isolated pixels: exercises the 3x3 taps
    ids = np.where(noise, rng.integers(0, num_ids, size=(n, h, w)), ids)
    return ids.astype(np.int64)


def rel_l2(a, b) -> float:
    a = torch.as_tensor(np.asarray(a), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(b), dtype=torch.float64)
    return float((a - b).norm() / b.norm().clamp_min(1e-30))
