"""uvicorn on a socket bound here: the address is known before the first request, port 0 picks a free one.

The connection limits are uvicorn's own options (docs/serving.md, "Limits"), but one:

- ``--max-connections`` is decided here, once per connection, when it opens (``ConnectionSlots``): the
  first ``max_connections`` open connections hold a slot until they close, and a connection that opens
  while every slot is held holds none: its request gets ``503`` with ``Retry-After`` and it is closed.
  uvicorn's ``limit_concurrency`` counts every open socket when a request arrives, refused ones included,
  so a burst larger than the limit was refused whole (12 painters at once with a limit of 8: all 12 got
  503). Arrival order admits exactly ``min(N, limit)`` of N at once;
- ``http="h11"`` with ``h11_max_incomplete_event_size``: the request head's size (httptools, uvicorn's
  other parser, takes heads of any length);
- ``ws_max_size``: painter frames, refused from the frame header before the payload is buffered
  (the websockets library), per-message deflate off (nothing to inflate: no decompression bombs);
- ``ws_ping_interval`` / ``ws_ping_timeout``: painters whose browser went away silently are closed;
- ``timeout_keep_alive``: idle keep-alive connections.

One gap is filled here, in uvicorn's own terms: uvicorn arms its idle timer only after a first response,
and any byte disarms it, so a socket that never sends a request, or sends its head a byte at a time, would
hold a connection slot forever. ``ServeH11Protocol`` arms one timer when the connection opens and
after each response; if no request is being handled when it fires, the connection is closed.

SIGINT / SIGTERM stop accepting, let the requests in flight finish (``graceful_timeout_s``), drain the
batcher, and return normally (exit status 0), so a process manager sees a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import threading

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from spade_rt.errors import ConfigError
from spade_rt.serve.app import ServeApp
from spade_rt.serve.settings import ServeSettings

log = logging.getLogger("spade_rt")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv6 when the host is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror} (another server there? try --port 0)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class ConnectionSlots:
    """``--max-connections``, decided when a connection opens, in the order connections arrive.

    A connection takes a slot when it opens and gives it back when it closes (HTTP or upgraded to a painter's
    WebSocket: the slot belongs to the socket, ``transport``); one that opens while all ``limit`` slots are
    held takes none, and is answered 503 and closed. Refused connections never count against the limit, so
    N connections opening together admit exactly ``min(N, limit)``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: set = set()

    def take(self, transport) -> bool:
        if len(self._held) >= self.limit:
            return False
        self._held.add(transport)
        return True

    def give_back(self, transport) -> None:
        self._held.discard(transport)

    @property
    def held(self) -> int:
        return len(self._held)


class ServeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the connection limit (``slots``: a connection past it has every request
    answered by ``refuse``, an ASGI app, and never upgrades to a WebSocket) and a deadline for each request head
    (``Config.timeout_keep_alive`` seconds from the connection's opening or its previous response): silent and
    trickling sockets are closed. ``slots``, ``refuse`` and ``on_head_timeout`` are bound by ``uvicorn_config``."""

    _head_timer: asyncio.TimerHandle | None = None
    admitted = True

    def __init__(self, *args, slots: ConnectionSlots | None = None, refuse=None, on_head_timeout=None, **kw) -> None:
        super().__init__(*args, **kw)
        self.slots, self.on_head_timeout = slots, on_head_timeout
        self._refuse = refuse

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.slots is not None and not self.slots.take(transport):
            self.admitted = False
            self.app = self._refuse  # uvicorn's limit_concurrency is off: every request here goes to `refuse`
        self._arm_head_timer()

    def _should_upgrade(self) -> bool:
        return self.admitted and super()._should_upgrade()  # refused: the handshake is answered as HTTP (503)

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy or self.transport.is_closing():
            return  # a request is being handled: its body has its own read timeout (the app's)
        if self.on_head_timeout is not None:
            self.on_head_timeout()
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def handle_websocket_upgrade(self, event) -> None:
        if self._head_timer is not None:  # the WebSocket protocol takes the connection over (pings, limits)
            self._head_timer.cancel()
            self._head_timer = None
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.slots is not None and self.admitted:
            self.slots.give_back(self.transport)
        super().connection_lost(exc)


class ServeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, giving the connection's slot back when the painter's socket closes (the
    h11 protocol that took it hands the socket over on the upgrade and never hears of it again)."""

    def __init__(self, *args, slots: ConnectionSlots | None = None, **kw) -> None:
        super().__init__(*args, **kw)
        self.slots = slots

    def connection_lost(self, exc) -> None:
        if self.slots is not None:
            self.slots.give_back(self.transport)
        super().connection_lost(exc)


class _Server(uvicorn.Server):
    """uvicorn's server, saying what it finishes when told to stop, and exiting normally afterwards."""

    def __init__(self, config: uvicorn.Config, state: ServeApp) -> None:
        super().__init__(config)
        self.state = state

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            log.info(
                "%s: shutting down; finishing %d picture(s) accepted, %d HTTP request(s), %d painter connection(s)",
                signal.Signals(sig).name,
                self.state.batcher.depth,
                self.state.guard.in_flight if self.state.guard else 0,
                self.state.painters,
            )
        super().handle_exit(sig, frame)


def uvicorn_config(app, state: ServeApp, settings: ServeSettings) -> uvicorn.Config:
    """uvicorn's options for these settings: every connection limit is one of them (see the module doc)."""
    slots = ConnectionSlots(settings.max_connections)
    state.connection_slots = slots
    http = functools.partial(
        ServeH11Protocol,
        slots=slots,
        refuse=state.refuse_connection,
        on_head_timeout=lambda: state.metrics.refused.labels("head_timeout").inc(),
    )
    return uvicorn.Config(
        app,
        log_config=None,  # spade-rt's logging (the CLI's -v / -q)
        access_log=settings.access_log,
        http=http,
        ws=functools.partial(ServeWebSocketProtocol, slots=slots),
        limit_concurrency=None,  # ConnectionSlots: decided per connection when it opens, not per request
        h11_max_incomplete_event_size=settings.max_head_bytes,
        timeout_keep_alive=settings.idle_timeout_s,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        ws_max_size=state.frame_limit,
        ws_max_queue=1,  # frames waiting in the protocol; the app keeps only the latest anyway
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        lifespan="on",
        server_header=False,
        proxy_headers=False,  # no proxy is trusted by default: client addresses are the socket's
    )


def run_server(app, state: ServeApp, settings: ServeSettings, sock: socket.socket) -> None:
    """Serve on ``sock`` (from ``bind``) until SIGINT/SIGTERM; logs the URL of the painter once listening."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = _Server(uvicorn_config(app, state, settings), state)
    if not settings.is_loopback:
        log.warning(
            "listening on %s: anyone who can reach this address can use the server (no authentication); "
            "browsers may use it only from pages it served%s",
            host,
            " and " + ", ".join(settings.allow_origins) if settings.allow_origins else "",
        )
    state.ready_message = (
        f"painter: http://{shown}:{port}/  API: POST /v1/synthesize, GET /v1/model, /healthz, /metrics"
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    log.info(
        "stopped: %d picture(s) served, %d request error(s)",
        int(state.metrics.value("spade_rt_pictures_total")),
        int(state.metrics.total("spade_rt_http_errors_total")),
    )
