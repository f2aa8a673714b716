"""The knobs of `spade-rt serve`: where it listens, how it batches, what it refuses. One dataclass."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from spade_rt.errors import ConfigError

LOOPBACK = "127.0.0.1"
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class ServeSettings:
    host: str = LOOPBACK
    port: int = 8000  # 0: any free port (the log line says which)
    max_batch: int | None = None  # pictures per backend call; None: the model's own maximum (else 8)
    max_delay_ms: float = 2.0  # how long a lone request waits for companions before running alone
    max_queue: int = 64  # pictures waiting for the backend; more are refused with 503
    max_body_bytes: int = 16 << 20  # request bodies (and painter frames)
    max_map_pixels: int = 4096 * 4096  # label / instance maps, checked from the PNG header before decoding
    max_connections: int = 64  # open connections (HTTP and WebSocket); more get 503
    graceful_timeout_s: float = 30.0  # on SIGINT/SIGTERM: how long requests in flight may take to finish
    jpeg_quality: int = 90
    warm_up: bool = True  # one picture and two of the largest batch before the first request
    access_log: bool = False

    def validate(self) -> ServeSettings:
        checks = (
            (0 <= self.port <= 65535, f"--port {self.port}: expected 0..65535 (0: any free port)"),
            (self.max_batch is None or self.max_batch >= 1, f"--max-batch {self.max_batch}: expected 1 or more"),
            (0 <= self.max_delay_ms <= 10_000, f"--max-delay-ms {self.max_delay_ms:g}: expected 0..10000"),
            (self.max_queue >= 1, f"--max-queue {self.max_queue}: expected 1 or more"),
            (self.max_body_bytes >= 1024, f"--max-body {self.max_body_bytes}: expected at least 1K"),
            (self.max_map_pixels >= 1, f"--max-map-pixels {self.max_map_pixels}: expected 1 or more"),
            (self.max_connections >= 1, f"--max-connections {self.max_connections}: expected 1 or more"),
            (self.graceful_timeout_s >= 0, f"--graceful-timeout {self.graceful_timeout_s:g}: expected 0 or more"),
            (1 <= self.jpeg_quality <= 95, f"jpeg quality {self.jpeg_quality}: expected 1..95"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def effective_max_batch(requested: int | None, model_max: int | None, model_min: int = 1) -> int:
    """The batch the server forms: at most the model's (graph or engine profile) maximum; default 8."""
    if model_min > 1:
        raise ConfigError(
            f"this model's smallest batch is {model_min}: a server must run single requests (export with --batch 1:...)"
        )
    if requested is None:
        return model_max if model_max is not None else 8
    if model_max is not None and requested > model_max:
        raise ConfigError(f"--max-batch {requested}: this model takes at most {model_max} per call")
    return requested
