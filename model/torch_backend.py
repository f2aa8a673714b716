"""The PyTorch network as a runtime backend: native models (.safetensors) run in the original formulation.

Used by ``spade-rt synthesize MODEL.safetensors`` and as the reference in export verification and bench.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spade_rt.errors import InputError
from spade_rt.labels import open_image
from spade_rt.limits import pixel_limit
from spade_rt.model.header import spec_of
from spade_rt.model.native_format import build_encoder, build_generator, load_model
from spade_rt.model.semantics import semantics_from_numpy
from spade_rt.runtime.backend import Backend, StageTimes
from spade_rt.runtime.spec import ModelSpec


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: str | Path, device: str = "cpu") -> None:
        native = load_model(model)
        self.config = native.config
        self.device = torch.device(device)
        self.on_gpu = self.device.type == "cuda"  # spade-rt serve batches on GPUs only
        self.net = build_generator(native).to(self.device)
        self.encoder = build_encoder(native)
        if self.encoder is not None:
            self.encoder.to(self.device)
        cfg = self.config
        self.spec: ModelSpec = spec_of(cfg)  # the same spec the header alone gives (spade_rt.model.header)
        self.last_times = StageTimes()

    @torch.inference_mode()
    def run(self, labels: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
        t0 = time.perf_counter()
        seg = semantics_from_numpy(labels, self.config.num_label_ids, edges, self.device)  # (N, L, H, W)
        zt = None if z is None else torch.from_numpy(z).to(self.device)
        t1 = time.perf_counter()
        out = self.net(seg, zt)
        t2 = time.perf_counter()
        result = out.float().cpu().numpy()
        t3 = time.perf_counter()
        self.last_times = StageTimes((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t3 - t0) * 1e3)
        return result

    @torch.inference_mode()
    def encode_style(self, image_path: str | Path) -> np.ndarray:
        """Style image -> z = mu of the encoder (1, z_dim), deterministic (the original samples around it)."""
        if self.encoder is None:
            raise InputError("this model has no encoder: convert it with --encoder latest_net_E.pth to use --style")
        h, w = self.config.output_hw
        with open_image(image_path, "style image", pixel_limit(h, w)) as im:  # size checked from the header
            try:
                rgb = np.asarray(im.convert("RGB").resize((w, h), Image.BICUBIC), dtype=np.float32)
            except (OSError, SyntaxError, ValueError) as exc:
                raise InputError(f"cannot read style image {image_path}: {exc}") from None
        x = torch.from_numpy(rgb / 127.5 - 1.0).permute(2, 0, 1)[None].to(self.device)  # (1, 3, H, W) in [-1, 1]
        mu, _ = self.encoder(x)
        return mu.float().cpu().numpy()
