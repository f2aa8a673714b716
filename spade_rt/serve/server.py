"""uvicorn on a socket bound here: the address is known before the first request, port 0 picks a free one.

SIGINT / SIGTERM stop accepting, let the requests in flight finish (``graceful_timeout_s``), drain the
batcher, and return normally (exit status 0), so a process manager sees a clean stop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading

import uvicorn

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
            guard = self.state.guard
            log.info(
                "%s: shutting down; finishing %d picture(s) accepted, %d HTTP request(s), %d painter connection(s)",
                signal.Signals(sig).name,
                self.state.batcher.depth,
                guard.in_flight if guard else 0,
                int(self.state.metrics.ws_connections.get()),
            )
        super().handle_exit(sig, frame)


def run_server(app, state: ServeApp, settings: ServeSettings, sock: socket.socket) -> None:
    """Serve on ``sock`` (from ``bind``) until SIGINT/SIGTERM; logs the URL of the painter once listening."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        app,
        log_config=None,  # spade-rt's logging (the CLI's -v / -q)
        access_log=settings.access_log,
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        ws_max_size=settings.max_body_bytes,
        lifespan="on",
        server_header=False,
    )
    server = _Server(config, state)
    if not settings.is_loopback:
        log.warning("listening on %s: anyone who can reach this address can use the server (no authentication)", host)
    state.ready_message = (
        f"painter: http://{shown}:{port}/  API: POST /v1/synthesize, GET /v1/model, /healthz, /metrics"
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    log.info(
        "stopped: %d picture(s) served, %d request error(s)",
        int(state.metrics.pictures.get()),
        int(sum(state.metrics.errors.values.values())),
    )
