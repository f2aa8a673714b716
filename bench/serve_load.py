"""Load on `spade-rt serve`, on loopback only: N concurrent clients, a fixed number of requests each.

    python -m spade_rt.bench.serve_load                     # the demo model, batching on and off
    python -m spade_rt.bench.serve_load coco.onnx --clients 16 --requests 8

Each client thread keeps one HTTP/1.1 connection and posts label PNGs to ``/v1/synthesize`` one after the
other; latencies are per request (send to last byte), throughput is pictures over the wall time of the
whole run. Bounded in count (clients x requests) and time (a per-request timeout); the server runs in a
child process (``ServeProcess``) that is stopped with SIGTERM at the end. Standard library only on the
client side, so the numbers measure the server, not a client framework.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from spade_rt.bench.harness import peak_rss_bytes, rss_bytes

URL_LINE = re.compile(r"painter: (http://\S+?)/ ")


class ServeProcess:
    """`spade-rt serve ARGS --port 0` in a child process; ``url`` once it listens; ``stop`` sends SIGTERM."""

    def __init__(self, *args: str, timeout: float = 180.0, env: dict | None = None) -> None:
        cmd = [sys.executable, "-m", "spade_rt.cli", "serve", *map(str, args), "--port", "0"]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        self.lines: list[str] = []
        self._found: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.url = self._found.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            raise RuntimeError(f"spade-rt serve did not start in {timeout:.0f} s:\n{self.log}") from None
        if self.url is None:
            raise RuntimeError(f"spade-rt serve exited with {self.proc.wait()}:\n{self.log}")
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = URL_LINE.search(line)
            if m:
                self._found.put(m.group(1))
        self._found.put(None)  # the process closed stderr: it ended

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def rss_bytes(self) -> int:
        """Resident memory of the server process now (spade_rt.bench.harness.rss_bytes)."""
        return rss_bytes(self.pid)

    def peak_rss_bytes(self) -> int:
        """The server process's peak resident memory since it started (VmHWM): catches transient allocations."""
        return peak_rss_bytes(self.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit status (killed after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class LoadResult:
    clients: int
    requests: int
    errors: int
    wall_s: float
    images_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_batch: float
    statuses: dict


def png_bytes(ids: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(ids).save(buf, format="PNG")
    return buf.getvalue()


def run_load(
    host: str, port: int, bodies: list[bytes], clients: int, requests_per_client: int, timeout: float = 120.0
) -> LoadResult:
    """``clients`` threads, each posting ``requests_per_client`` label PNGs (cycling through ``bodies``)."""
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise ValueError(f"load goes to loopback servers only, not {host}")
    latencies: list[float] = []
    batches: list[int] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        start.wait()
        for i in range(requests_per_client):
            body = bodies[(k * requests_per_client + i) % len(bodies)]
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/synthesize", body, {"Content-Type": "image/png"})
                resp = conn.getresponse()
                resp.read()
                status, batch = resp.status, int(resp.getheader("X-Spade-Rt-Batch") or 0)
            except (OSError, http.client.HTTPException):
                status, batch = 0, 0
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            ms = (time.perf_counter() - t0) * 1e3
            with lock:
                latencies.append(ms)
                statuses[status] = statuses.get(status, 0) + 1
                if batch:
                    batches.append(batch)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = statuses.get(200, 0)
    lat = np.array(latencies)
    return LoadResult(
        clients=clients,
        requests=len(latencies),
        errors=len(latencies) - ok,
        wall_s=round(wall, 3),
        images_per_s=round(ok / wall, 2),
        p50_ms=round(float(np.percentile(lat, 50)), 1),
        p90_ms=round(float(np.percentile(lat, 90)), 1),
        p99_ms=round(float(np.percentile(lat, 99)), 1),
        mean_batch=round(float(np.mean(batches)), 2) if batches else 0.0,
        statuses=statuses,
    )


def landscape_bodies(height: int, width: int, count: int = 16) -> list[bytes]:
    from spade_rt.procedural import landscape_labels

    return [png_bytes(landscape_labels(height, width, seed)) for seed in range(count)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spade_rt.bench.serve_load", description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", help="graph or engine to serve (default: the embedded demo model)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--requests", type=int, default=8, help="requests per client (default 8)")
    p.add_argument("--max-batch", type=int, default=8, help="the batching server's --max-batch (default 8)")
    p.add_argument("--max-delay-ms", type=float, default=2.0, help="the batching server's --max-delay-ms (default 2)")
    args = p.parse_args(argv)
    model = [args.model] if args.model else []
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(
        "| server | 1 client p50 ms | clients x requests | p50 ms | p90 ms | p99 ms | images/s | mean batch | errors "
        "| RSS after warm-up MB | RSS after load MB | peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, flags in (
        ("no batching (--max-batch 1)", ["--max-batch", "1"]),
        (
            f"batching (--max-batch {args.max_batch}, --max-delay-ms {args.max_delay_ms:g})",
            ["--max-batch", str(args.max_batch), "--max-delay-ms", str(args.max_delay_ms)],
        ),
    ):
        with ServeProcess(*model, *flags) as server:
            import json
            import urllib.request

            with urllib.request.urlopen(f"{server.url}/v1/model") as r:
                info = json.load(r)
            bodies = landscape_bodies(info["height"], info["width"]) if info["num_ids"] == 10 else None
            if bodies is None:
                rng = np.random.default_rng(0)
                bodies = [
                    png_bytes(rng.integers(0, info["num_ids"], (info["height"], info["width"])).astype(np.uint8))
                    for _ in range(16)
                ]
            warm_rss = server.rss_bytes()  # the server warmed its backend up before listening
            single = run_load(server.host, server.port, bodies, 1, 16)  # one client: latency without a queue
            run_load(server.host, server.port, bodies, args.clients, 2)  # warm-up of the connections
            r = run_load(server.host, server.port, bodies, args.clients, args.requests)
            rss, peak = server.rss_bytes(), server.peak_rss_bytes()
        mb = 1 << 20
        print(
            f"| {label} | {single.p50_ms:.0f} | {r.clients} x {args.requests} | {r.p50_ms:.0f} | {r.p90_ms:.0f} | "
            f"{r.p99_ms:.0f} | {r.images_per_s:.1f} | {r.mean_batch:.2f} | {r.errors} | {warm_rss / mb:.0f} | "
            f"{rss / mb:.0f} | {peak / mb:.0f} |"
        )
        print(f"<!-- {asdict(r)} cpus={os.cpu_count()} -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
