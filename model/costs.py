"""What a generator costs: learned parameters and multiply-accumulates of the original formulation."""

from __future__ import annotations

import torch

from spade_rt.model.config import GeneratorConfig
from spade_rt.model.layers import SNConv2d
from spade_rt.model.networks import SPADEGenerator
from spade_rt.model.original_checkpoint import StateDict


def count_parameters(state: StateDict) -> int:
    """Learned parameters (spectral-norm u/v and BN statistics are buffers, not counted)."""
    buffers = ("weight_u", "weight_v", "running_mean", "running_var", "num_batches_tracked")
    return sum(t.numel() for k, t in state.items() if not k.endswith(buffers))


def generator_macs(config: GeneratorConfig, batch: int = 1) -> int:
    """Multiply-accumulates of the original formulation per forward, counted on the meta device."""
    with torch.device("meta"):
        net = SPADEGenerator(config).eval()
    h, w = config.output_hw
    seg = torch.zeros(batch, config.semantic_nc, h, w, device="meta")
    z = torch.zeros(batch, config.z_dim, device="meta") if config.use_vae else None
    return count_macs(net, (seg, z))


def count_macs(net: torch.nn.Module, args: tuple) -> int:
    """Sum of conv/linear MACs (output elements x fan-in) over one forward."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        weight = module.weight_orig if hasattr(module, "weight_orig") else module.weight
        fan_in = weight[0].numel()
        total += output.numel() * fan_in

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, SNConv2d))
    ]
    try:
        with torch.no_grad():
            net(*args)
    finally:
        for h in handles:
            h.remove()
    return total
