"""Prometheus metrics, one registry per app (so several apps in one process never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lookalike_requests_total",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lookalike_request_seconds", "HTTP request latency", ["endpoint"], registry=self.registry
        )
        self.batch_size = Histogram(
            "lookalike_batch_size",
            "images per encoder forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.shed = Counter(
            "lookalike_shed_requests_total",
            "requests answered 503 because the encoder queue was full",
            registry=self.registry,
        )
        self.index_rejected = Gauge(
            "lookalike_index_rejected",
            "1 while the version current points at is refused (the previous one keeps serving)",
            registry=self.registry,
        )
        self.index_size = Gauge("lookalike_index_size", "entries in the live index", registry=self.registry)
