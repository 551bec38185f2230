"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _EngineCollector:
    """Reads the engine's own counters at scrape time (active sequences, decode steps, cancellations)."""

    def __init__(self, stats):
        self.stats = stats

    def collect(self):
        for key, value in (self.stats() or {}).items():
            family = GaugeMetricFamily(f"taide_engine_{key}", f"engine counter '{key}'")
            family.add_metric([], value)
            yield family


class Metrics:
    def __init__(self, engine_stats, admission):
        self.registry = CollectorRegistry()
        self.requests = Counter("taide_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.prompt_tokens = Counter("taide_prompt_tokens", "prompt tokens processed", registry=self.registry)
        self.completion_tokens = Counter("taide_completion_tokens", "tokens generated", registry=self.registry)
        self.latency = Histogram("taide_request_latency_seconds", "time from request to last token", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ttft = Histogram("taide_time_to_first_token_seconds", "time from request to first token", ["route"],
                              buckets=LATENCY_BUCKETS, registry=self.registry)
        queue = Gauge("taide_queue_depth", "requests waiting for a place", registry=self.registry)
        queue.set_function(lambda: admission.waiting)
        running = Gauge("taide_requests_running", "requests being answered", registry=self.registry)
        running.set_function(lambda: admission.running)
        self.registry.register(_EngineCollector(engine_stats))

    def record(self, route: str, completion) -> None:
        self.prompt_tokens.inc(completion.prompt_tokens)
        self.completion_tokens.inc(completion.completion_tokens)
        self.latency.labels(route).observe(completion.elapsed)
        self.ttft.labels(route).observe(completion.time_to_first_token)

    def render(self) -> bytes:
        return generate_latest(self.registry)
