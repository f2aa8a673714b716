"""The browser trust boundary of `spade-rt serve`: which Host names and Origins may drive the server.

Two attacks reach a server on the user's own machine through the user's own browser (docs/serving.md,
"Threat model"):

- **Cross-site requests and WebSocket hijacking.** Any page the user visits may POST a form to
  ``http://127.0.0.1:8000/v1/synthesize`` (a "simple" request: no CORS preflight) or open
  ``ws://127.0.0.1:8000/ws``; browsers send such requests, with an ``Origin`` header naming the page's site.
  So state-changing requests (every method but GET, HEAD, OPTIONS) and WebSocket handshakes are accepted
  only without an Origin (curl, SDKs: not a browser page) or with the server's own origin (the painter it
  served) or an ``--allow-origin`` entry. ``Origin: null`` (sandboxed frames, file: pages) is refused.
- **DNS rebinding.** A page at ``http://evil.example`` re-points its name at 127.0.0.1 and is then
  same-origin with the server. Its requests still say ``Host: evil.example``, so every request must name
  the bound address, a loopback name (localhost, *.localhost, 127.0.0.0/8, ::1) or an ``--allow-host``
  entry. A server bound to every interface (0.0.0.0, ::) also takes any IP-address Host: an address
  literal cannot be re-pointed, only a name can.

Refusals are 403 with a JSON body ``{"error", "status": 403, "field": "host"|"origin"}``; a refused
WebSocket handshake gets the same 403 body through the ASGI ``websocket.http.response`` extension, or is
closed with code 1008 (policy violation) where the server lacks it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import TYPE_CHECKING

from spade_rt.serve.settings import ServeSettings, is_loopback_name

if TYPE_CHECKING:  # only a type here: `spade-rt web` imports this module without the server stack (prometheus)
    from spade_rt.serve.metrics import ServerMetrics

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
POLICY_VIOLATION = 1008  # RFC 6455 close code


def brief(value: str, limit: int = 60) -> str:
    """A bounded, printable quotation of untrusted text for error messages and logs."""
    text = value if len(value) <= limit else value[:limit] + f"... ({len(value)} chars)"
    return repr(text)


def split_host(host_header: str) -> str:
    """``example.com:8000`` -> ``example.com``; ``[::1]:8000`` -> ``::1``."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    if host_header.count(":") == 1:
        return host_header.rsplit(":", 1)[0]
    return host_header


class TrustBoundary:
    """ASGI middleware, outermost: checks Host on every request and Origin on WebSockets and state changes."""

    def __init__(self, app, settings: ServeSettings, metrics: ServerMetrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics
        bound = settings.host.lower().strip("[]")
        self.hosts = {bound, *(h.lower() for h in settings.allow_hosts)}
        self.any_host = "*" in settings.allow_hosts
        self.origins = {o.lower().rstrip("/") for o in settings.allow_origins}
        self.any_origin = "*" in settings.allow_origins

    # ---- the rules ---------------------------------------------------------------------------------------
    def host_allowed(self, host_header: str) -> bool:
        if self.any_host:
            return True
        name = split_host(host_header.strip()).lower().rstrip(".")
        if not name:
            return False
        if name in self.hosts or is_loopback_name(name):
            return True
        if self.settings.is_wildcard:
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False

    def origin_allowed(self, origin: str, scheme: str, host_header: str) -> bool:
        origin = origin.strip().lower().rstrip("/")
        own = f"{'https' if scheme in ('https', 'wss') else 'http'}://{host_header.strip().lower()}"
        return origin == own or self.any_origin or origin in self.origins

    def refusal(self, scope) -> tuple[str, str] | None:
        """(field, message) when the request must be refused, else None."""
        headers = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        host = headers.get("host", "")
        if not self.host_allowed(host):
            shown = brief(host) if host else "(none)"
            return "host", (
                f"Host {shown} is not this server's: expected {self.settings.host}, a loopback name, or a name "
                "given with --allow-host (a foreign Host is how DNS rebinding reaches a local server)"
            )
        origin = headers.get("origin")
        state_changing = scope["type"] == "websocket" or scope.get("method", "GET") not in SAFE_METHODS
        if origin is not None and state_changing and not self.origin_allowed(origin, scope.get("scheme", ""), host):
            what = "painter connections" if scope["type"] == "websocket" else f"{scope.get('method')} requests"
            return "origin", (
                f"Origin {brief(origin)} may not make {what} here: only pages this server served "
                "(or origins given with --allow-origin) may"
            )
        return None

    # ---- ASGI --------------------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        field, message = refused
        self.metrics.refused.labels(field).inc()
        log.info("refused %s %s: %s", scope["type"], scope.get("path", ""), message)
        body = json.dumps({"error": message, "status": 403, "field": field}).encode()
        if scope["type"] == "http":
            await send_json(send, "http.response", 403, body)
            self.metrics.requests.labels("refused", "403").inc()
            self.metrics.errors.labels("refused", "403").inc()
        else:
            await refuse_websocket(scope, receive, send, 403, body, message)


async def send_json(send, prefix: str, status: int, body: bytes, headers: tuple = ()) -> None:
    """A JSON response through ``send`` (``prefix``: "http.response" or "websocket.http.response")."""
    await send(
        {
            "type": f"{prefix}.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": f"{prefix}.body", "body": body})


async def refuse_websocket(scope, receive, send, status: int, body: bytes, reason: str) -> None:
    """Refuse a WebSocket handshake: an HTTP ``status`` with a JSON body where the server supports it, else 1008."""
    message = await receive()  # ASGI: the handshake's websocket.connect comes first
    if message["type"] != "websocket.connect":
        return  # the client went away
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = ((b"retry-after", b"1"),) if status == 503 else ()
        await send_json(send, "websocket.http.response", status, body, headers)
    else:
        await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": reason[:120]})
