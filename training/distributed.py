"""torch.distributed plumbing: process setup from torchrun's environment, and synchronised batch norm.

SPADE's default ``norm_G`` (``spectralspadesyncbatch3x3``) normalises with statistics over the *global*
batch. With N processes each holding B/N samples, plain batch norm would use B/N-sample statistics and
train a different model than one process with batch B. ``nn.SyncBatchNorm`` fixes that on GPUs but refuses
CPU tensors, so on CPU (gloo) we use ``DistributedBatchNorm2d`` below, which reduces the statistics with
autograd-aware all-reduces. Both keep the state-dict keys of ``nn.BatchNorm2d``.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; start the process group (nccl on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        log.info("process %d of %d (%s, %s)", rank, world, backend, dev)
    return DistInfo(rank, world, local_rank, dev)


class _AllReduceSum(torch.autograd.Function):
    """y = sum over processes of x; the gradient of a sum is the sum of the gradients, so the same backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, group=group)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad.clone()
        dist.all_reduce(g, group=ctx.group)
        return g, None


def all_reduce_autograd(x: torch.Tensor, group=None) -> torch.Tensor:
    return _AllReduceSum.apply(x, group)


class DistributedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics cover every process's batch (any device, any backend).

    Forward in training mode, x (N, C, H, W): global mean and biased variance from two all-reduces (sum,
    then sum of squared deviations: two passes); running statistics get the unbiased variance. The
    all-reduces are autograd functions, so gradients flow to every process's inputs exactly as through
    one batch norm over the concatenated batch (float64 runs agree with one process to ~1e-11; in
    float32 the rounding differs, see docs/training.md). Eval mode: running statistics.
    """

    process_group: dist.ProcessGroup | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        group = self.process_group or dist.group.WORLD
        dims = (0, 2, 3)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        total = all_reduce_autograd(torch.cat([x.sum(dims), count]), group=group)  # (C + 1,)
        n = total[-1].detach()
        mean = total[:-1] / n  # (C,)
        centred = x - mean[None, :, None, None]
        var = all_reduce_autograd(centred.pow(2).sum(dims), group=group) / n  # biased, (C,)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d: ``nn.SyncBatchNorm`` on CUDA, ``DistributedBatchNorm2d`` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    group = dist.new_group() if dist.is_initialized() else None  # its own group: never interleaves with DDP's
    _convert_children(module, device, group)
    return module


def _convert_children(module: nn.Module, device: torch.device, group) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, DistributedBatchNorm2d):
            like = next(child.buffers(), None)  # keep the dtype (float64 verification runs)
            new = DistributedBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            ).to(device, like.dtype if like is not None else None)
            new.load_state_dict(child.state_dict())
            new.process_group = group
            new.train(child.training)
            setattr(module, name, new)
        else:
            _convert_children(child, device, group)


def mean_across(values: dict[str, torch.Tensor], info: DistInfo) -> dict[str, float]:
    """Average scalar losses over processes (for logging only)."""
    if not values:
        return {}
    keys = sorted(values)
    stacked = torch.stack([values[k].float().reshape(()) for k in keys])
    if info.distributed:
        dist.all_reduce(stacked)
        stacked /= info.world_size
    return dict(zip(keys, stacked.tolist()))


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
