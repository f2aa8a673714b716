"""The knobs of `spade-rt serve`: where it listens, who may use it, how it batches, what it refuses. One table.

``ServeSettings`` is that table: each field's default is the only default, and its ``Option`` (the field's
metadata) is everything else about it: the flag `spade-rt serve` adds for it (``spade_rt/commands/serve.py``
derives every one: name, type, help with the default), the check ``validate`` makes (the accepted range, in
one wording), the ``GET /v1/model`` section that shows it (``described``), and its row in docs/serving.md's
"Limits" table (``docs_rows``; tests/test_serve_settings.py checks the docs against it). A new server limit is
one field here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import typing
from dataclasses import dataclass, field
from typing import Any

from spade_rt.errors import ConfigError

LOOPBACK = "127.0.0.1"
# A painter frame: u32 header length + a JSON header of at most this many bytes + the ids (inputs.unpack).
MAX_FRAME_HEADER = 4096
# Loopback names a browser may send as Host for a server bound to loopback (RFC 6761: *.localhost is loopback).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Where `spade-rt serve --help` lists a flag: the main list, or a titled group (the command names the titles).
GROUPS = ("server", "trust", "limits")


@dataclass(frozen=True)
class Option:
    """How a ``ServeSettings`` field is set, checked, shown and documented.

    ``unit`` says how a value is read and shown: "" (a count or a name), "bytes" (read with K/M/G, shown
    as 4M or 16K), "s", "ms", "px". The check accepts ``low``..``high`` (None: unbounded; ``low_open``: more
    than ``low``), ``note`` follows the accepted range in the refusal. ``help`` may place the default with
    ``{default}``; otherwise "(default X)" is appended where the field has one."""

    flag: str | None  # None: no flag (set in code, still checked)
    help: str = ""
    unit: str = ""
    metavar: str | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    note: str = ""
    group: str = "server"  # GROUPS
    api: str | None = None  # the GET /v1/model section that shows the value: "batching" or "limits"
    limit: str | None = None  # docs/serving.md "Limits": what is limited (None: not a row there)
    past: str | None = None  # ... and what happens past it


def option(default: Any, flag: str | None, **kw: Any) -> Any:
    """A ``ServeSettings`` field: its default and its ``Option``."""
    return field(default=default, metadata={"option": Option(flag, **kw)})


def limit_option(default: Any, flag: str | None, **kw: Any) -> Any:
    """A server limit: listed under "limits" in `--help` and shown in GET /v1/model's ``limits``."""
    return option(default, flag, group="limits", api="limits", **kw)


def shown(value: Any, unit: str = "") -> str:
    """A value as help, refusals and the docs show it: 4M, 16K, 5 s, 2 ms, 64."""
    if unit == "bytes" and value and value % 1024 == 0:
        return f"{value >> 20}M" if value % (1 << 20) == 0 else f"{value >> 10}K"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}" if unit in ("s", "ms", "px") else text


@dataclass(frozen=True)
class ServeSettings:
    # -- where it listens
    host: str = option(LOOPBACK, "--host", help="address to listen on (default {default}: this machine only)")
    port: int = option(
        8000, "--port", low=0, high=65535, note="0: any free port",
        help="port (default {default}; 0: any free port, printed)",
    )
    # -- batching
    max_batch: int | None = option(  # None: the model's own maximum on GPUs (else 8), 1 on CPUs
        None, "--max-batch", metavar="N", low=1,
        help="pictures per backend call (default on GPUs: the graph's or engine's maximum batch, else 8; on CPUs 1, "
        "measured faster: docs/serving.md; 1: no batching)",
    )
    max_delay_ms: float = option(
        2.0, "--max-delay-ms", unit="ms", metavar="MS", low=0, high=10_000, api="batching",
        help="how long a request waits for others to share its batch when the backend is idle",
    )
    max_queue: int = option(
        64, "--max-queue", metavar="N", low=1, api="batching",
        help="pictures waiting at most; more get 503",
        limit="pictures waiting for the backend", past="`503` with `Retry-After`",
    )
    # -- the trust boundary (spade_rt/serve/trust.py); checked in validate (their forms, not ranges)
    allow_origins: tuple[str, ...] = option(
        (), "--allow-origin", group="trust", metavar="ORIGIN",
        help="another origin whose pages may use the API and the painter, as the browser sends it, e.g. "
        "http://tools.example:3000 (repeatable; * for any: then any web page you visit can use it)",
    )
    allow_hosts: tuple[str, ...] = option(
        (), "--allow-host", group="trust", metavar="NAME",
        help="another name clients reach this server by (a reverse proxy's, a LAN name; repeatable; * for any)",
    )
    # -- what one request may cost
    max_body_bytes: int = limit_option(
        4 << 20, "--max-body", unit="bytes", metavar="SIZE", low=1024,  # label PNGs: 2048x1024 of noise is ~2 MB
        help="largest request body",
        limit="request body", past="`413`, from `Content-Length` or counted as it arrives",
    )
    max_map_pixels: int = limit_option(
        2048 * 1024, "--max-map-pixels", unit="px", metavar="PX", low=1,
        help="largest map sent with resize=true, read from its PNG header before decoding (default {default}); "
        "without resize a map must have the model's size",
        limit="a map's size, read from its PNG header before anything is decoded (without `resize=true` a map "
        "must have the model's own size)",
        past="`413` (without `resize=true`: `422`)",
    )
    max_decodes: int = limit_option(  # each decode may hold up to ~40 bytes per pixel of max_map_pixels
        2, "--max-decodes", metavar="N", low=1, high=64,
        help="PNG decodes at once; others wait",
        limit="PNG decodes at once", past="the others wait",
    )
    # -- connections
    max_connections: int = limit_option(
        64, "--max-connections", metavar="N", low=1,
        help="open connections of every kind (HTTP, idle, painters); more get 503",
        limit="open connections of every kind (HTTP, idle, painters), counted when each opens",
        past="`503` JSON with `Retry-After`, then the connection is closed (a painter's socket never opens)",
    )
    max_painters: int = limit_option(
        16, "--max-painters", metavar="N", low=0, note="0: no painters",
        help="painter WebSockets open at once; more are refused with 503",
        limit="painter WebSockets open at once", past="`503` JSON with `Retry-After`, the socket never opens",
    )
    max_head_bytes: int = limit_option(
        16 << 10, "--max-head", unit="bytes", metavar="SIZE", low=1024, high=1 << 20,
        note="a browser's request head is about 1K",
        help="largest request line + headers",
        limit="request line + headers", past="`400`, connection closed; at most this much is buffered",
    )
    idle_timeout_s: float = limit_option(
        5.0, "--idle-timeout", unit="s", metavar="S", low=0, low_open=True, high=3600,
        help="seconds a connection may take to send a complete request head, after opening or after its last "
        "response; then it is closed",
        limit="time to send a complete request head, after opening or after the last response (silent, trickling "
        "and idle keep-alive sockets)",
        past='connection closed (`spade_rt_refused_total{reason="head_timeout"}`)',
    )
    read_timeout_s: float = limit_option(
        10.0, "--read-timeout", unit="s", metavar="S", low=0, low_open=True, high=3600,
        help="seconds a request body may pause; then 408",
        limit="a pause in a request body", past="`408`",
    )
    graceful_timeout_s: float = option(
        30.0, "--graceful-timeout", unit="s", metavar="S", low=0,
        help="on SIGINT/SIGTERM, seconds the requests in flight get to finish",
    )
    jpeg_quality: int = option(90, None, low=1, high=95)
    warm_up: bool = option(
        True, "--no-warm-up", help="start serving at once instead of running one picture and two largest batches first",
    )
    access_log: bool = option(False, "--access-log", help="log every request")

    def validate(self) -> ServeSettings:
        for f, opt in options():
            message = _refusal(opt, f.name, getattr(self, f.name))
            if message:
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

    def described(self) -> dict[str, dict[str, Any]]:
        """The GET /v1/model sections: ``{"batching": {...}, "limits": {...}}``, field name -> value."""
        sections: dict[str, dict[str, Any]] = {"batching": {}, "limits": {}}
        for f, opt in options():
            if opt.api is not None:
                sections[opt.api][f.name] = getattr(self, f.name)
        return sections

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


def options() -> list[tuple[dataclasses.Field, Option]]:
    """Every ``ServeSettings`` field with its ``Option``, in the table's order."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(ServeSettings)]


def field_type(f: dataclasses.Field) -> type:
    """The type a field's values have: ``int | None`` -> int, ``tuple[str, ...]`` -> tuple."""
    hint = typing.get_type_hints(ServeSettings)[f.name]
    if typing.get_origin(hint) is tuple:
        return tuple
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def accepted(opt: Option) -> str:
    """The range ``opt`` accepts, in words: 1..64, 0 or more, more than 0, at most 3600, 1K..1M."""
    low, high = (None if v is None else shown(v, "bytes" if opt.unit == "bytes" else "") for v in (opt.low, opt.high))
    if opt.low_open:
        words = f"more than {low}" + (f", at most {high}" if high is not None else "")
    elif high is not None:
        words = f"{low}..{high}"
    else:
        words = f"{low} or more"
    return words + (f" ({opt.note})" if opt.note else "")


def _refusal(opt: Option, name: str, value: Any) -> str | None:
    if value is None or (opt.low is None and opt.high is None):
        return None
    too_low = opt.low is not None and (value <= opt.low if opt.low_open else value < opt.low)
    if not too_low and (opt.high is None or value <= opt.high):
        return None
    return f"{opt.flag or name.replace('_', ' ')} {shown(value)}: expected {accepted(opt)}"


def docs_rows() -> list[str]:
    """docs/serving.md's "Limits" rows of the settings that have one: what, flag, default, what happens past it."""
    rows = []
    for f, opt in options():
        if opt.limit is not None:
            rows.append(f"| {opt.limit} | `{opt.flag}` | {shown(f.default, opt.unit)} | {opt.past} |")
    return rows


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
