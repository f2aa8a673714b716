"""Admission under bursts: N clients opening at the same moment against a limit L get min(N, L) in, the rest 503.

A classroom opens the painter together. Every client here is a real one on loopback (the websockets client,
http.client), each on its own thread, all released at once by a barrier; the ones let in hold their
connection until every client has its answer, so nothing that closes early frees a slot mid-burst and the
count in is exact. N = 2L and 4L for each limit: ``--max-connections`` (HTTP requests and painters, decided
when a connection opens: spade_rt/serve/server.py, ConnectionSlots) and ``--max-painters`` (the painter
route). Every wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from threading import BrokenBarrierError

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from spade_rt.bench.serve_load import ServeProcess
from spade_rt.procedural import landscape_labels

from serve_support import frame, metric, reply, server_metric, wait_until

H = W = 128  # the demo model
CONNECTIONS = 8  # --max-connections of the `connections` server (its painter limit is higher)
PAINTERS = 4  # --max-painters of the `painters` server (its connection limit is higher)
TIMEOUT = 60.0  # seconds, for every connect, read and barrier wait


@dataclass
class Answer:
    status: int  # 101 (a painter let in), 200 (a request let in) or the refusal's status
    body: dict | None = None  # a refusal's JSON body
    retry_after: str | None = None


@pytest.fixture(scope="module")
def connections(demo_graph):
    """--max-connections 8, painters up to 64 (the connection limit binds), 60 s before an idle socket closes
    (a burst on a busy 2-core machine must not lose a held connection to the idle timer)."""
    args = ("--max-connections", str(CONNECTIONS), "--max-painters", "64", "--idle-timeout", "60", "--no-warm-up")
    with ServeProcess(demo_graph, *args) as server:
        yield server


@pytest.fixture(scope="module")
def painters(demo_graph):
    """--max-painters 4 with room for 64 connections: the painter limit binds."""
    with ServeProcess(demo_graph, "--max-painters", str(PAINTERS), "--max-connections", "64", "--no-warm-up") as s:
        yield s


def burst(n: int, open_one) -> list[Answer]:
    """``n`` threads released together, each running ``open_one(hold)``; ``hold()`` waits until every thread
    has its answer (bounded), so the clients let in keep their connections through the whole burst."""
    start, answered = threading.Barrier(n), threading.Barrier(n)
    answers: list[Answer | BaseException] = [RuntimeError("no answer")] * n

    def hold() -> None:
        answered.wait(TIMEOUT)

    def client(k: int) -> None:
        start.wait(TIMEOUT)
        try:
            answers[k] = open_one(hold)
        except BaseException as exc:  # reported below with the others
            answers[k] = exc
            answered.abort()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * TIMEOUT)
    failed = sorted((a for a in answers if not isinstance(a, Answer)), key=lambda a: isinstance(a, BrokenBarrierError))
    assert not failed and not any(t.is_alive() for t in threads), failed[:3]
    return answers  # type: ignore[return-value]


def open_painter(server):
    def open_one(hold) -> Answer:
        url = f"ws://{server.host}:{server.port}/ws"
        try:
            ws = connect(url, open_timeout=TIMEOUT, max_size=None)
        except InvalidStatus as exc:
            hold()
            response = exc.response
            return Answer(response.status_code, json.loads(response.body), response.headers.get("Retry-After"))
        with ws:
            hold()  # every client has its answer: the painters let in paint once, then close
            ws.send(frame(1, landscape_labels(H, W, 5)))
            header, _ = reply(ws.recv(timeout=TIMEOUT))
            assert "error" not in header, header
        return Answer(101)

    return open_one


def open_request(server):
    def open_one(hold) -> Answer:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)  # keep-alive, as browsers
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            data = response.read()
            hold()
            body = json.loads(data) if response.status != 200 else None
            return Answer(response.status, body, response.getheader("Retry-After"))
        finally:
            conn.close()

    return open_one


def slots_held(server) -> float | None:
    """Connections holding a slot, this scrape's own included (None: the scrape was refused, every slot held)."""
    r = httpx.get(f"{server.url}/metrics", timeout=TIMEOUT)
    return metric(r.text, "spade_rt_connections") if r.status_code == 200 else None


def check_refusals(answers: list[Answer], let_in: int, limit: int, words: str) -> None:
    statuses = sorted(a.status for a in answers)
    assert statuses.count(let_in) == min(len(answers), limit), statuses
    refused = [a for a in answers if a.status != let_in]
    assert len(refused) == len(answers) - limit, statuses
    for a in refused:
        assert a.status == 503 and a.retry_after == "1", a
        assert words in a.body["error"] and a.body["status"] == 503, a


@pytest.mark.parametrize("n", [2 * CONNECTIONS, 4 * CONNECTIONS])
def test_a_burst_of_requests_gets_the_connection_limit_in(connections, n):
    refused_before = server_metric(connections, "spade_rt_refused_total", reason="connections")
    answers = burst(n, open_request(connections))
    check_refusals(answers, 200, CONNECTIONS, f"--max-connections {CONNECTIONS}")
    assert wait_until(lambda: slots_held(connections) == 1, 30)  # slots came back
    refused = server_metric(connections, "spade_rt_refused_total", reason="connections") - refused_before
    assert refused == n - CONNECTIONS


@pytest.mark.parametrize("n", [2 * CONNECTIONS, 4 * CONNECTIONS])
def test_a_burst_of_painters_gets_the_connection_limit_in(connections, n):
    answers = burst(n, open_painter(connections))
    check_refusals(answers, 101, CONNECTIONS, f"--max-connections {CONNECTIONS}")
    assert wait_until(lambda: slots_held(connections) == 1, 30)  # the scrape's own
    again = burst(CONNECTIONS, open_painter(connections))  # the painters' slots came back when they closed
    assert [a.status for a in again] == [101] * CONNECTIONS


@pytest.mark.parametrize("n", [2 * PAINTERS, 4 * PAINTERS])
def test_a_burst_of_painters_gets_the_painter_limit_in(painters, n):
    answers = burst(n, open_painter(painters))
    check_refusals(answers, 101, PAINTERS, f"--max-painters {PAINTERS}")
    assert wait_until(lambda: server_metric(painters, "spade_rt_ws_connections") == 0, 30)
    again = burst(PAINTERS, open_painter(painters))  # every slot came back
    assert [a.status for a in again] == [101] * PAINTERS
