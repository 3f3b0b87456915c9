"""Prometheus metrics of one grid server process (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "p2p_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.rejections = Counter(
            "p2p_rejections", "Refused requests by error code", ["code"], registry=r
        )
        self.envelopes = Counter(
            "p2p_envelopes_accepted", "Accepted signed envelopes by type", ["type"], registry=r
        )
        self.duplicates = Counter(
            "p2p_envelopes_duplicate", "Exact duplicates answered from the store", registry=r
        )
        self.readings = Counter(
            "p2p_readings", "Meter readings by outcome", ["outcome"], registry=r
        )
        self.batch_size = Histogram(
            "p2p_writer_batch_size",
            "Envelopes per group commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "p2p_writer_batch_seconds", "Duration of one group commit", registry=r
        )
        self.clearing_seconds = Histogram(
            "p2p_clearing_seconds", "Clearing one interval (load, solve, store)", registry=r
        )
        self.settlement_seconds = Histogram(
            "p2p_settlement_seconds", "Settling one interval", registry=r
        )
        self.intervals = Counter(
            "p2p_intervals", "Intervals processed by step", ["step"], registry=r
        )
        self.quarantined = Counter(
            "p2p_orders_quarantined",
            "Orders the engine could not clear, left out of their interval",
            registry=r,
        )
        self.cycle_behind = Gauge(
            "p2p_cycle_behind_seconds",
            "How long the oldest due step has waited beyond its grace (0: on time)",
            ["step"],
            registry=r,
        )
        self.stream_clients = Gauge(
            "p2p_stream_clients", "Connected live-stream clients", registry=r
        )

    def observe_batch(self, size: int, seconds: float, counts: dict[str, int]) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        for key, n in counts.items():
            if not n:
                continue
            kind, _, label = key.partition(":")
            if kind == "accepted":
                self.envelopes.labels(label).inc(n)
            elif kind == "rejected":
                self.rejections.labels(label).inc(n)
            elif kind == "duplicate_envelopes":
                self.duplicates.inc(n)
            elif kind.startswith("readings_"):
                self.readings.labels(kind.removeprefix("readings_")).inc(n)
