"""The original network's input: one-hot label channels (+ instance edge channel), built from ids.

This is the formulation the exported graph avoids (48 MB per COCO frame in fp32); the PyTorch path,
training and the baseline benchmark use it.
"""

from __future__ import annotations

import numpy as np
import torch

from spade_rt.errors import InputError
from spade_rt.labels import check_label_ids


def one_hot_semantics(
    ids: torch.Tensor, num_label_ids: int, edges: torch.Tensor | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """ids (N, H, W) integer -> (N, num_label_ids [+1], H, W): one-hot, then the edge map (0/1) if given."""
    if ids.dim() != 3:
        raise InputError(f"label ids must be (N, H, W), got shape {tuple(ids.shape)}")
    n, h, w = ids.shape
    semantics = torch.zeros(n, num_label_ids, h, w, dtype=dtype, device=ids.device)
    semantics.scatter_(1, ids.long().unsqueeze(1), 1.0)
    if edges is not None:
        if edges.shape != ids.shape:
            raise InputError(f"edge map shape {tuple(edges.shape)} differs from label shape {tuple(ids.shape)}")
        semantics = torch.cat([semantics, edges.to(dtype).unsqueeze(1)], dim=1)
    return semantics


def semantics_from_numpy(
    ids: np.ndarray, num_label_ids: int, edges: np.ndarray | None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """numpy ids (N, H, W) / (H, W) [+ edges] -> one-hot tensor on ``device``; ids are range-checked."""
    if ids.ndim == 2:
        ids = ids[None]
        edges = None if edges is None else edges[None]
    check_label_ids(ids, num_label_ids)
    t_ids = torch.from_numpy(np.ascontiguousarray(ids).astype(np.int64)).to(device)
    t_edges = None if edges is None else torch.from_numpy(np.ascontiguousarray(edges)).to(device)
    return one_hot_semantics(t_ids, num_label_ids, t_edges)
