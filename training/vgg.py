"""VGG19 feature extractor for the perceptual loss, loadable from a local torchvision-format file.

Pretrained weights cannot be downloaded here, so the user passes ``--vgg-weights vgg19.pth``: a
``torch.save(torchvision.models.vgg19(weights=...).state_dict())`` file (keys ``features.N.weight`` /
``features.N.bias``; ``classifier.*`` is ignored). It is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from spade_rt.errors import ModelFormatError
from spade_rt.model.original_checkpoint import load_torch_state_dict

log = logging.getLogger(__name__)

# torchvision's VGG19 'E' configuration: conv widths, 'M' = 2x2 max pool
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# indices in ``features`` after which the original SPADE loss taps: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
TAPS = (1, 6, 11, 20, 29)


class VGG19Features(nn.Module):
    """``features`` of torchvision's vgg19 (same module indices, so the same state-dict keys), frozen.

    forward: images (N, 3, H, W) -> 5 feature maps. Like the original SPADE loss, images go in as they
    come out of the generator, in [-1, 1], without ImageNet normalisation.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features[: TAPS[-1] + 1]):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out


def load_vgg19(path: str | Path) -> VGG19Features:
    """A torchvision-format VGG19 state dict file -> frozen eval-mode ``VGG19Features``."""
    state = load_torch_state_dict(path)
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    net = VGG19Features()
    own = net.state_dict()
    missing = [k for k in own if k not in features]
    shapes = [k for k in own if k in features and features[k].shape != own[k].shape]
    if missing or shapes:
        sample = ", ".join(list(state)[:3])
        raise ModelFormatError(
            f"{path} is not a torchvision VGG19 state dict: "
            + (f"no {missing[0]!r} (its keys start with {sample})" if missing else f"{shapes[0]} has the wrong shape")
            + "; save one with torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1').state_dict(), PATH)"
        )
    net.load_state_dict({k: features[k] for k in own}, strict=True)
    log.info("VGG perceptual loss on: VGG19 weights from %s", path)
    return net.eval()
