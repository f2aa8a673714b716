"""`spade-rt serve` tried the way an attacker would: real server processes on loopback, raw sockets, real clients.

Each test is one attack from the threat model (docs/serving.md) and fails without the limit it checks:
foreign origins and Host names, painters beyond the limits, oversized frames, silent and trickling sockets,
oversized heads, a small PNG that decodes huge (the server's peak memory, VmHWM, is read from /proc),
requests abandoned before their picture, clients that vanish mid-body, nested JSON frame headers, errors
that would echo what was sent. Every loop is bounded in count and time; every address is 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import struct
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from spade_rt.bench.serve_load import ServeProcess
from spade_rt.procedural import landscape_labels
from spade_rt.serve.settings import ServeSettings
from spade_rt.serve.trust import TrustBoundary

from serve_support import decode, frame, png, reply, server_metric, wait_until

H = W = 128  # the demo model
FOREIGN = "http://evil.example"


@pytest.fixture(scope="module")
def guarded(demo_graph):
    """Small limits, so that each attack crosses one quickly: 2 painters, 1 s to send a head or pause a body,
    8 KiB heads, 64 KiB bodies, 200x200-pixel maps with resize, one decode at a time, no batching."""
    args = (
        "--max-painters", "2", "--idle-timeout", "1", "--read-timeout", "1", "--max-head", "8K",
        "--max-body", "64K", "--max-map-pixels", str(200 * 200), "--max-decodes", "1", "--max-batch", "1",
    )  # fmt: skip
    with ServeProcess(demo_graph, *args) as server:
        yield server


def raw(server, data: bytes = b"") -> socket.socket:
    s = socket.create_connection((server.host, server.port), timeout=10)
    if data:
        s.sendall(data)
    return s


def closed_by_server(s: socket.socket, within: float) -> bool:
    """True when the server closes ``s`` (EOF or reset) within ``within`` seconds; whatever it sent is read."""
    s.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


# ---- the trust boundary ----------------------------------------------------------------------------------
def test_cross_origin_pages_cannot_paint_or_post(guarded, demo_synth):
    ws_url = f"ws://{guarded.host}:{guarded.port}/ws"
    own = f"http://{guarded.host}:{guarded.port}"
    before = server_metric(guarded, "spade_rt_pictures_total")
    for origin in (FOREIGN, "null", f"http://{guarded.host}:{guarded.port + 1}"):  # another site, sandboxed, port
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, origin=origin, open_timeout=10)
        response = refused.value.response
        assert response.status_code == 403, origin
        body = json.loads(response.body)
        assert body["field"] == "origin" and "may not make painter connections" in body["error"], body
    ok = landscape_labels(H, W, 1)
    r = httpx.post(f"{guarded.url}/v1/synthesize", files={"labels": ("l.png", png(ok), "image/png")},
                   headers={"Origin": FOREIGN})  # fmt: skip
    assert r.status_code == 403 and r.json()["field"] == "origin" and "POST requests" in r.json()["error"]
    r = httpx.post(f"{guarded.url}/v1/labels", content=png(ok), headers={"Content-Type": "image/png", "Origin": "null"})
    assert r.status_code == 403
    assert server_metric(guarded, "spade_rt_pictures_total") == before  # nothing was computed for them
    # the server's own pages, and clients that are no page at all (no Origin), keep working
    with connect(ws_url, origin=own, open_timeout=10, max_size=None) as ws:
        ws.send(frame(1, ok))
        _, picture = reply(ws.recv(timeout=60))
        np.testing.assert_array_equal(decode(picture), demo_synth(ok))
    for headers in ({"Origin": own}, {}):
        headers = {"Content-Type": "image/png", **headers}
        r = httpx.post(f"{guarded.url}/v1/synthesize", content=png(ok), headers=headers)
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(decode(r.content), demo_synth(ok))
    assert httpx.get(f"{guarded.url}/v1/model", headers={"Origin": FOREIGN}).status_code == 200  # reads: CORS guards
    assert server_metric(guarded, "spade_rt_refused_total", reason="origin") >= 5


def test_a_foreign_host_is_refused_dns_rebinding(guarded):
    for host in ("evil.example", f"evil.example:{guarded.port}", "127.0.0.1.evil.example", ""):
        r = httpx.get(f"{guarded.url}/healthz", headers={"Host": host})
        assert r.status_code == 403 and r.json()["field"] == "host", (host, r.text)
        assert "DNS rebinding" in r.json()["error"]
    for host in (f"localhost:{guarded.port}", f"127.0.0.1:{guarded.port}", "app.localhost", "127.0.0.2"):
        assert httpx.get(f"{guarded.url}/healthz", headers={"Host": host}).status_code == 200, host
    with pytest.raises(InvalidStatus) as refused:  # the painter too
        connect("ws://evil.example/ws", sock=raw(guarded), open_timeout=10)  # "evil.example" resolves to us
    assert refused.value.response.status_code == 403
    page = httpx.get(f"{guarded.url}/", headers={"Host": "evil.example"})  # the painter page itself
    assert page.status_code == 403 and "spade-rt painter" not in page.text


def test_allow_lists_and_wildcard_binds():
    def boundary(**kw) -> TrustBoundary:
        return TrustBoundary(None, ServeSettings(**kw).validate(), None)

    def refusal(b: TrustBoundary, host: str, origin: str | None = None, method: str = "POST"):
        headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
        found = b.refusal({"type": "http", "method": method, "scheme": "http", "headers": headers})
        return None if found is None else found[0]

    b = boundary(allow_hosts=("painter.lan",), allow_origins=("http://tools.example:3000",))
    assert refusal(b, "painter.lan:8000") is None and refusal(b, "other.lan") == "host"
    assert refusal(b, "127.0.0.1:8000", "http://tools.example:3000") is None
    assert refusal(b, "127.0.0.1:8000", "http://tools.example:3001") == "origin"
    assert refusal(b, "127.0.0.1:8000", "http://127.0.0.1:8000") is None  # its own pages
    assert refusal(b, "127.0.0.1:8000", FOREIGN, method="GET") is None  # reads pass (CORS keeps them unread)
    lan = boundary(host="0.0.0.0")  # every interface: address literals pass, names do not
    assert refusal(lan, "192.168.1.20:8000") is None and refusal(lan, "[fe80::1]:8000") is None
    assert refusal(lan, "evil.example:8000") == "host"
    assert refusal(boundary(allow_hosts=("*",)), "anything.example") is None
    assert refusal(boundary(allow_origins=("*",)), "localhost", FOREIGN) is None
    for bad in ({"allow_origins": ("tools.example",)}, {"allow_origins": ("http://a/b",)}, {"allow_hosts": ("a b",)}):
        with pytest.raises(Exception, match="--allow-"):
            ServeSettings(**bad).validate()


# ---- connections of every kind ---------------------------------------------------------------------------
def test_painters_beyond_the_limit_are_refused(guarded, demo_synth):
    url = f"ws://{guarded.host}:{guarded.port}/ws"
    with contextlib.ExitStack() as stack:
        _, second = (stack.enter_context(connect(url, max_size=None)) for _ in range(2))
        with pytest.raises(InvalidStatus) as refused:
            stack.enter_context(connect(url, open_timeout=10))
        assert refused.value.response.status_code == 503
        assert "--max-painters 2" in json.loads(refused.value.response.body)["error"]
        second.send(frame(1, landscape_labels(H, W, 2)))  # the open ones keep painting
        assert "error" not in reply(second.recv(timeout=60))[0]
    assert wait_until(lambda: server_metric(guarded, "spade_rt_ws_connections") == 0, 10)
    with connect(url, max_size=None) as again:  # slots come back
        again.send(frame(2, landscape_labels(H, W, 3)))
        _, picture = reply(again.recv(timeout=60))
        np.testing.assert_array_equal(decode(picture), demo_synth(landscape_labels(H, W, 3)))


def test_painters_count_against_the_connection_limit(demo_graph):
    with ServeProcess(demo_graph, "--max-connections", "4", "--max-painters", "10", "--no-warm-up") as server:
        url = f"ws://{server.host}:{server.port}/ws"
        opened, statuses = 0, []
        with contextlib.ExitStack() as stack:
            for _ in range(8):  # bounded
                try:
                    stack.enter_context(connect(url, open_timeout=10))
                    opened += 1
                except InvalidStatus as exc:
                    statuses.append(exc.response.status_code)
                    assert "--max-connections 4" in json.loads(exc.response.body)["error"]
            assert opened == 4 and statuses == [503] * 4, (opened, statuses)
            assert httpx.get(f"{server.url}/healthz").status_code == 503  # HTTP shares the same limit
        assert wait_until(lambda: httpx.get(f"{server.url}/healthz").status_code == 200, 10)


def test_a_frame_larger_than_the_models_map_is_refused_before_it_is_buffered(guarded):
    url = f"ws://{guarded.host}:{guarded.port}/ws"
    limit = 4 + 4096 + H * W  # the header length, the largest header, one map of uint8 ids
    peak = guarded.peak_rss_bytes()
    how = None
    try:
        with connect(url, max_size=None) as ws:
            ws.send(b"\x00" * (8 << 20))  # 8 MiB: the server stops at the frame header (RFC 6455 1009: too big)
            ws.recv(timeout=30)
    except ConnectionClosed as exc:  # 1009, or the TCP connection ended before the close frame reached us
        how = exc.rcvd.code if exc.rcvd is not None else "closed"
    except OSError:  # the server closed while the client was still sending the payload it refused to read
        how = "reset"
    assert how in (1009, "closed", "reset"), how
    with connect(url, max_size=None) as ws:  # just within the limit: parsed, refused by the frame parser, open
        ws.send(b"\x00" * limit)
        assert reply(ws.recv(timeout=30))[0]["status"] == 400
    assert guarded.peak_rss_bytes() - peak < 6 << 20, "an 8 MiB frame was buffered"


def test_silent_and_trickling_sockets_are_closed(guarded):
    silent = [raw(guarded) for _ in range(8)]
    trickle = raw(guarded, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        t0 = time.monotonic()
        for _ in range(10):  # a header byte every 0.3 s: no head is ever complete
            try:
                trickle.sendall(b"X")
            except OSError:
                break
            time.sleep(0.3)
        assert closed_by_server(trickle, 5) and time.monotonic() - t0 < 8
        assert all(closed_by_server(s, 5) for s in silent)  # --idle-timeout 1
    finally:
        for s in [*silent, trickle]:
            s.close()
    assert httpx.get(f"{guarded.url}/healthz").status_code == 200
    assert server_metric(guarded, "spade_rt_refused_total", reason="head_timeout") >= 9
    # keep-alive: a connection idle after its response is closed too
    with raw(guarded, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") as s:
        assert closed_by_server(s, 5)


def test_oversized_heads_are_refused_without_buffering_them(guarded):
    peak = guarded.peak_rss_bytes()
    s = raw(guarded, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: ")
    try:
        sent = 0
        try:
            for _ in range(64):  # up to 64 MiB of one header line; the server cuts it off long before
                s.sendall(b"a" * (1 << 20))
                sent += 1
        except OSError:
            pass
        assert closed_by_server(s, 10)
    finally:
        s.close()
    assert sent < 64, "the server read a 64 MiB header line"
    unfinished = [raw(guarded, b"GET / HTTP/1.1\r\nX-A: " + b"b" * (4 << 10)) for _ in range(4)]  # under 8K, open
    try:
        assert all(closed_by_server(u, 5) for u in unfinished)  # the head deadline
    finally:
        for u in unfinished:
            u.close()
    assert guarded.peak_rss_bytes() - peak < 16 << 20
    assert httpx.get(f"{guarded.url}/healthz").status_code == 200


def test_a_small_png_that_decodes_huge_is_refused_from_its_header(guarded):
    buf = io.BytesIO()
    Image.new("L", (4096, 4096), 3).save(buf, format="PNG", optimize=True)  # one colour: ~16 KB on the wire
    bomb = buf.getvalue()
    assert len(bomb) < 64 << 10
    peak = guarded.peak_rss_bytes()
    for params, status, words in (
        ({"resize": "true"}, 413, "4096x4096 (16777216 px) is larger than this server takes (40000 px"),
        ({}, 422, "4096x4096, but the model takes 128x128"),
    ):
        r = httpx.post(f"{guarded.url}/v1/synthesize", content=bomb, params=params,
                       headers={"Content-Type": "image/png"})  # fmt: skip
        assert r.status_code == status and words in r.json()["error"], r.text
    r = httpx.post(f"{guarded.url}/v1/labels", content=bomb, headers={"Content-Type": "image/png"})
    assert r.status_code == 413
    grown = guarded.peak_rss_bytes() - peak
    assert grown < 8 << 20, f"the server's peak memory grew by {grown / 2**20:.0f} MiB: the bomb was decoded"


def test_decodes_are_bounded(guarded, demo_synth):
    from concurrent.futures import ThreadPoolExecutor

    maps = [np.kron(landscape_labels(H // 2, W // 2, 80 + i), np.ones((3, 3), np.uint8)) for i in range(6)]  # 192 px

    def post(m):
        return httpx.post(f"{guarded.url}/v1/labels", content=png(m), headers={"Content-Type": "image/png"}, timeout=60)

    with ThreadPoolExecutor(len(maps)) as pool:
        responses = list(pool.map(post, maps))
    assert [r.status_code for r in responses] == [200] * len(maps)
    assert server_metric(guarded, "spade_rt_decodes_peak") == 1  # --max-decodes 1


def test_abandoned_requests_are_not_computed(guarded):
    before = server_metric(guarded, "spade_rt_pictures_total")
    body = png(landscape_labels(H, W, 9))
    head = (
        f"POST /v1/synthesize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    for _ in range(40):  # each client sends a whole request and leaves at once
        with raw(guarded, head + body):
            pass
    assert wait_until(
        lambda: (
            server_metric(guarded, "spade_rt_http_in_flight") <= 1
            and server_metric(guarded, "spade_rt_queue_depth") == 0
        ),
        60,
    )
    computed = server_metric(guarded, "spade_rt_pictures_total") - before
    assert computed <= 4, f"{computed:.0f} of 40 abandoned requests were computed"
    abandoned = server_metric(guarded, "spade_rt_abandoned_total", stage="before_compute") + server_metric(
        guarded, "spade_rt_abandoned_total", stage="body"
    )
    assert abandoned >= 36


def test_a_client_that_vanishes_mid_body_is_one_log_line(guarded):
    errors_before = server_metric(guarded, "spade_rt_http_errors_total", route="/v1/synthesize", status="500")
    head = (  # 50000 bytes promised, far fewer sent
        b"POST /v1/synthesize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 50000\r\n\r\n"
    )
    for _ in range(3):
        with raw(guarded, head + b"\x89PNG" + bytes(1000)):
            time.sleep(0.05)
    assert wait_until(lambda: server_metric(guarded, "spade_rt_abandoned_total", stage="body") >= 3, 10)
    assert server_metric(guarded, "spade_rt_http_errors_total", route="/v1/synthesize", status="500") == errors_before
    assert "Traceback" not in guarded.log and "closed the connection mid-body" in guarded.log
    # a body that pauses longer than --read-timeout gets 408
    with raw(guarded, head + b"\x89PNG") as s:
        s.settimeout(10)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


def test_nested_json_headers_and_errors_that_would_echo(guarded):
    with connect(f"ws://{guarded.host}:{guarded.port}/ws", max_size=None) as ws:
        nested = b"[" * 4000
        ws.send(struct.pack("<I", len(nested)) + nested)
        h, _ = reply(ws.recv(timeout=30))
        assert h["status"] == 400 and "nests too deeply" in h["error"]
        ws.send(frame(1, landscape_labels(H, W, 4)))  # the painter is still open
        assert "error" not in reply(ws.recv(timeout=60))[0]
    long_seed = "9" * 5000
    r = httpx.post(f"{guarded.url}/v1/synthesize", content=png(landscape_labels(H, W, 1)),
                   params={"seed": long_seed}, headers={"Content-Type": "image/png"})  # fmt: skip
    assert r.status_code == 400 and len(r.text) < 400 and "(5000 chars)" in r.json()["error"]
    r = httpx.post(f"{guarded.url}/v1/synthesize", files={"labels": ("l.png", b"GIF89a" + bytes(100), "image/gif")},
                   data={"format": "x" * 30000})  # fmt: skip
    assert r.status_code == 400 and len(r.text) < 400, r.text
    gif = b"GIF89a" + bytes(200)
    r = httpx.post(f"{guarded.url}/v1/synthesize", content=gif, headers={"Content-Type": "image/png"})
    assert r.status_code == 422 and "not a PNG" in r.json()["error"]
    for text in (r.text, guarded.log):
        assert " at 0x" not in text and "/tmp/" not in r.text
