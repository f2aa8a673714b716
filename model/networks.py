"""SPADE generator and style encoder (the discriminator is training's: spade_rt.training.discriminator).

Module and parameter names are those of NVlabs/SPADE, so an original ``latest_net_G.pth`` /
``latest_net_E.pth`` loads with ``load_state_dict(strict=True)``. Shapes in comments
use N batch, C channels, L = semantic_nc, H x W the output size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spade_rt.model.config import GeneratorConfig
from spade_rt.model.layers import conv2d, norm_wrapped_conv

SPADE_HIDDEN = 128  # width of the SPADE mlp (hard-coded in the original)


class SPADE(nn.Module):
    """out = norm(x) * (1 + gamma(seg)) + beta(seg), norm without learned affine parameters."""

    def __init__(self, norm_nc: int, label_nc: int, param_free_norm: str = "batch", kernel_size: int = 3) -> None:
        super().__init__()
        if param_free_norm == "instance":
            self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        elif param_free_norm == "batch":
            self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
        else:
            raise ValueError(f"param-free norm {param_free_norm!r} is not 'batch' or 'instance'")
        pw = kernel_size // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, SPADE_HIDDEN, kernel_size, padding=pw), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, norm_nc, kernel_size, padding=pw)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, norm_nc, kernel_size, padding=pw)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        # x: (N, C, h, w); segmap: (N, L, H, W) one-hot (+ edge) -> nearest-resized to (h, w)
        normalized = self.param_free_norm(x)
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)  # (N, 128, h, w)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """Pre-activation residual block; every conv is preceded by SPADE + leaky ReLU(0.2)."""

    def __init__(self, fin: int, fout: int, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = conv2d(cfg.spectral, fin, fmiddle, 3, padding=1)
        self.conv_1 = conv2d(cfg.spectral, fmiddle, fout, 3, padding=1)
        if self.learned_shortcut:
            self.conv_s = conv2d(cfg.spectral, fin, fout, 1, bias=False)
        norm, ks, L = cfg.param_free_norm, cfg.spade_kernel_size, cfg.semantic_nc
        self.norm_0 = SPADE(fin, L, norm, ks)
        self.norm_1 = SPADE(fmiddle, L, norm, ks)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, L, norm, ks)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """Label map (one-hot + edge) [+ z] -> image in [-1, 1], (N, 3, H, W)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        nf = cfg.ngf
        self.sh, self.sw = cfg.latent_hw
        if cfg.use_vae:
            self.fc = nn.Linear(cfg.z_dim, 16 * nf * self.sh * self.sw)
        else:
            self.fc = nn.Conv2d(cfg.semantic_nc, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, cfg)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, cfg)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, cfg)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, cfg)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, cfg)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, cfg)
        self.up_3 = SPADEResnetBlock(2 * nf, 1 * nf, cfg)
        final_nc = nf
        if cfg.num_upsampling_layers == "most":
            self.up_4 = SPADEResnetBlock(1 * nf, nf // 2, cfg)
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, 3, 3, padding=1)

    @staticmethod
    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        if cfg.use_vae:
            if z is None:  # sample the style, as the original does without an encoder
                z = torch.randn(seg.shape[0], cfg.z_dim, dtype=seg.dtype, device=seg.device)
            x = self.fc(z).view(-1, 16 * cfg.ngf, self.sh, self.sw)  # (N, 16ngf, sh, sw)
        else:
            x = self.fc(F.interpolate(seg, size=(self.sh, self.sw)))  # nearest-downsampled labels
        x = self.head_0(x, seg)
        x = self.up(x)
        x = self.G_middle_0(x, seg)
        if cfg.num_upsampling_layers in ("more", "most"):
            x = self.up(x)
        x = self.G_middle_1(x, seg)
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(self.up(x), seg)
        if cfg.num_upsampling_layers == "most":
            x = self.up_4(self.up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class ConvEncoder(nn.Module):
    """Style encoder: image (N, 3, h, w) -> (mu, logvar), each (N, 256). Width follows ngf, as originally."""

    def __init__(self, ngf: int = 64, crop_size: int = 256, norm_E: str = "spectralinstance") -> None:
        super().__init__()
        ndf = ngf
        self.layer1 = norm_wrapped_conv(norm_E, 3, ndf, 3, 2, 1)
        self.layer2 = norm_wrapped_conv(norm_E, ndf, ndf * 2, 3, 2, 1)
        self.layer3 = norm_wrapped_conv(norm_E, ndf * 2, ndf * 4, 3, 2, 1)
        self.layer4 = norm_wrapped_conv(norm_E, ndf * 4, ndf * 8, 3, 2, 1)
        self.layer5 = norm_wrapped_conv(norm_E, ndf * 8, ndf * 8, 3, 2, 1)
        self.has_layer6 = crop_size >= 256
        if self.has_layer6:
            self.layer6 = norm_wrapped_conv(norm_E, ndf * 8, ndf * 8, 3, 2, 1)
        s0 = 4
        self.fc_mu = nn.Linear(ndf * 8 * s0 * s0, 256)
        self.fc_var = nn.Linear(ndf * 8 * s0 * s0, 256)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[2] != 256 or x.shape[3] != 256:
            x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
        layers = [self.layer1, self.layer2, self.layer3, self.layer4, self.layer5]
        if self.has_layer6:
            layers.append(self.layer6)
        x = layers[0](x)
        for layer in layers[1:]:
            x = layer(F.leaky_relu(x, 0.2))
        x = F.leaky_relu(x, 0.2).flatten(1)  # (N, 8ndf * 4 * 4)
        return self.fc_mu(x), self.fc_var(x)
