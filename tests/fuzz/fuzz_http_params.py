"""Fuzz target: the HTTP API's query strings, content types and multipart bodies, through the real ASGI app.

Input: ``route \\n query string \\n Content-Type \\n body`` (route: ``synthesize`` or ``labels``). The whole server
app (``create_app``: the trust boundary, the guard, Starlette's form parser, ``ServeApp._inputs``, ``parse_seed``
/ ``parse_format`` / ``parse_flag``, the PNG readers and the label pipeline, the batcher) answers it on a real
Synthesizer running the tiny graph of the seed corpus on ONNX Runtime. The property, as a client sees it: never
a 500 (an exception the server did not expect), and every refusal is a JSON body with a one-line ``error``.

Structure-aware: mutations change one query parameter, the content type (its boundary), one multipart part
(its headers, field name, file name or content) or the PNG in it (``png_chunks``).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import random
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import CORPUS, MiB, PropertyError, Target, instrumented, mutate_bytes, mutate_int, run_main
from png_chunks import mutate as mutate_png

with instrumented(("spade_rt", "python_multipart", "multipart", "starlette.formparsers")):
    from spade_rt.runtime.synthesizer import Synthesizer
    from spade_rt.serve.app import ServeApp, create_app
    from spade_rt.serve.settings import ServeSettings

GRAPH = CORPUS / "onnx_graph" / "tiny_exported_spec"  # labels + edges -> a 64 x 64 "picture", coco spec
ROUTES = {b"synthesize": "/v1/synthesize", b"labels": "/v1/labels"}


def quiet_logs() -> None:
    """While fuzzing (not when a test replays inputs in its own process, whose logging this must not change)."""
    logging.getLogger("spade_rt").setLevel(logging.ERROR)  # refusals are logged below ERROR; a 500 with its trace
    for name in ("multipart", "python_multipart"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the form parser's notes on every malformed body


_loop = asyncio.new_event_loop()
_synth = Synthesizer(GRAPH, backend="onnxruntime", threads=1)
SETTINGS = ServeSettings(max_body_bytes=1 << 20, max_map_pixels=1 << 18, warm_up=False)
APP, STATE = create_app(ServeApp(_synth, SETTINGS, 4, "tiny", "onnx"))
_loop.run_until_complete(STATE.batcher.start(False))
atexit.register(lambda: _loop.run_until_complete(STATE.batcher.close()))


def split(data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    route, query, ctype, body = [*data.split(b"\n", 3), b"", b"", b""][:4]
    return route, query, ctype, body


async def _call(route: bytes, query: bytes, ctype: bytes, body: bytes) -> tuple[int, bytes]:
    path = ROUTES.get(route.strip(), "/v1/synthesize")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", ctype),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    sent = False
    forever = asyncio.Event()

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await forever.wait()  # the client stays connected
        return {"type": "http.disconnect"}

    status, out = 0, bytearray()

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.extend(message.get("body", b""))

    await APP(scope, receive, send)
    return status, bytes(out)


def run(data: bytes) -> None:
    status, body = _loop.run_until_complete(_call(*split(data)))
    if status >= 500 or status == 0:
        raise PropertyError(f"status {status}: {body[:300]!r}")
    if status >= 400:
        message = json.loads(body)["error"]
        if not isinstance(message, str) or not message.strip() or "\n" in message:
            raise PropertyError(f"status {status} without a one-line error: {body[:300]!r}")


def _mutate_query(query: bytes, rng: random.Random) -> bytes:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if not pairs or rng.random() < 0.2:
        pairs.append((rng.choice(("seed", "format", "resize", "x", "seed")), "1"))
    i = rng.randrange(len(pairs))
    key, value = pairs[i]
    r = rng.random()
    if r < 0.4:
        value = rng.choice((str(mutate_int(int(value) if value.isdigit() else 0, rng)), "", "jpeg", "JPG", "ids",
                            "true", "off", "1e3", " 1", "-0", "٣", "%ff", "\x00", value * 40))  # fmt: skip
    elif r < 0.6:
        key = rng.choice(("seed", "format", "resize", "labels", "", "seed[]", "é"))
    else:
        return mutate_bytes(query, rng)
    pairs[i] = (key, value)
    return urlencode(pairs).encode()


def _mutate_multipart(ctype: bytes, body: bytes, rng: random.Random) -> tuple[bytes, bytes]:
    boundary = ctype.split(b"boundary=", 1)[1].split(b";")[0].strip(b'"') if b"boundary=" in ctype else b""
    if not boundary or b"--" + boundary not in body:
        raise ValueError("not multipart")
    parts = body.split(b"--" + boundary)
    i = rng.randrange(1, max(2, len(parts) - 1))
    head, sep, content = parts[i].partition(b"\r\n\r\n")
    r = rng.random()
    if r < 0.35 and content.startswith(b"\x89PNG"):
        content = mutate_png(content.removesuffix(b"\r\n"), rng) + b"\r\n"
    elif r < 0.6:
        old = rng.choice((b'name="labels"', b'name="instance"', b'name="seed"', b"filename=", b"image/png"))
        new = rng.choice(
            (b'name="instance"', b'name="labels"', b'name="other"', b"name=", b"filename*=", b"text/plain")
        )
        head = head.replace(old, new)
    elif r < 0.75:
        content = mutate_bytes(content, rng)
    elif r < 0.85:
        parts.insert(i, parts[i])
        return ctype, (b"--" + boundary).join(parts)
    else:
        return ctype.replace(boundary, rng.choice((b"", b"x", boundary[:-1], boundary * 3))), body
    parts[i] = head + sep + content
    return ctype, (b"--" + boundary).join(parts)


def mutate(data: bytes, rng: random.Random) -> bytes:
    route, query, ctype, body = split(data)
    r = rng.random()
    if r < 0.1:
        route = rng.choice((b"synthesize", b"labels"))
    elif r < 0.35:
        query = _mutate_query(query, rng)
    elif r < 0.45:
        ctype = rng.choice(
            (
                b"image/png",
                b"application/octet-stream",
                b"multipart/form-data",
                b"text/plain",
                b"multipart/form-data; boundary=",
                b"IMAGE/PNG; charset=x",
                mutate_bytes(ctype, rng),
            )
        )
    elif body.startswith(b"\x89PNG"):
        body = mutate_png(body, rng)
    else:
        ctype, body = _mutate_multipart(ctype, body, rng)
    return b"\n".join((route, query.replace(b"\n", b""), ctype.replace(b"\n", b""), body))


TARGET = Target(
    name="http_params",
    run=run,
    allowed=(),  # the app answers every input; the property is on the response
    # the app's --max-map-pixels (256K here) bounds decoded maps; bodies up to its --max-body-bytes
    max_alloc=lambda n: 32 * MiB + 64 * SETTINGS.max_map_pixels + 16 * n,
    max_len=32 << 10,
    mutate=mutate,
)

if __name__ == "__main__":
    quiet_logs()
    run_main(TARGET)
