"""Multiscale PatchGAN discriminator of the original SPADE trainer (training only, never exported).

Module and parameter names are those of NVlabs/SPADE (``latest_net_D.pth`` loads with ``strict=True``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spade_rt.model.layers import norm_wrapped_conv


class NLayerDiscriminator(nn.Module):
    """PatchGAN: returns every layer's output (for feature matching); the last one is the prediction."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4, norm_D: str = "spectralinstance") -> None:
        super().__init__()
        kw, padw = 4, 2
        nf = ndf
        sequence: list[list[nn.Module]] = [
            [nn.Conv2d(input_nc, nf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, False)]
        ]
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            sequence.append([norm_wrapped_conv(norm_D, nf_prev, nf, kw, stride, padw), nn.LeakyReLU(0.2, False)])
        sequence.append([nn.Conv2d(nf, 1, kw, stride=1, padding=padw)])
        for n, layers in enumerate(sequence):
            self.add_module(f"model{n}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        results = []
        for submodel in self.children():
            x = submodel(x)
            results.append(x)
        return results


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs on the input and its 2x, 4x ... average-pooled copies."""

    def __init__(
        self, input_nc: int, ndf: int = 64, n_layers: int = 4, num_D: int = 2, norm_D: str = "spectralinstance"
    ) -> None:
        super().__init__()
        for i in range(num_D):
            self.add_module(f"discriminator_{i}", NLayerDiscriminator(input_nc, ndf, n_layers, norm_D))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        result = []
        for D in self.children():
            result.append(D(x))
            x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
        return result
