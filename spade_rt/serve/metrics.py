"""Prometheus text exposition (format 0.0.4) without a client library: counters, gauges, histograms.

Every update happens on the server's event loop or under the registry's lock, so a scrape sees a
consistent set. Label values are bounded by the callers (route names, status codes), never user text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class _Metric:
    kind = "untyped"

    def __init__(self, registry: Registry, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._lock = registry.lock
        registry.metrics.append(self)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, registry: Registry, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(registry, name, help_text, labels)
        self.values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        with self._lock:
            self.values[label_values] = self.values.get(label_values, 0.0) + amount

    def get(self, *label_values: str) -> float:
        return self.values.get(label_values, 0.0)

    def lines(self) -> list[str]:
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in sorted(self.values.items())
        ]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, *label_values: str) -> None:
        with self._lock:
            self.values[label_values] = value


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, registry: Registry, name: str, help_text: str, buckets: Iterable[float], labels: Sequence[str] = ()
    ) -> None:
        super().__init__(registry, name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self.series: dict[tuple[str, ...], list[float]] = {}  # counts per bucket, then +Inf, sum

    def observe(self, value: float, *label_values: str) -> None:
        with self._lock:
            s = self.series.setdefault(label_values, [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    s[i] += 1
            s[-2] += 1
            s[-1] += value

    def count(self, *label_values: str) -> int:
        s = self.series.get(label_values)
        return int(s[-2]) if s else 0

    def lines(self) -> list[str]:
        out = self.header()
        for key, s in sorted(self.series.items()):
            for bound, n in zip(self.buckets, s):
                le = 'le="' + _num(bound) + '"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {_num(n)}")
            inf = 'le="+Inf"'
            out.append(f"{self.name}_bucket{_labels(self.label_names, key, inf)} {_num(s[-2])}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {s[-1]!r}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {_num(s[-2])}")
        return out


class Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.metrics: list[_Metric] = []

    def exposition(self) -> str:
        with self.lock:
            return "\n".join(line for m in self.metrics for line in m.lines()) + "\n"


class ServerMetrics:
    """The metrics `spade-rt serve` exports at ``/metrics`` (names prefixed ``spade_rt_``)."""

    def __init__(self, max_batch: int) -> None:
        self.registry = r = Registry()
        self.requests = Counter(
            r, "spade_rt_http_requests_total", "HTTP requests by route and status", ("route", "status")
        )
        self.errors = Counter(r, "spade_rt_http_errors_total", "HTTP responses with status >= 400", ("route", "status"))
        self.latency = Histogram(
            r, "spade_rt_http_request_seconds", "HTTP request latency, arrival to response", LATENCY_BUCKETS, ("route",)
        )
        self.batch_size = Histogram(
            r,
            "spade_rt_batch_size",
            "pictures per backend call",
            [b for b in (1, 2, 4, 8, 16, 32, 64) if b < max_batch] + [max_batch],
        )
        self.inference = Histogram(r, "spade_rt_inference_seconds", "backend call time per batch", LATENCY_BUCKETS)
        self.queue_wait = Histogram(r, "spade_rt_queue_seconds", "time a picture waited for its batch", LATENCY_BUCKETS)
        self.pictures = Counter(r, "spade_rt_pictures_total", "pictures synthesized")
        self.queue_depth = Gauge(r, "spade_rt_queue_depth", "pictures waiting for the backend")
        self.in_flight = Gauge(r, "spade_rt_http_in_flight", "HTTP requests being handled")
        self.ws_connections = Gauge(r, "spade_rt_ws_connections", "painter WebSocket connections open")
        self.ws_frames = Counter(
            r,
            "spade_rt_ws_frames_total",
            "painter frames: answered, replaced while waiting (latest wins), refused",
            ("result",),
        )

    def text(self) -> str:
        return self.registry.exposition()
