"""Prometheus metrics of one app (its own registry, so two apps in one process never share counters).

Names start with `jamspotter_`: requests by route and status, request latency, queue depth, batch size and
detections by class. The route label is the route's template (`/v1/alerts/{id}/ack`), never the raw path,
so a scan of random URLs cannot blow up the number of series.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from jamspotter.data.records import BoxObject

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The service's counters, gauges and histograms on a private `CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("jamspotter_requests", "HTTP requests answered, by route and status code",
                                ["route", "status"], registry=r)
        self.latency = Histogram("jamspotter_request_seconds", "Time from request to response start, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("jamspotter_queue_depth", "Requests waiting for the model", registry=r)
        self.batch_size = Histogram("jamspotter_batch_size", "Images per model call (dynamic batching)",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.detections = Counter("jamspotter_detections", "Boxes returned, by class and jam risk",
                                  ["label", "jam_risk"], registry=r)
        self.ready = Gauge("jamspotter_model_ready", "1 once the model is loaded", registry=r)

    def count_detections(self, objects: Iterable[BoxObject]) -> None:
        """Add one to the class counter per box."""
        for o in objects:
            self.detections.labels(label=o.label, jam_risk=str(bool(o.jam_risk)).lower()).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_name(scope: dict) -> str:
    """The template of the route that answered (`/v1/detect`, a mount's prefix), `(unmatched)` when none did."""
    route = scope.get("route")  # FastAPI's own routes put themselves here
    if route is not None and getattr(route, "path", None):
        return str(route.path)
    endpoint, app = scope.get("endpoint"), scope.get("app")
    if endpoint is not None and app is not None:  # plain Starlette routes and mounts (docs, static files)
        for candidate in getattr(getattr(app, "router", None), "routes", ()):
            if getattr(candidate, "endpoint", None) is endpoint or getattr(candidate, "app", None) is endpoint:
                return str(getattr(candidate, "path", "")) or "(unmatched)"
    return "(unmatched)"


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP response by route template and status, times it to its start.

    Pure ASGI (not BaseHTTPMiddleware) so long-lived streaming responses (the dashboard's live view)
    pass through untouched.
    """

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        seen = False

        def record(status: int) -> None:
            nonlocal seen
            if seen:
                return
            seen = True
            name = route_name(scope)
            self.metrics.requests.labels(route=name, status=str(status)).inc()
            self.metrics.latency.labels(route=name).observe(time.perf_counter() - start)

        async def counted_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                record(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        except Exception:
            record(500)
            raise
