"""The server's Prometheus metrics, through ``prometheus_client`` (one registry per server, not the global one).

Label values are bounded by the callers (route names, status codes, fixed words), never user text, so the
number of series is fixed. ``*_created`` samples are left out: scrapers do not need them and they double
the exposition.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST

disable_created_metrics()


class ServerMetrics:
    """The metrics `spade-rt serve` exports at ``/metrics`` (names prefixed ``spade_rt_``)."""

    def __init__(self, max_batch: int) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "spade_rt_http_requests", "HTTP requests by route and status", ("route", "status"), registry=r
        )
        self.errors = Counter(
            "spade_rt_http_errors", "HTTP responses with status >= 400", ("route", "status"), registry=r
        )
        self.latency = Histogram(
            "spade_rt_http_request_seconds",
            "HTTP request latency, arrival to response",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "spade_rt_batch_size",
            "pictures per backend call",
            buckets=[b for b in (1, 2, 4, 8, 16, 32, 64) if b < max_batch] + [max_batch],
            registry=r,
        )
        self.inference = Histogram(
            "spade_rt_inference_seconds", "backend call time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "spade_rt_queue_seconds", "time a picture waited for its batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.pictures = Counter("spade_rt_pictures", "pictures synthesized", registry=r)
        self.queue_depth = Gauge("spade_rt_queue_depth", "pictures waiting for the backend", registry=r)
        self.in_flight = Gauge("spade_rt_http_in_flight", "HTTP requests being handled", registry=r)
        self.connections = Gauge(
            "spade_rt_connections",
            "open connections holding a slot of --max-connections (this scrape's included)",
            registry=r,
        )
        self.ws_connections = Gauge("spade_rt_ws_connections", "painter WebSocket connections open", registry=r)
        self.ws_frames = Counter(
            "spade_rt_ws_frames",
            "painter frames: answered, replaced while waiting (latest wins), refused",
            ("result",),
            registry=r,
        )
        self.decodes = Gauge("spade_rt_decodes", "uploaded PNGs being decoded now (at most --max-decodes)", registry=r)
        self.decodes_peak = Gauge("spade_rt_decodes_peak", "the most PNG decodes that ran at once", registry=r)
        self.refused = Counter(
            "spade_rt_refused",
            "requests and painters refused before any work: foreign host or origin, connection or painter limit",
            ("reason",),
            registry=r,
        )
        self.abandoned = Counter(
            "spade_rt_abandoned",
            "requests whose client went away: mid-body, or before its picture was computed (dropped, not computed)",
            ("stage",),
            registry=r,
        )

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 when it has none yet), e.g. ``value("spade_rt_pictures_total")``."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def total(self, name: str) -> float:
        """The sum of every sample called ``name`` (all label values)."""
        return sum(s.value for m in self.registry.collect() for s in m.samples if s.name == name)
