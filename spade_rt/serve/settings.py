"""The knobs of `spade-rt serve`: where it listens, who may use it, how it batches, what it refuses. One dataclass.

Every limit here has its default in one place (the field) and its flag in `spade_rt/commands/serve.py`;
docs/serving.md lists them all ("Limits").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from spade_rt.errors import ConfigError

LOOPBACK = "127.0.0.1"
MAX_SEED = 2**32 - 1
# A painter frame: u32 header length + a JSON header of at most this many bytes + the ids (inputs.unpack).
MAX_FRAME_HEADER = 4096
# Loopback names a browser may send as Host for a server bound to loopback (RFC 6761: *.localhost is loopback).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServeSettings:
    host: str = LOOPBACK
    port: int = 8000  # 0: any free port (the log line says which)
    # -- batching
    max_batch: int | None = None  # pictures per backend call; None: the model's own maximum (else 8)
    max_delay_ms: float = 2.0  # how long a lone request waits for companions before running alone
    max_queue: int = 64  # pictures waiting for the backend; more are refused with 503
    # -- the trust boundary (spade_rt/serve/trust.py)
    allow_origins: tuple[str, ...] = ()  # origins besides the server's own that may POST and open painters
    allow_hosts: tuple[str, ...] = ()  # Host names besides the bound address and loopback names ("*": any)
    # -- what one request may cost
    max_body_bytes: int = 4 << 20  # HTTP request bodies (label PNGs: a 2048x1024 map of noise is ~2 MB)
    max_map_pixels: int = 2048 * 1024  # maps sent with resize=true, from the PNG header before decoding
    max_decodes: int = 2  # PNG decodes at once (each may hold up to ~40 bytes per pixel of max_map_pixels)
    # -- connections
    max_connections: int = 64  # open connections of every kind (HTTP, idle, painters); more get 503
    max_painters: int = 16  # painter WebSockets open at once; more are refused with 503
    max_head_bytes: int = 16 << 10  # a request line + headers; longer heads are refused (400) and closed
    idle_timeout_s: float = (
        5.0  # a connection must send a complete request head this soon after opening/its last response
    )
    read_timeout_s: float = 10.0  # a request body may pause this long between chunks (else 408)
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
            (1 <= self.max_decodes <= 64, f"--max-decodes {self.max_decodes}: expected 1..64"),
            (self.max_connections >= 1, f"--max-connections {self.max_connections}: expected 1 or more"),
            (self.max_painters >= 0, f"--max-painters {self.max_painters}: expected 0 or more (0: no painters)"),
            (
                1024 <= self.max_head_bytes <= 1 << 20,
                f"--max-head {self.max_head_bytes}: expected 1K..1M (a browser's request head is about 1K)",
            ),
            (
                0 < self.idle_timeout_s <= 3600,
                f"--idle-timeout {self.idle_timeout_s:g}: expected more than 0, at most 3600",
            ),
            (
                0 < self.read_timeout_s <= 3600,
                f"--read-timeout {self.read_timeout_s:g}: expected more than 0, at most 3600",
            ),
            (self.graceful_timeout_s >= 0, f"--graceful-timeout {self.graceful_timeout_s:g}: expected 0 or more"),
            (1 <= self.jpeg_quality <= 95, f"jpeg quality {self.jpeg_quality}: expected 1..95"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for origin in self.allow_origins:
            if origin != "*" and (not origin.startswith(("http://", "https://")) or origin.count("/") != 2):
                raise ConfigError(
                    f"--allow-origin {origin[:80]!r}: expected scheme://host[:port] (as a browser sends it, "
                    "e.g. http://tools.example:3000), or * for any"
                )
        for name in self.allow_hosts:
            if not name or "/" in name or " " in name:
                raise ConfigError(f"--allow-host {name[:80]!r}: expected a host name or address (no scheme), or *")
        return self

    @property
    def is_loopback(self) -> bool:
        return is_loopback_name(self.host)

    @property
    def is_wildcard(self) -> bool:
        """Bound to every interface (0.0.0.0 or ::)."""
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False


def is_loopback_name(host: str) -> bool:
    """localhost, *.localhost, 127.0.0.0/8, ::1."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def painter_frame_limit(height: int, width: int, id_bytes: int) -> int:
    """The largest painter frame a model of this map size takes: header length + header + one map of ids."""
    return 4 + MAX_FRAME_HEADER + height * width * id_bytes


def effective_max_batch(
    requested: int | None, model_max: int | None, model_min: int = 1, *, on_gpu: bool = True
) -> int:
    """The batch the server forms: at most the model's (graph or engine profile) maximum. Default: on GPUs the
    model's maximum (else 8); on CPUs 1, measured (docs/serving.md, "Measured"): a CPU backend already spreads
    one picture over every core, so the demo's dedup graph served 23.1 pictures/s unbatched and 23.0 with
    batches of up to 8 under 8 clients, on 149 instead of 237 MB after warm-up."""
    if model_min > 1:
        raise ConfigError(
            f"this model's smallest batch is {model_min}: a server must run single requests (export with --batch 1:...)"
        )
    if requested is None:
        if not on_gpu:
            return 1
        return model_max if model_max is not None else 8
    if model_max is not None and requested > model_max:
        raise ConfigError(f"--max-batch {requested}: this model takes at most {model_max} per call")
    return requested
