"""A refused painter retries and says so (issue 23, bursts): `spade-rt serve --max-painters 1` on loopback, a
first painter (a WebSocket client) holds the one slot, and the painter page in a real Chromium is refused.
The page must say "server busy, retrying in N s", ask again no sooner than the server's Retry-After (the
handshake's 503 is hidden from pages, so the painter reads it from GET /ws), keep retrying while the slot is
taken, and go live and show the model's picture once the slot is free.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from test_painter import CHROMIUM, CHROMIUM_ARGS, require_browser
from websockets.sync.client import connect

from spade_rt.bench.serve_load import ServeProcess
from spade_rt.runtime.synthesizer import Synthesizer

from serve_support import demo_graph_path

# every WebSocket the page opens, in the page's own clock
COUNT_SOCKETS = """(() => {
  const Real = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = function (...args) { window.__sockets.push(performance.now()); return new Real(...args); };
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket.prototype = Real.prototype;
})();"""


@pytest.fixture(scope="module")
def one_slot():
    require_browser()
    with ServeProcess("--max-painters", "1") as server:
        yield server


def test_a_refused_painter_waits_as_retry_after_asks_says_so_and_gets_in_once_the_slot_is_free(one_slot):
    from playwright.sync_api import sync_playwright

    ws_url = one_slot.url.replace("http://", "ws://").rstrip("/") + "/ws"
    with Synthesizer(demo_graph_path()) as synth, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.add_init_script(COUNT_SOCKETS)
            with connect(ws_url, open_timeout=30):  # the first painter: holds the only slot
                probe = httpx.get(one_slot.url.rstrip("/") + "/ws", timeout=30)
                assert probe.status_code == 503 and probe.headers["retry-after"] == "1", (probe.status_code, probe.text)
                retry_after_ms = 1000 * int(probe.headers["retry-after"])
                page.goto(one_slot.url)
                page.wait_for_function(
                    "/^server busy, retrying in \\d+ s$/.test(document.getElementById('connection').textContent)",
                    timeout=60_000,
                )
                assert "painters are open already (--max-painters 1)" in page.get_attribute("#connection", "title")
                page.wait_for_function("window.__sockets.length >= 3", timeout=60_000)  # it keeps trying
                gaps = np.diff(page.evaluate("window.__sockets"))
                # never sooner than Retry-After (the handshake, the GET /ws, then the wait: more, never less)
                assert (gaps >= retry_after_ms).all(), gaps
                assert page.evaluate("window.painter.state.lastSent") == -1  # nothing was sent while refused
            # the slot is free: the page gets in, goes live and shows the model's picture for its map
            page.wait_for_function("document.getElementById('connection').textContent === 'live'", timeout=60_000)
            page.wait_for_function("window.painter.state.lastSent > 0 && window.painter.idle()", timeout=120_000)
            shown = page.evaluate(
                "(() => { const c = document.getElementById('picture'), g = c.getContext('2d');"
                " return Array.from(g.getImageData(0, 0, c.width, c.height).data); })()"
            )
            ids = np.array(page.evaluate("Array.from(window.spadeRt.last.ids)"), np.uint8)
            h, w = synth.spec.labels.height, synth.spec.labels.width
            rgba = np.array(shown, np.uint8).reshape(h, w, 4)
            np.testing.assert_array_equal(rgba[..., :3], synth(ids.reshape(h, w)))  # the model's picture
        finally:
            browser.close()
