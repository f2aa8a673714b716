"""uvicorn on a socket bound here: the address is known before the first request, port 0 picks a free one.

The connection limits are uvicorn's own options (docs/serving.md, "Limits"):

- ``limit_concurrency``: open connections of every kind (HTTP, idle keep-alive, painters) -> 503;
- ``http="h11"`` with ``h11_max_incomplete_event_size``: the request head's size (httptools, uvicorn's
  other parser, takes heads of any length);
- ``ws_max_size``: painter frames, refused from the frame header before the payload is buffered
  (the websockets library), per-message deflate off (nothing to inflate: no decompression bombs);
- ``ws_ping_interval`` / ``ws_ping_timeout``: painters whose browser went away silently are closed;
- ``timeout_keep_alive``: idle keep-alive connections.

One gap is filled here, in uvicorn's own terms: uvicorn arms its idle timer only after a first response,
and any byte disarms it, so a socket that never sends a request, or sends its head a byte at a time, would
hold a connection slot forever. ``HeadTimeoutH11Protocol`` arms one timer when the connection opens and
after each response; if no request is being handled when it fires, the connection is closed.

SIGINT / SIGTERM stop accepting, let the requests in flight finish (``graceful_timeout_s``), drain the
batcher, and return normally (exit status 0), so a process manager sees a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

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


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (``Config.timeout_keep_alive`` seconds from
    the connection's opening or its previous response): silent and trickling sockets are closed."""

    _head_timer: asyncio.TimerHandle | None = None
    on_head_timeout = None  # set by run_server: counts the closes (metrics)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy or self.transport.is_closing():
            return  # a request is being handled: its body has its own read timeout (the app's)
        if HeadTimeoutH11Protocol.on_head_timeout is not None:
            HeadTimeoutH11Protocol.on_head_timeout()
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


def uvicorn_config(app, settings: ServeSettings, frame_limit: int) -> uvicorn.Config:
    """uvicorn's options for these settings: every connection limit is one of them (see the module doc)."""
    return uvicorn.Config(
        app,
        log_config=None,  # spade-rt's logging (the CLI's -v / -q)
        access_log=settings.access_log,
        http=HeadTimeoutH11Protocol,
        ws="websockets-sansio",
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=settings.max_head_bytes,
        timeout_keep_alive=settings.idle_timeout_s,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        ws_max_size=frame_limit,
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
    server = _Server(uvicorn_config(app, settings, state.frame_limit), state)
    state.server_state = server.server_state  # the painter route counts every open connection
    HeadTimeoutH11Protocol.on_head_timeout = lambda: state.metrics.refused.labels("head_timeout").inc()
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
