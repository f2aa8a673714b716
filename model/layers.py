"""Reusable layers whose parameter names match the original SPADE checkpoints.

``SNConv2d`` stores spectral norm the way ``torch.nn.utils.spectral_norm`` does (``weight_orig``,
``weight_u``, ``weight_v``), so original state dicts load with ``strict=True``, without the deprecated hook
(which breaks ONNX export and ``torch.compile``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SNConv2d(nn.Module):
    """Conv2d with spectral normalisation of its weight, state-dict compatible with the original.

    Training: one power iteration per forward updates ``weight_u``/``weight_v`` in place (as torch does).
    Eval: weight = weight_orig / (u . W v) with the stored u, v; no iteration, so the output is fixed.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.eps = kernel_size, stride, padding, eps
        # (out, in, k, k), initialised like nn.Conv2d
        self.weight_orig = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight_orig, a=math.sqrt(5))
        if bias:
            bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
            self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
        # u: (out,), v: (in*k*k,), unit vectors
        self.register_buffer("weight_u", F.normalize(torch.randn(out_channels), dim=0, eps=eps))
        self.register_buffer("weight_v", F.normalize(torch.randn(in_channels * kernel_size**2), dim=0, eps=eps))

    def normalized_weight(self) -> torch.Tensor:
        w_mat = self.weight_orig.flatten(1)  # (out, in*k*k)
        u, v = self.weight_u, self.weight_v
        if self.training:
            with torch.no_grad():
                v = F.normalize(torch.mv(w_mat.t(), u), dim=0, eps=self.eps, out=self.weight_v)
                u = F.normalize(torch.mv(w_mat, v), dim=0, eps=self.eps, out=self.weight_u)
            # clone so that autograd sees values that a later forward's in-place update cannot change
            u, v = u.clone(), v.clone()
        sigma = torch.dot(u, torch.mv(w_mat, v))
        return self.weight_orig / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}"
        )


def conv2d(spectral: bool, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
           bias: bool = True) -> nn.Module:  # fmt: skip
    """A plain or a spectral-norm conv with the original's parameter names."""
    if spectral:
        return SNConv2d(in_channels, out_channels, kernel_size, stride, padding, bias)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)


def norm_wrapped_conv(norm: str, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
    """The original ``get_nonspade_norm_layer``: [spectral] conv (bias dropped when a norm follows) + norm.

    ``norm`` is e.g. 'spectralinstance', 'spectralbatch', 'spectralsyncbatch', 'instance' or 'spectralnone'.
    Returns the conv alone when there is no norm (keys ``N.weight``), else Sequential(conv, norm)
    (keys ``N.0.weight_orig`` ...).
    """
    spectral = norm.startswith("spectral")
    sub = norm[len("spectral") :] if spectral else norm
    if sub in ("", "none"):
        return conv2d(spectral, in_channels, out_channels, kernel_size, stride, padding, bias=True)
    conv = conv2d(spectral, in_channels, out_channels, kernel_size, stride, padding, bias=False)
    if sub == "instance":
        layer = nn.InstanceNorm2d(out_channels, affine=False)
    elif sub in ("batch", "syncbatch", "sync_batch"):
        layer = nn.BatchNorm2d(out_channels, affine=True)
    else:
        raise ValueError(f"normalization {norm!r} is not one of [spectral]{{instance,batch,syncbatch,none}}")
    return nn.Sequential(conv, layer)


def init_weights(net: nn.Module, init_type: str = "xavier", gain: float = 0.02) -> None:
    """The original ``BaseNetwork.init_weights``: conv/linear weights by ``init_type``, biases zero."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
            continue
        weight = getattr(m, "weight_orig", None) if isinstance(m, SNConv2d) else getattr(m, "weight", None)
        if not isinstance(m, (nn.Conv2d, nn.Linear, SNConv2d)) or weight is None:
            continue
        with torch.no_grad():
            if init_type == "normal":
                nn.init.normal_(weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(weight, gain=gain)
            elif init_type == "xavier_uniform":
                nn.init.xavier_uniform_(weight, gain=1.0)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(weight, gain=gain)
            elif init_type != "none":
                raise ValueError(
                    f"init_type {init_type!r} is not one of normal, xavier, xavier_uniform, kaiming, orthogonal, none"
                )
            if m.bias is not None:
                nn.init.zeros_(m.bias)
