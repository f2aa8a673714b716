"""The Starlette application of `spade-rt serve`.

Routes: ``/`` the painter (``static/``), ``GET /v1/model``, ``POST /v1/synthesize``, ``POST /v1/labels``
(a label PNG -> the model's ids, for the painter's "load"), ``GET /v1/example`` (landscape models: a
procedural scene), ``GET /healthz``, ``GET /metrics``, ``WS /ws`` (the painter's live frames, latest wins);
for the painter's browser mode ``GET /v1/graph`` (the graph offered to browsers) and ``GET /ort/NAME`` (the
onnxruntime-web files, fixed names: ``spade_rt.serve.web_runtime``). Every response carries the cross-origin
isolation headers (``ISOLATION``), so onnxruntime-web's WASM runs multithreaded; nothing the page loads
comes from another origin.

Every refusal is a JSON body ``{"error": "...", "status": N, "field": "..."}``; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from spade_rt.runtime.synthesizer import Synthesizer
from spade_rt.serve.batching import Batcher, ServerBusyError
from spade_rt.serve.inputs import (
    FORMATS,
    RequestError,
    check_seed_applies,
    describe_model,
    encode_ids,
    encode_picture,
    frame_ids,
    pack,
    parse_flag,
    parse_format,
    parse_seed,
    prepare,
    read_instance,
    read_labels,
    unpack,
)
from spade_rt.serve.metrics import CONTENT_TYPE, ServerMetrics
from spade_rt.serve.settings import ServeSettings, painter_frame_limit
from spade_rt.serve.trust import TrustBoundary, brief
from spade_rt.serve.web_runtime import MEDIA_TYPES, BrowserOffer

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("spade_rt.serve").joinpath("static")))
ROUTES = (
    "/",
    "/v1/model",
    "/v1/synthesize",
    "/v1/labels",
    "/v1/example",
    "/v1/graph",
    "/healthz",
    "/metrics",
    "/ws",
)
# Cross-origin isolation (COOP + COEP): without it browsers give pages no SharedArrayBuffer, and
# onnxruntime-web's WASM falls back to one thread. require-corp: every subresource must be same-origin (or
# say it may be embedded); the painter loads only this server's files.
ISOLATION = ((b"cross-origin-opener-policy", b"same-origin"), (b"cross-origin-embedder-policy", b"require-corp"))
RAW_TYPES = ("image/png", "application/octet-stream")
MULTIPART = "multipart/form-data"
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidated (ETag) on every load: a new graph or runtime shows at once


class BodyTooLargeError(Exception):
    pass


class BodyTimeoutError(Exception):
    """The client stopped sending its body for longer than --read-timeout."""


class ClientGoneError(Exception):
    """The client closed its connection before its picture was computed: the work is dropped."""


RETRY_AFTER_S = "1"  # seconds, on every 503: the painter page retries with backoff from there
CLIENT_CLOSED = 499  # nginx's status for "client closed the request": logged and counted, never sent


def error_response(exc: RequestError, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(exc.as_json(), status_code=exc.status, headers=headers)


class Guard:
    """ASGI middleware: body-size limit and read timeout, request counters, errors, latency, requests in flight."""

    def __init__(self, app, settings: ServeSettings, metrics: ServerMetrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in ROUTES else "/static" if path.startswith("/static/") else "other"
        if path.startswith("/ort/"):
            route = "/ort"
        t0 = time.perf_counter()
        status = 500
        limit = self.settings.max_body_bytes
        timeout = self.settings.read_timeout_s

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *ISOLATION]}
            await send(message)

        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                exc = RequestError(
                    413,
                    f"body of {brief(length.decode(errors='replace'), 20)} bytes: this server takes at most {limit} "
                    "(--max-body)",
                    "body",
                )
                await error_response(exc)(scope, receive, send_status)
                return
            received = 0
            body_done = False

            async def counted_receive():
                """The body arrives within the size limit, and never pauses longer than the read timeout; once it
                is complete, receive() only waits for the client to go away (no timeout: see _until_gone)."""
                nonlocal received, body_done
                if body_done:
                    return await receive()
                try:
                    message = await asyncio.wait_for(receive(), timeout)
                except TimeoutError:
                    raise BodyTimeoutError(
                        f"the body stopped arriving for {timeout:g} s (--read-timeout): send it without pauses"
                    ) from None
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLargeError(
                            f"body larger than {limit} bytes: this server takes at most {limit} (--max-body)"
                        )
                    body_done = not message.get("more_body", False)
                return message

            await self.app(scope, counted_receive, send_status)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)
            if status == 500 and scope.get("spade_rt.gone"):
                status = CLIENT_CLOSED  # nothing was sent: the client had gone
            self.metrics.requests.labels(route, str(status)).inc()
            if status >= 400 and status != CLIENT_CLOSED:
                self.metrics.errors.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


class Latest:
    """One painter's waiting frame: a newer frame replaces it (latest wins); never more than one waits."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.item: bytes | None = None
        self.replaced = 0
        self.closed = False
        self.metrics = metrics
        self._event = asyncio.Event()

    def put(self, item: bytes) -> None:
        if self.item is not None:
            self.replaced += 1
            self.metrics.ws_frames.labels("replaced").inc()
        self.item = item
        self._event.set()

    def close(self) -> None:
        self.closed = True
        self._event.set()

    async def get(self) -> tuple[bytes | None, int]:
        while self.item is None and not self.closed:
            self._event.clear()
            await self._event.wait()
        item, replaced = self.item, self.replaced
        self.item, self.replaced = None, 0
        return item, replaced


class ServeApp:
    """The state behind the routes: one Synthesizer, one Batcher, the metrics, the settings."""

    def __init__(
        self,
        synth: Synthesizer,
        settings: ServeSettings,
        max_batch: int,
        model: str,
        kind: str,
        browser: BrowserOffer | None = None,
    ) -> None:
        self.synth, self.settings, self.spec = synth, settings, synth.spec
        self.browser = browser
        self.metrics = ServerMetrics(max_batch)
        self.batcher = Batcher(synth, max_batch, settings.max_delay_ms, settings.max_queue, self.metrics)
        self.info = describe_model(
            self.spec, model=model, kind=kind, backend=synth.backend.name, max_batch=max_batch, settings=settings
        )
        self.info["tier"] = getattr(synth, "tier", "exact")  # the precision tier served (spade_rt.runtime.tiers)
        self.info["browser"] = (
            browser.describe()
            if browser is not None
            else {"available": False, "reason": "this server offers no browser mode", "webgpu": False}
        )
        self.guard: Guard | None = None
        self.ready_message = ""  # logged once the backend is warm (spade_rt.serve.server sets it)
        self.connection_slots = None  # --max-connections (spade_rt.serve.server sets it: ConnectionSlots)
        self.painters = 0
        lab = self.spec.labels
        self.frame_limit = painter_frame_limit(lab.height, lab.width, 1 if lab.num_label_ids <= 256 else 2)
        self._decodes: asyncio.Semaphore | None = None
        self.decoding = 0

    async def _decode(self, fn, *args):
        """Run a PNG decode in the thread pool, at most ``--max-decodes`` at once (each one's memory is bounded
        by the pixel budget, checked from the header before it starts)."""
        if self._decodes is None:
            self._decodes = asyncio.Semaphore(self.settings.max_decodes)
        async with self._decodes:
            self.decoding += 1
            self.metrics.decodes.set(self.decoding)
            self.metrics.decodes_peak.set(max(self.decoding, self.metrics.value("spade_rt_decodes_peak")))
            try:
                return await run_in_threadpool(fn, *args)
            finally:
                self.decoding -= 1
                self.metrics.decodes.set(self.decoding)

    async def _unless_gone(self, request: Request, work):
        """Await ``work`` (a coroutine) unless the client goes away first: then it is cancelled (a picture still
        waiting for its batch never reaches the backend) and ``ClientGoneError`` is raised."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(_until_gone(request))
        try:
            done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        request.scope["spade_rt.gone"] = True
        raise ClientGoneError()

    # ---- HTTP ------------------------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def model(self, request: Request) -> Response:
        return JSONResponse(self.info)

    async def graph(self, request: Request) -> Response:
        """The ONNX graph the painter's browser mode runs (GET only: it changes nothing)."""
        if self.browser is None or self.browser.graph is None:
            reason = self.info["browser"]["reason"] or "no graph for browsers"
            raise RequestError(404, f"no graph for browsers here: {reason}")
        return FileResponse(self.browser.graph, media_type="application/octet-stream", headers=NO_CACHE)

    async def ort_file(self, request: Request) -> Response:
        """One of onnxruntime-web's files, by its fixed name (``web_runtime.WASM_FILES``, ``WEBGPU_FILES``)."""
        name = request.path_params["name"]
        files = self.browser.runtime.files if self.browser is not None else {}
        if name not in files:
            reason = self.info["browser"]["reason"] or "not one of its files"
            raise RequestError(404, f"no onnxruntime-web file {brief(name, 60)} here: {reason}")
        path = files[name]
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.info["model"], "queue": self.batcher.depth})

    async def metrics_text(self, request: Request) -> Response:
        if self.connection_slots is not None:
            self.metrics.connections.set(self.connection_slots.held)
        return Response(self.metrics.text(), headers={"Content-Type": CONTENT_TYPE})

    async def example(self, request: Request) -> Response:
        if not self.info["examples"]:
            raise RequestError(404, f"no example scenes for the {self.spec.preset} preset (landscape models only)")
        seed = parse_seed(request.query_params.get("seed"))
        from spade_rt.procedural import landscape_labels

        ids = landscape_labels(self.spec.labels.height, self.spec.labels.width, seed)
        fmt = request.query_params.get("format", "png")
        if fmt == "ids":  # the painter's buffer
            return Response(encode_ids(ids, self.info["num_ids"]), media_type="application/octet-stream")
        if fmt != "png":
            raise RequestError(400, f"format {brief(fmt)}: expected png or ids", "format")
        buf = io.BytesIO()
        Image.fromarray(ids).save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png")

    async def _inputs(self, request: Request) -> tuple[dict, bytes, bytes | None]:
        """(parameters, label PNG bytes, instance PNG bytes or None) from a raw PNG body or a multipart form."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        params = dict(request.query_params)
        if ctype in RAW_TYPES:
            return params, await request.body(), None
        if ctype != MULTIPART:
            raise RequestError(
                415,
                f"Content-Type {ctype or '(none)'!r} is not accepted: send a label PNG as image/png, or "
                "multipart/form-data with a 'labels' file (and optional 'instance', 'seed', 'format', 'resize')",
                "content-type",
            )
        limit = self.settings.max_body_bytes
        async with request.form(max_files=2, max_fields=8, max_part_size=limit) as form:
            files: dict[str, bytes] = {}
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key not in ("labels", "instance"):
                        raise RequestError(
                            400, f"unexpected file field {brief(key, 30)}: expected 'labels' and 'instance'", key[:30]
                        )
                    files[key] = await value.read()
                elif key in ("labels", "instance"):
                    raise RequestError(400, f"{key!r} must be a file part (a PNG), not a text field", key)
                elif isinstance(value, str) and len(value) > 64:  # parameters are short: seed, format, resize
                    raise RequestError(
                        400, f"field {brief(key, 30)} of {len(value)} characters: expected a short value"
                    )
                else:
                    params[key] = value
        if "labels" not in files:
            raise RequestError(400, "the form has no 'labels' file: send the label PNG as field 'labels'", "labels")
        return params, files["labels"], files.get("instance")

    async def synthesize(self, request: Request) -> Response:
        t0 = time.perf_counter()
        params, labels, instance = await self._inputs(request)
        unknown = set(params) - {"seed", "format", "resize"}
        if unknown:
            names = ", ".join(brief(n, 30)[1:-1] for n in sorted(unknown)[:4])
            raise RequestError(400, f"unknown parameter(s) {names}: expected seed, format, resize")
        seed = parse_seed(params.get("seed"))
        if params.get("seed") not in (None, ""):  # given: the model must take a style (a VAE model)
            check_seed_applies(self.spec, self.info["model"], seed)
        fmt = parse_format(params.get("format"))
        resize = parse_flag("resize", params.get("resize"))
        max_px = self.settings.max_map_pixels

        def decode():
            raw = read_labels(labels, self.spec, max_px, resize)
            inst = None if instance is None else read_instance(instance, self.spec, max_px, resize)
            return prepare(self.spec, self.synth.make_z, raw, inst, seed, resize)

        prepared = await self._unless_gone(request, self._decode(decode))
        result = await self._unless_gone(request, self.batcher.submit(prepared.ids, prepared.edges, prepared.z))
        body = await run_in_threadpool(encode_picture, result.picture, fmt, self.settings.jpeg_quality)
        headers = {
            "X-Spade-Rt-Batch": str(result.batch),
            "X-Spade-Rt-Queue-Ms": f"{result.queue_ms:.2f}",
            "X-Spade-Rt-Compute-Ms": f"{result.compute_ms:.2f}",
            "X-Spade-Rt-Server-Ms": f"{(time.perf_counter() - t0) * 1e3:.2f}",
        }
        return Response(body, media_type=FORMATS[fmt][1], headers=headers)

    async def labels(self, request: Request) -> Response:
        """A label PNG (ids or palette colours) -> the model's ids (raw bytes), resized with NEAREST."""
        params, data, _ = await self._inputs(request)
        resize = parse_flag("resize", params.get("resize", "true"))

        def decode():
            raw = read_labels(data, self.spec, self.settings.max_map_pixels, resize)
            return prepare(self.spec, self.synth.make_z, raw, None, 0, resize).ids

        ids = await self._unless_gone(request, self._decode(decode))
        headers = {"X-Height": str(ids.shape[0]), "X-Width": str(ids.shape[1]), "X-Dtype": self.info["id_dtype"]}
        return Response(encode_ids(ids, self.info["num_ids"]), media_type="application/octet-stream", headers=headers)

    # ---- the painter's WebSocket -------------------------------------------------------------------------
    async def refuse_connection(self, scope, receive, send) -> None:
        """ASGI: the answer to every request on a connection that opened while all ``--max-connections`` slots
        were held (``spade_rt.serve.server.ConnectionSlots``), a painter's handshake included: 503 with
        ``Retry-After``, then the connection is closed."""
        limit = self.settings.max_connections
        what = "a painter" if scope.get("path") == "/ws" else "a request"
        self.metrics.refused.labels("connections").inc()
        log.info("refused %s: %d connections were open (--max-connections %d)", what, limit, limit)
        exc = RequestError(503, f"{limit} connections are open already (--max-connections {limit}): retry later")
        await error_response(exc, headers={"Retry-After": RETRY_AFTER_S, "Connection": "close"})(scope, receive, send)

    async def painter_slot(self, request: Request) -> Response:
        """GET /ws over plain HTTP. Browsers hide a refused WebSocket handshake's status and Retry-After, so the
        painter asks here after a failed handshake: 503 + Retry-After (as the handshake answers) while a painter
        would be refused, else 426 (a painter would be let in now: open the WebSocket)."""
        refusal = self._painter_refusal()
        if refusal is not None:
            headers = {"Retry-After": RETRY_AFTER_S}
            return JSONResponse({"error": refusal, "status": 503}, status_code=503, headers=headers)
        body = {"error": "a painter would be let in now: open a WebSocket here", "status": 426}
        return JSONResponse(body, status_code=426, headers={"Upgrade": "websocket"})

    def _painter_refusal(self) -> str | None:
        """Why a painter would be refused now (all --max-painters slots held), or None. A connection past
        --max-connections never gets here: ``refuse_connection`` answers it first."""
        limit = self.settings.max_painters
        if self.painters >= limit:
            return f"{self.painters} painters are open already (--max-painters {limit}): retry later"
        return None

    async def painter(self, ws: WebSocket) -> None:
        refusal = self._painter_refusal()
        if refusal is not None:
            self.metrics.refused.labels("painters").inc()
            log.info("refused a painter: %s", refusal)
            body = {"error": refusal, "status": 503}
            await ws.send_denial_response(JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER_S}))
            return
        self.painters += 1  # before the handshake's await: a burst of handshakes sees every slot taken so far
        try:
            await self._paint(ws)
        finally:
            self.painters -= 1

    async def _paint(self, ws: WebSocket) -> None:
        await ws.accept()
        self.metrics.ws_connections.inc()
        slot = Latest(self.metrics)

        async def receive_frames() -> None:
            try:
                while True:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    data = message.get("bytes")
                    slot.put(data if data is not None else b"")  # text frames are refused by the frame parser
            finally:
                slot.close()

        reader = asyncio.get_running_loop().create_task(receive_frames())
        try:
            while True:
                data, replaced = await slot.get()
                if data is None:
                    break
                await ws.send_bytes(await self._frame(data, replaced))
        except (WebSocketDisconnect, WebSocketDisconnected, OSError):
            pass  # the painter went away mid-send
        finally:
            reader.cancel()
            self.metrics.ws_connections.dec()

    async def _frame(self, data: bytes, replaced: int) -> bytes:
        t0 = time.perf_counter()
        frame = None
        try:
            header, payload = unpack(data)
            frame = header.get("frame") if isinstance(header.get("frame"), int) else None
            frame, seed, raw = frame_ids(header, payload, self.spec)
            prepared = await run_in_threadpool(prepare, self.spec, self.synth.make_z, raw, None, seed, False, "frame")
            result = await self.batcher.submit(prepared.ids, prepared.edges, prepared.z)
            png = await run_in_threadpool(encode_picture, result.picture, "png")
        except RequestError as exc:
            self.metrics.ws_frames.labels("refused").inc()
            return pack({"frame": frame, "error": exc.message, "status": exc.status, "replaced": replaced})
        except ServerBusyError as exc:
            self.metrics.ws_frames.labels("refused").inc()
            return pack({"frame": frame, "error": str(exc), "status": 503, "replaced": replaced})
        except Exception as exc:  # the backend failed: say so on this frame, log it, keep the painter open
            log.error("painter frame failed: %s: %s", type(exc).__name__, str(exc)[:300])
            self.metrics.ws_frames.labels("failed").inc()
            return pack({"frame": frame, "error": f"internal error: {type(exc).__name__}", "status": 500})
        self.metrics.ws_frames.labels("answered").inc()
        header = {
            "frame": frame,
            "batch": result.batch,
            "queue_ms": round(result.queue_ms, 2),
            "compute_ms": round(result.compute_ms, 2),
            "server_ms": round((time.perf_counter() - t0) * 1e3, 2),
            "replaced": replaced,
            "format": "png",
        }
        return pack(header, png)


def create_app(state: ServeApp) -> tuple:
    """(ASGI app, ``state``): the Starlette routes over ``state`` behind the Guard middleware."""
    settings = state.settings

    @asynccontextmanager
    async def lifespan(app):
        await state.batcher.start(settings.warm_up)
        if state.ready_message:
            log.info("%s", state.ready_message)  # after the warm-up: requests are answered from now on
        yield
        await state.batcher.close()

    async def request_error(request: Request, exc: RequestError) -> Response:
        return error_response(exc)

    async def busy(request: Request, exc: ServerBusyError) -> Response:
        return error_response(RequestError(503, str(exc)), headers={"Retry-After": RETRY_AFTER_S})

    async def too_large(request: Request, exc: BodyTooLargeError) -> Response:
        return error_response(RequestError(413, str(exc), "body"))

    async def body_timeout(request: Request, exc: BodyTimeoutError) -> Response:
        state.metrics.abandoned.labels("body_timeout").inc()
        return error_response(RequestError(408, str(exc), "body"), headers={"Connection": "close"})

    async def disconnected(request: Request, exc: ClientDisconnect) -> Response:
        """The client closed the connection mid-body: one log line and a count, nothing to answer."""
        state.metrics.abandoned.labels("body").inc()
        request.scope["spade_rt.gone"] = True
        log.info("client %s closed the connection mid-body on %s", _client(request), request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    async def gone(request: Request, exc: ClientGoneError) -> Response:
        """The client went away while its map was decoded or its picture waited: the work was dropped."""
        state.metrics.abandoned.labels("before_compute").inc()
        log.info("client %s went away before its picture on %s: dropped", _client(request), request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        detail = exc.detail
        if exc.status_code == 404:
            detail = f"no route {request.url.path}: see GET /v1/model, POST /v1/synthesize, GET /healthz, GET /metrics"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(
            {"error": detail, "status": exc.status_code}, status_code=exc.status_code, headers=exc.headers
        )

    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}", "status": 500}, status_code=500)

    routes = [
        Route("/", state.index),
        Route("/v1/model", state.model),
        Route("/v1/synthesize", state.synthesize, methods=["POST"]),
        Route("/v1/labels", state.labels, methods=["POST"]),
        Route("/v1/example", state.example),
        Route("/v1/graph", state.graph),
        Route("/ort/{name}", state.ort_file),
        Route("/healthz", state.healthz),
        Route("/metrics", state.metrics_text),
        WebSocketRoute("/ws", state.painter),
        Route("/ws", state.painter_slot),  # HTTP: why a handshake was refused (the painter's retry)
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            RequestError: request_error,
            ServerBusyError: busy,
            BodyTooLargeError: too_large,
            BodyTimeoutError: body_timeout,
            ClientDisconnect: disconnected,
            ClientGoneError: gone,
            HTTPException: http_error,
            Exception: internal,
        },
    )
    state.guard = Guard(app, settings, state.metrics)
    return TrustBoundary(state.guard, settings, state.metrics), state


async def _until_gone(request: Request) -> None:
    """Returns when the client has disconnected (the body is read already: receive() now only reports that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "(unknown)"
