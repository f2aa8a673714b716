"""The one small interface every backend implements (PyTorch, ONNX Runtime, TensorRT).

A backend takes validated host arrays and returns the network output; the ``Synthesizer`` does the
validation, batching and image conversion, so a backend only moves data and runs the network.
Backends are listed in ``spade_rt.runtime.registry``; what a model takes and gives is its ``ModelSpec``
(``spade_rt.runtime.spec``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from spade_rt.errors import InputError
from spade_rt.runtime.spec import EDGES, LABELS, ModelSpec, Z


@dataclass
class StageTimes:
    """Milliseconds of the last call, per stage (host->device, compute, device->host, total)."""

    h2d_ms: float = 0.0
    compute_ms: float = 0.0
    d2h_ms: float = 0.0
    total_ms: float = 0.0


class Backend(abc.ABC):
    """Runs one model. ``run`` gets contiguous arrays already checked against ``spec``."""

    name: str = "backend"
    spec: ModelSpec
    last_times: StageTimes

    @abc.abstractmethod
    def run(self, labels: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None) -> np.ndarray:
        """labels (N, H, W) ids, edges (N, H, W) uint8 or None, z (N, z_dim) float32 or None -> output."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release device memory, sessions, contexts."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def graph_feeds(
    input_names: set[str], labels: np.ndarray, edges: np.ndarray | None, z: np.ndarray | None
) -> dict[str, np.ndarray]:
    """The inputs an ONNX graph of ``input_names`` takes, by tensor name; InputError naming one it lacks."""
    feeds = {LABELS: labels}
    if EDGES in input_names:
        feeds[EDGES] = edges
    if Z in input_names:
        feeds[Z] = z
    missing = [k for k, v in feeds.items() if v is None]
    if missing:
        raise InputError(f"the graph needs input(s) {', '.join(missing)}")
    return feeds
