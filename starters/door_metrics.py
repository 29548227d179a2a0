"""The door's Prometheus metrics (deliveries, duplicates, late events, signature failures, 503s by cause, the
order decision's latency), served on their own port. The table and the label bounds: docs/door.md."""
from __future__ import annotations

import logging
import time
from collections.abc import Collection
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("retailflow.http")

DELIVERIES = "retailflow_webhook_deliveries"
DUPLICATES = "retailflow_webhook_duplicates"
LATE = "retailflow_webhook_late"
SIGNATURE_FAILURES = "retailflow_webhook_signature_failures"
UNAVAILABLE = "retailflow_webhook_unavailable"
DECISION_SECONDS = "retailflow_order_decision_seconds"

UNKNOWN = "unknown"
PREFIX = "/webhooks/"
# a decision within the 5 s bound is the norm; past it the door answers 202
DECISION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0)


@dataclass
class Observed:
    """What one webhook request turned out to be (filled in by the handler as it learns it)."""

    source: str
    event_type: str = UNKNOWN
    duplicate: bool = False
    late: bool = False
    cause: str | None = None


_observed: ContextVar[Observed | None] = ContextVar("retailflow_door_observed", default=None)


# --- hooks for the webhook handler ------------------------------------------------------------------------
def seen(event_type: object) -> None:
    if (o := _observed.get()) is not None:
        o.event_type = str(event_type)


def duplicate() -> None:
    if (o := _observed.get()) is not None:
        o.duplicate = True


def late() -> None:
    if (o := _observed.get()) is not None:
        o.late = True


def cause(name: str) -> None:
    """Why the request is about to be answered 503."""
    if (o := _observed.get()) is not None:
        o.cause = name


# --- the metrics ------------------------------------------------------------------------------------------
class DoorMetrics:
    """The door's metrics in a registry of their own (one per app, so several apps in one process never clash)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(DELIVERIES, "Webhook requests by source, event type and answer code",
                                  ["source", "event_type", "code"], registry=r)
        self.duplicates = Counter(DUPLICATES, "Redeliveries answered with the first delivery's answer",
                                  ["source", "event_type"], registry=r)
        self.late = Counter(LATE, "Events for a process that has already ended", ["source", "event_type"],
                            registry=r)
        self.signature_failures = Counter(SIGNATURE_FAILURES, "Deliveries refused for their signature (401)",
                                          ["source"], registry=r)
        self.unavailable = Counter(UNAVAILABLE, "Webhook requests answered 503, by cause", ["source", "cause"],
                                   registry=r)
        self.decision = Histogram(DECISION_SECONDS, "order.placed: from request to answer (the decision)",
                                  ["source", "code", "delivery"], buckets=DECISION_BUCKETS, registry=r)

    def record(self, o: Observed, code: int, seconds: float) -> None:
        self.deliveries.labels(o.source, o.event_type, str(code)).inc()
        if o.duplicate:
            self.duplicates.labels(o.source, o.event_type).inc()
        if o.late:
            self.late.labels(o.source, o.event_type).inc()
        if code == 401:
            self.signature_failures.labels(o.source).inc()
        if code == 503:
            self.unavailable.labels(o.source, o.cause or UNKNOWN).inc()
        if o.event_type == "order.placed":
            self.decision.labels(o.source, str(code), "redelivery" if o.duplicate else "first").observe(seconds)


def _is_database_error(error: BaseException) -> bool:
    return isinstance(error, (SQLAlchemyError, OSError, TimeoutError)) or type(error).__module__.startswith(
        "asyncpg")


class DoorMetricsMiddleware:
    """Pure ASGI: observes every `/webhooks/...` request (inside CatchAll, so it sees what escaped the handlers)."""

    def __init__(self, app: Any, metrics: DoorMetrics, sources: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.sources = frozenset(sources)  # the sources the door knows (any other is labelled `unknown`)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        source = path[len(PREFIX):].split("/", 1)[0]
        observed = Observed(source=source if source in self.sources else UNKNOWN)
        token = _observed.set(observed)
        code = 503
        started = time.perf_counter()

        async def observing_send(message: dict) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        except Exception as error:  # answered 503 by CatchAll, outside us
            observed.cause = observed.cause or ("database" if _is_database_error(error) else "unexpected")
            code = 503
            raise
        finally:
            _observed.reset(token)
            self.metrics.record(observed, code, time.perf_counter() - started)


def install(app: Any, metrics: DoorMetrics, sources: Collection[str]) -> None:
    """Observe the app's webhook requests into `metrics` (call before problems.install: CatchAll stays outside)."""
    app.add_middleware(DoorMetricsMiddleware, metrics=metrics, sources=sources)


def generate(metrics: DoorMetrics) -> str:
    """The metrics in Prometheus' text format (what `/metrics` answers)."""
    return generate_latest(metrics.registry).decode()


def serve(metrics: DoorMetrics, host: str, port: int) -> Any | None:
    """Serve `/metrics` on (host, port) in a thread; returns the server (to `shutdown()`), or None when off or the
    port is taken (logged: the door serves on without its metrics rather than not at all)."""
    if not port:
        return None
    try:
        server, _ = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as taken:
        log.error("door metrics not served on %s:%s: %s", host, port, taken)
        return None
    log.info("door metrics on http://%s:%s/metrics", host, port)
    return server
