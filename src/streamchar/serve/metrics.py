"""What `GET /metrics` reports (Prometheus text format, via prometheus_client), one registry per server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.375, 2.0, 3.0, 5.0, 10.0)


class ServerMetrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.live = Gauge("streamchar_sessions_live", "sessions streaming or waiting for their client", registry=r)
        self.sessions_created = Counter("streamchar_sessions_created", "sessions created", registry=r)
        self.rejected = Counter("streamchar_sessions_rejected", "session requests refused at --max-sessions",
                                registry=r)
        self.expired = Counter("streamchar_sessions_expired", "sessions that expired unused", registry=r)
        self.slow_clients = Counter("streamchar_slow_clients", "streams closed because the client fell behind",
                                    registry=r)
        self.chunks = Counter("streamchar_chunks", "chunks generated", registry=r)
        self.deadline_misses = Counter("streamchar_deadline_misses",
                                       "chunks ready after their playback time", registry=r)
        self.chunk_seconds = Histogram("streamchar_chunk_seconds", "generation time of one chunk (model + mux)",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.first_fragment = Histogram("streamchar_first_fragment_seconds",
                                        "client connected -> first fragment ready", buckets=LATENCY_BUCKETS,
                                        registry=r)

    def text(self) -> bytes:
        return generate_latest(self.registry)
