"""`spade-rt serve`: real server processes on loopback, real HTTP and WebSocket clients, real models.

Every picture the server returns is compared with ``Synthesizer`` output for the same map, exactly.
"""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from websockets.sync.client import connect

from spade_rt.bench.serve_load import ServeProcess, landscape_bodies, run_load
from spade_rt.palettes import colorize, palette
from spade_rt.procedural import LANDSCAPE_NAMES, landscape_labels
from spade_rt.runtime.registry import AUTO_ONNX_CPU
from spade_rt.runtime.synthesizer import Synthesizer

from conftest import run_cli
from reference_spade import blobby_labels
from serve_support import decode, frame, metric, png, reply, tiny_graph

H = W = 128  # the demo model


@pytest.fixture(scope="module")
def api(demo_graph):
    """The demo graph, batches of up to 2, small limits: 64 KiB bodies, 200x200-pixel maps, 12 connections."""
    args = ("--max-batch", "2", "--max-body", "64K", "--max-map-pixels", str(200 * 200), "--max-connections", "12")
    with ServeProcess(demo_graph, *args) as server:
        yield server


@pytest.fixture(scope="module")
def batching(demo_graph):
    """Batches of up to 4, a lone request waits up to 2 s for companions (the shutdown test stops it)."""
    with ServeProcess(demo_graph, "--max-batch", "4", "--max-delay-ms", "2000") as server:
        yield server


@pytest.fixture(scope="module")
def coco_vae(tmp_path_factory) -> Path:
    """A tiny COCO-Stuff VAE graph: 183 ids with dontcare, instance edges, a style vector z."""
    return tiny_graph(tmp_path_factory.mktemp("coco_vae"), "coco", use_vae=True)


def post(server, body: bytes, content_type: str = "image/png", **params) -> httpx.Response:
    headers = {"Content-Type": content_type}
    return httpx.post(f"{server.url}/v1/synthesize", content=body, headers=headers, params=params, timeout=120)


def test_endpoints_describe_the_model_and_the_server(api):
    assert httpx.get(f"{api.url}/healthz").json()["status"] == "ok"
    info = httpx.get(f"{api.url}/v1/model").json()
    assert info["preset"] == "landscape" and (info["height"], info["width"]) == (H, W)
    backend = AUTO_ONNX_CPU["dedup"][0]  # `auto` for the demo's dedup fp32 graph on a CPU (registry; both installed)
    assert info["kind"] == "onnx" and info["backend"] == backend and info["batching"]["max_batch"] == 2
    assert [c["name"] for c in info["classes"]] == list(LANDSCAPE_NAMES)  # names and colours from the preset
    assert [c["colour"] for c in info["classes"]] == [
        "#{:02x}{:02x}{:02x}".format(*rgb) for rgb in palette("landscape")
    ]
    assert info["use_vae"] is False and info["uses_instance"] is False and info["examples"] is True
    assert info["seed"] == {"min": 0, "max": 2**32 - 1}  # the painter reads the seed range here
    page = httpx.get(f"{api.url}/")
    assert page.status_code == 200 and "/static/painter.js" in page.text
    js = httpx.get(f"{api.url}/static/painter.js")
    assert js.status_code == 200 and "new WebSocket" in js.text
    example = httpx.get(f"{api.url}/v1/example", params={"seed": 3})
    np.testing.assert_array_equal(decode(example.content), landscape_labels(H, W, 3))
    # an ONNX graph is served torch-free: the server process never mapped libtorch
    maps = Path(f"/proc/{api.pid}/maps").read_text()
    assert ("libopenvino" if backend == "openvino" else "onnxruntime") in maps and "libtorch" not in maps
    text = httpx.get(f"{api.url}/metrics").text
    for name in ("http_requests_total", "http_errors_total", "http_request_seconds", "batch_size", "queue_depth"):
        assert f"# TYPE spade_rt_{name} " in text
    assert metric(text, "spade_rt_http_requests_total", route="/v1/model", status="200") >= 1


def test_synthesize_gives_the_synthesizers_pictures(api, demo_synth):
    maps = [landscape_labels(H, W, seed) for seed in (11, 12)]
    for ids in maps:  # a PNG of ids as the body
        r = post(api, png(ids))
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        np.testing.assert_array_equal(decode(r.content), demo_synth(ids))
        assert int(r.headers["x-spade-rt-batch"]) >= 1 and float(r.headers["x-spade-rt-compute-ms"]) > 0
    # multipart, the map colour-coded with the preset's palette
    files = {"labels": ("scene.png", png(colorize(maps[0], "landscape")), "image/png")}
    r = httpx.post(f"{api.url}/v1/synthesize", files=files, data={"format": "png"}, timeout=120)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(decode(r.content), demo_synth(maps[0]))
    # another size, resized with NEAREST when asked (as `spade-rt synthesize` and Synthesizer do)
    other = landscape_labels(160, 176, 13)
    r = post(api, png(other), resize="true")
    np.testing.assert_array_equal(decode(r.content), demo_synth(other, resize=True))
    # JPEG on request
    r = post(api, png(maps[0]), format="jpeg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    jpeg = decode(r.content).astype(int)
    assert jpeg.shape == (H, W, 3) and np.abs(jpeg - demo_synth(maps[0])).mean() < 8
    # the labels endpoint (the painter's "load"): the model's ids, exactly
    big = np.kron(maps[1][:96, :96], np.ones((2, 2), np.uint8))  # 192x192 -> NEAREST 128x128
    r = httpx.post(f"{api.url}/v1/labels", content=png(big), headers={"Content-Type": "image/png"})
    assert r.headers["x-height"] == str(H) and r.headers["x-width"] == str(W)
    want = np.asarray(Image.fromarray(big).resize((W, H), Image.NEAREST))
    np.testing.assert_array_equal(np.frombuffer(r.content, np.uint8).reshape(H, W), want)


def test_instance_map_seed_and_dontcare(coco_vae):
    ids = blobby_labels(1, 64, 64, 182, seed=3)[0].astype(np.uint8)
    ids[:6, :6] = 255  # stored "unlabeled": the dontcare id 182
    inst = blobby_labels(1, 64, 64, 5, seed=4, cell=20)[0].astype(np.uint8)
    with ServeProcess(coco_vae) as server, Synthesizer(coco_vae) as synth:
        info = httpx.get(f"{server.url}/v1/model").json()
        assert info["use_vae"] and info["uses_instance"] and info["dontcare_id"] == 182 and info["num_ids"] == 183
        assert info["classes"][156]["name"] == "sky-other" and info["classes"][182]["name"] == "unlabeled (dontcare)"
        pictures = {}
        for seed in (0, 7):
            files = {"labels": ("l.png", png(ids), "image/png"), "instance": ("i.png", png(inst), "image/png")}
            r = httpx.post(f"{server.url}/v1/synthesize", files=files, data={"seed": str(seed)}, timeout=120)
            assert r.status_code == 200, r.text
            pictures[seed] = decode(r.content)
            np.testing.assert_array_equal(pictures[seed], synth(ids, inst, seed=seed))
        assert not np.array_equal(pictures[0], pictures[7])  # the seed draws the style
        r = post(server, png(ids), seed=7)  # no instance map: the label map's own boundaries, as Synthesizer
        np.testing.assert_array_equal(decode(r.content), synth(ids, seed=7))
        with connect(f"ws://{server.host}:{server.port}/ws", max_size=None) as ws:  # the painter's seed
            model_ids = np.where(ids == 255, 182, ids).astype(np.uint8)
            ws.send(frame(1, model_ids, seed=7))
            h, picture = reply(ws.recv(timeout=60))
            assert h["frame"] == 1 and "error" not in h, h
            np.testing.assert_array_equal(decode(picture), synth(model_ids, seed=7))


def test_bad_input_gets_4xx_json_naming_the_problem_and_the_server_keeps_serving(api, demo_synth):
    ok = landscape_labels(H, W, 1)
    unknown = ok.copy()
    unknown[:2, :5] = 12
    colours = colorize(ok, "landscape")
    colours[0, 0] = (1, 2, 3)

    def multipart(**files):
        return {k: (f"{k}.png", v, "image/png") for k, v in files.items()}

    cases = [  # (what, request, status, words of the message, field)
        ("wrong size", dict(body=png(ok[:100, :80])), 422, "100x80, but the model takes 128x128", "labels"),
        ("unknown ids", dict(body=png(unknown)), 422, "12 (10 px)", "labels"),
        ("unknown colours", dict(body=png(colours)), 422, "rgb(1, 2, 3) (1 px)", "labels"),
        ("truncated PNG", dict(body=png(ok)[:300]), 422, "cannot read label map 'labels'", "labels"),
        ("not an image", dict(body=b"these bytes are no picture"), 422, "not a PNG", "labels"),
        ("empty body", dict(body=b""), 400, "empty", "labels"),
        ("wrong content type", dict(body=b'{"labels": 1}', ctype="application/json"), 415, "application/json", None),
        ("bad seed", dict(body=png(ok), params={"seed": "abc"}), 400, "seed 'abc'", "seed"),
        ("negative seed", dict(body=png(ok), params={"seed": "-1"}), 400, "seed -1: expected a whole number", "seed"),
        ("seed, no style input", dict(body=png(ok), params={"seed": "5"}), 400, "it takes no seed", "seed"),
        ("bad format", dict(body=png(ok), params={"format": "gif"}), 400, "format 'gif'", "format"),
        ("unknown parameter", dict(body=png(ok), params={"sead": "1"}), 400, "unknown parameter(s) sead", None),
        ("bad resize flag", dict(body=png(ok), params={"resize": "maybe"}), 400, "resize 'maybe'", "resize"),
        (
            "instance map, no edge channel",
            dict(files=multipart(labels=png(ok), instance=png(ok))),
            422,
            "no instance",
            None,
        ),
        ("form without labels", dict(files=multipart(label=png(ok))), 400, "unexpected file field 'label'", "label"),
        ("labels as text", dict(data={"labels": "sky"}, files=multipart(x=b"")), 400, "must be a file part", "labels"),
    ]
    for what, req, status, words, field in cases:
        if "body" in req:
            r = post(api, req["body"], req.get("ctype", "image/png"), **req.get("params", {}))
        else:
            r = httpx.post(f"{api.url}/v1/synthesize", files=req.get("files"), data=req.get("data"), timeout=60)
        assert r.status_code == status, (what, r.status_code, r.text)
        body = r.json()
        assert body["status"] == status and body["error"], what
        assert words is None or words in body["error"], (what, body["error"])
        assert field is None or body.get("field") == field, (what, body)
        assert "\n" not in body["error"] and "/tmp" not in body["error"], (what, body["error"])
    # routes and methods answer in JSON too
    assert httpx.get(f"{api.url}/v1/nothing").json()["status"] == 404
    assert "GET is not allowed" in httpx.get(f"{api.url}/v1/synthesize").json()["error"]
    # still serving, and still right
    assert httpx.get(f"{api.url}/healthz").json()["status"] == "ok"
    r = post(api, png(ok))
    np.testing.assert_array_equal(decode(r.content), demo_synth(ok))
    text = httpx.get(f"{api.url}/metrics").text
    assert metric(text, "spade_rt_http_errors_total", route="/v1/synthesize", status="422") >= 6


def test_a_seed_for_a_model_without_a_style_input_is_refused_as_the_cli_refuses_it(api, demo_graph, tmp_path):
    """A newcomer's case: `POST /v1/synthesize?seed=5` on a model without z was answered 200 (the seed ignored)
    while `spade-rt synthesize --seed 5` is refused. Now both refuse, in the same words."""
    ok = landscape_labels(H, W, 3)
    (tmp_path / "l.png").write_bytes(png(ok))
    cli = run_cli("synthesize", demo_graph, "--labels", tmp_path / "l.png", "-o", tmp_path / "o.png", "--seed", "5",
                  check=False)  # fmt: skip
    assert cli.returncode != 0 and not (tmp_path / "o.png").exists()
    cli_words = cli.stderr.strip().splitlines()[-1].split(f"{demo_graph.name} ", 1)[1]  # after the model's name
    model = httpx.get(f"{api.url}/v1/model").json()["model"]
    form = {"labels": ("l.png", png(ok), "image/png")}
    for r in (
        post(api, png(ok), seed="5"),
        httpx.post(f"{api.url}/v1/synthesize", files=form, data={"seed": "0"}, timeout=60),  # a form, seed 0
    ):
        assert r.status_code == 400 and r.json()["field"] == "seed", r.text
        assert r.json()["error"] == f"{model} " + cli_words.replace("--seed", "seed"), (r.json(), cli_words)
    assert post(api, png(ok)).status_code == 200  # without a seed: served


def test_limits_body_map_size_and_connections(api, demo_synth):
    ok = landscape_labels(H, W, 2)
    r = post(api, b"\x89PNG" + bytes(100_000))  # a huge body, Content-Length says so
    assert r.status_code == 413 and "at most 65536" in r.json()["error"] and r.json()["field"] == "body"

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield bytes(8192)

    r = httpx.post(f"{api.url}/v1/synthesize", content=chunks(), headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and "65536" in r.json()["error"]
    big = np.kron(ok, np.ones((2, 2), np.uint8))  # 256x256 = 65536 px > 40000: refused from the header
    r = post(api, png(big), resize="true")
    assert (
        r.status_code == 413 and "256x256 (65536 px)" in r.json()["error"] and "--max-map-pixels" in r.json()["error"]
    )
    # connections: 12 idle ones take every slot, the next request is refused; afterwards all is well
    idle = [socket.create_connection((api.host, api.port)) for _ in range(12)]
    try:
        statuses = []
        for _ in range(50):  # bounded: until the server has accepted the idle ones
            statuses.append(httpx.get(f"{api.url}/healthz").status_code)
            if statuses[-1] == 503:
                break
            time.sleep(0.05)
        assert statuses[-1] == 503, statuses
    finally:
        for s in idle:
            s.close()
    for _ in range(50):
        if httpx.get(f"{api.url}/healthz").status_code == 200:
            break
        time.sleep(0.05)
    r = post(api, png(ok))
    assert r.status_code == 200
    np.testing.assert_array_equal(decode(r.content), demo_synth(ok))


def test_concurrent_requests_are_batched_and_get_the_single_call_pictures(batching, demo_synth):
    maps = [landscape_labels(H, W, 20 + i) for i in range(8)]
    expected = [demo_synth(m) for m in maps]  # one call per map
    with ThreadPoolExecutor(len(maps)) as pool:
        responses = list(pool.map(lambda m: post(batching, png(m)), maps))
    text = httpx.get(f"{batching.url}/metrics").text
    for r, want in zip(responses, expected):
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(decode(r.content), want)
    batches = [int(r.headers["x-spade-rt-batch"]) for r in responses]
    assert max(batches) > 1 and max(batches) <= 4, batches
    calls = metric(text, "spade_rt_batch_size_count")
    assert metric(text, "spade_rt_pictures_total") == 8 and calls < 8
    assert metric(text, "spade_rt_batch_size_sum") == 8


def test_painter_socket_latest_wins(api, demo_synth):
    maps = [landscape_labels(H, W, 40 + i) for i in range(12)]
    with connect(f"ws://{api.host}:{api.port}/ws", max_size=None) as ws:
        for i, m in enumerate(maps, 1):  # all at once: newer frames replace waiting ones
            ws.send(frame(i, m))
        answered = []
        while not answered or answered[-1][0]["frame"] != len(maps):
            answered.append(reply(ws.recv(timeout=120)))
    frames = [h["frame"] for h, _ in answered]
    assert frames == sorted(frames) and frames[-1] == len(maps)  # in order, the newest always answered
    assert len(frames) + sum(h["replaced"] for h, _ in answered) == len(maps)  # the rest replaced, none queued
    for h, picture in answered:
        assert h["batch"] >= 1 and h["server_ms"] > 0
        np.testing.assert_array_equal(decode(picture), demo_synth(maps[h["frame"] - 1]))
    # bad frames get an error reply naming the problem; the socket keeps working
    with connect(f"ws://{api.host}:{api.port}/ws", max_size=None) as ws:
        bad = maps[0].copy()
        bad[0, 0] = 77
        for message, status, words in (
            (b"\x01\x00", 400, "frame of 2 bytes"),
            (frame(1, bad), 422, "77 (1 px)"),
            (frame(2, maps[0][:64]), 422, "64x128, but the model takes 128x128"),
            (frame(3, maps[0])[:-5], 400, "needs 16384 bytes of ids, got 16379"),
        ):
            ws.send(message)
            h, payload = reply(ws.recv(timeout=60))
            assert h["status"] == status and words in h["error"] and payload == b"", h
        ws.send("a text frame")
        assert reply(ws.recv(timeout=60))[0]["status"] == 400
        ws.send(frame(4, maps[0]))
        h, picture = reply(ws.recv(timeout=60))
        assert h["frame"] == 4 and "error" not in h
        np.testing.assert_array_equal(decode(picture), demo_synth(maps[0]))


def test_a_painter_that_never_reads_does_not_hold_up_another(api, demo_synth):
    maps = [landscape_labels(H, W, 60 + i) for i in range(5)]
    url = f"ws://{api.host}:{api.port}/ws"
    with connect(url, max_size=None, max_queue=1, close_timeout=0.5) as slow:
        for i in range(1, 21):  # never reads a reply
            slow.send(frame(i, maps[i % len(maps)]))
        with connect(url, max_size=None) as fast:
            for i, m in enumerate(maps[:3], 1):
                fast.send(frame(i, m))
                h, picture = reply(fast.recv(timeout=120))
                assert h["frame"] == i
                np.testing.assert_array_equal(decode(picture), demo_synth(m))


def test_load_gives_no_errors_and_flat_memory(api):
    """8 clients x 2 requests, four rounds. The server warmed its backend up at start (one picture, two of the
    largest batch: ONNX Runtime grows its arena on those, then reuses it), so its memory stays flat: a
    per-request leak (maps, pictures, queued jobs) would grow it round after round."""
    bodies = landscape_bodies(H, W, 8)
    results = [run_load(api.host, api.port, bodies, clients=8, requests_per_client=2)]
    rss_before = api.rss_bytes()
    results += [run_load(api.host, api.port, bodies, clients=8, requests_per_client=2) for _ in range(3)]
    growth = api.rss_bytes() - rss_before
    for r in results:
        assert r.errors == 0 and r.statuses == {200: r.requests} and r.requests == 16, r
    assert growth < 32 << 20, f"the server's memory grew by {growth / 2**20:.1f} MiB over 48 requests"
    assert max(r.mean_batch for r in results) > 1  # 8 concurrent clients: batches formed


def test_sigterm_finishes_the_requests_in_flight(batching, demo_synth):
    maps = [landscape_labels(H, W, 70 + i) for i in range(3)]
    server = batching
    pictures_before = metric(httpx.get(f"{server.url}/metrics").text, "spade_rt_pictures_total")
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(post, server, png(m)) for m in maps]
            for _ in range(200):  # bounded: until all three wait in the batcher for a fourth
                if metric(httpx.get(f"{server.url}/metrics").text, "spade_rt_queue_depth") == 3:
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the three requests never reached the batcher")
            status = server.stop(signal.SIGTERM)
            responses = [f.result() for f in futures]
    finally:
        server.stop(signal.SIGKILL)
    assert status == 0, server.log
    for r, m in zip(responses, maps):
        assert r.status_code == 200
        np.testing.assert_array_equal(decode(r.content), demo_synth(m))
    assert "SIGTERM: shutting down; finishing 3 picture(s) accepted" in server.log
    assert f"stopped: {int(pictures_before) + 3} picture(s) served" in server.log


def test_cli_help_and_one_line_errors(tmp_path):
    help_text = run_cli("serve", "--help").stdout
    assert "curl" in help_text and "--max-delay-ms" in help_text and "127.0.0.1" in help_text
    proc = run_cli("serve", "--max-batch", "0", check=False)
    assert proc.returncode == 1 and proc.stderr.strip().endswith("--max-batch 0: expected 1 or more")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("serve", tmp_path / "missing.onnx", "--port", port, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], proc.stderr
    proc = run_cli("serve", tmp_path / "missing.onnx", "--port", "0", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "missing.onnx" in lines[0], proc.stderr


def test_every_label_set_names_each_of_its_colours():
    from spade_rt.class_names import CLASS_NAMES, COCO_STUFF_NAMES
    from spade_rt.palettes import PALETTES
    from spade_rt.presets import PRESETS
    from spade_rt.procedural import LANDSCAPE_CLASSES

    assert set(CLASS_NAMES) == set(PALETTES)
    for key, names in CLASS_NAMES.items():
        assert len(names) == len(palette(key)) and all(names), key
    for preset in PRESETS.values():  # one name per id the model takes
        assert len(preset.class_names()) == preset.label_nc + preset.contain_dontcare_label
    # the landscape classes were chosen from COCO-Stuff: their ids there carry the same names
    assert [COCO_STUFF_NAMES[i] for i in LANDSCAPE_CLASSES.values()] == [
        "sky-other" if n == "sky" else n for n in LANDSCAPE_CLASSES
    ]
    assert CLASS_NAMES["ade20k"][3] == "sky" and CLASS_NAMES["cityscapes"][26] == "car"


def test_the_demo_server_is_lean_and_torch_free_from_a_fresh_cache(tmp_path, demo_synth):
    """`spade-rt serve` with no model on a fresh machine: the fastest exact graph for a CPU is served (dedup, the
    graph that ships in the package: nothing is exported, the cache stays empty), the server never maps torch,
    and the resident memory after warm-up stays within the documented bound (600 MB; docs/serving.md)."""
    import os

    env = {**os.environ, "SPADE_RT_CACHE": str(tmp_path / "cache")}
    with ServeProcess(env=env) as server:
        rss = server.rss_bytes()
        info = httpx.get(f"{server.url}/v1/model").json()
        assert info["graph"] == "dedup" and info["backend"] == "onnxruntime", info
        maps = Path(f"/proc/{server.pid}/maps").read_text()
        assert "onnxruntime" in maps and "libtorch" not in maps
        ok = landscape_labels(H, W, 33)
        r = post(server, png(ok))
        np.testing.assert_array_equal(decode(r.content), demo_synth(ok))  # the dedup graph is exact
        assert "exporting" not in server.log
    assert not (tmp_path / "cache").exists()
    assert rss < 600 << 20, f"{rss / 2**20:.0f} MB resident after warm-up"
